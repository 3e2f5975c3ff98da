/*
 * Probe of how PSWs with odd or invalid instruction addresses and masks reach
 * the guest (tests/test_boot_psw.py): branches to an odd address, odd and
 * invalid interruption-new PSWs (SVC, external), LPSWE and STOSM with invalid
 * mask bits,
 * and LPSW (valid, odd, bit 12 clear, and the final disabled wait).  Every case
 * prints one line, so a run under qemu-system-s390x and one under zpci-emu
 * boot can be compared line by line.  Links like privprobe (see build.py).
 */
#include "console.h"

enum { K_BR, K_BASR, K_BC, K_SVC, K_LPSWE, K_LPSW, K_EXT, K_STOSM };

/* pswprobe_start.S */
void psw_case(u64 kind, u64 arg);
void lpsw_exit(void) __attribute__((noreturn));
extern u8 odd_target[], bad_target[], lpsw_landing[], lpsw_link[];
extern u8 probe_basr_insn[], probe_svc_insn[], probe_lpsw_insn[], probe_stosm_insn[];
extern u8 probe_stosm0_insn[];
extern u64 probe_old_psw[2], probe_regs[16], lpsw_seen[2];
extern u32 probe_pgm_word;

static volatile u64 *lowcore64(u64 addr)
{
    asm("" : "+a"(addr));
    return (volatile u64 *)addr;
}

static void run(u64 kind, u64 arg)
{
    probe_pgm_word = 0;
    probe_old_psw[0] = probe_old_psw[1] = 0;
    lpsw_seen[0] = lpsw_seen[1] = 0;
    psw_case(kind, arg);
}

/* The program interruption a case ended in, its old PSW relative to `ref`. */
static void line(const char *tag, const void *ref)
{
    puts_(tag); puts_(" pgm="); hex(probe_pgm_word, 8);
    puts_(" old_mask="); hex(probe_old_psw[0], 16);
    puts_(" old_addr_delta="); hex(probe_old_psw[1] - (u64)ref, 4);
}

/* An interruption-new PSW (mask, addr) at lowcore `at`, then case `kind`. */
static void via_new_psw(const char *tag, u64 at, u64 mask, u8 *target, u64 kind)
{
    volatile u64 *np = lowcore64(at);
    u64 saved0 = np[0], saved1 = np[1];
    np[0] = mask;
    np[1] = (u64)target;
    run(kind, 0);
    np[0] = saved0;
    np[1] = saved1;
    line(tag, (const void *)((u64)target & ~7ull));
}

static void lpswe_bad(const char *tag, u64 mask)
{
    static u64 psw[2] ALIGNED(8);
    psw[0] = mask;
    psw[1] = (u64)bad_target;
    run(K_LPSWE, (u64)psw);
    line(tag, bad_target); putc_('\n');
}

static void lpsw_case(const char *tag, u32 mask, u32 addr)
{
    static u32 psw[2] ALIGNED(8);
    psw[0] = mask;
    psw[1] = addr;
    run(K_LPSW, (u64)psw);
    puts_(tag);
    if (probe_pgm_word) {
        const void *ref = (addr & 1) ? (const void *)odd_target : (const void *)probe_lpsw_insn;
        line("", ref);
    } else {
        puts_(" cc="); hex((lpsw_seen[0] >> 28) & 3, 1);
        puts_(" link_delta="); hex((lpsw_seen[1] & 0xffffffffu) - (u32)(u64)lpsw_link, 8);
    }
    putc_('\n');
}

int main(void)
{
    /* branches to odd_target + 1 */
    run(K_BR, (u64)odd_target + 1);
    line("BR_ODD", odd_target); putc_('\n');
    run(K_BASR, (u64)odd_target + 3);
    line("BASR_ODD", odd_target);
    puts_(" link_delta="); hex(probe_regs[4] - (u64)probe_basr_insn, 4); putc_('\n');
    run(K_BC, (u64)odd_target + 5);
    line("BC_ODD", odd_target); putc_('\n');

    /* SVC-new PSW with an odd address; the SVC itself completes */
    lowcore64(0x140)[1] = 0;
    via_new_psw("SVC_NEW_ODD", 0x1c0, 0x0000000180000000ull, odd_target + 1, K_SVC);
    puts_(" svc_old_delta="); hex(lowcore64(0x140)[1] - (u64)probe_svc_insn, 4); putc_('\n');
    /* SVC-new PSW with invalid mask bits (bit 0; bit 12; EA without BA) */
    via_new_psw("SVC_NEW_BIT0", 0x1c0, 0x8000000180000000ull, bad_target, K_SVC);
    putc_('\n');
    via_new_psw("SVC_NEW_BIT12", 0x1c0, 0x0008000180000000ull, bad_target, K_SVC);
    putc_('\n');
    via_new_psw("SVC_NEW_EA_ONLY", 0x1c0, 0x0000000100000000ull, bad_target, K_SVC);
    putc_('\n');

    /* External-new PSW with an odd address: the pending service signal,
     * enabled by CR0 bit 54 and STOSM */
    {
        u64 cr0, on;
        asm volatile("stctg 0,0,%0" : "=Q"(cr0));
        on = cr0 | 0x200;
        asm volatile("lctlg 0,0,%0" : : "Q"(on));
        lowcore64(0x130)[1] = 0;
        via_new_psw("EXT_NEW_ODD", 0x1b0, 0x0000000180000000ull, odd_target + 1, K_EXT);
        asm volatile("lctlg 0,0,%0" : : "Q"(cr0));
        puts_(" ext_old_delta="); hex(lowcore64(0x130)[1] - (u64)probe_stosm_insn, 4);
        puts_(" ext_code="); hex(*(volatile u16 *)lowcore64(0x86), 4); putc_('\n');
    }

    /* STOSM setting bit 0 of the PSW */
    run(K_STOSM, 0);
    line("STOSM_BIT0", probe_stosm0_insn); putc_('\n');

    /* LPSWE of PSWs with invalid mask bits */
    lpswe_bad("LPSWE_BIT0", 0x8000000180000000ull);
    lpswe_bad("LPSWE_BIT12", 0x0008000180000000ull);
    lpswe_bad("LPSWE_EA_ONLY", 0x0000000100000000ull);

    /* LPSW: 31-bit with cc 2, 24-bit with cc 1, odd address, bit 12 clear */
    lpsw_case("LPSW_31", 0x00082000, 0x80000000u | (u32)(u64)lpsw_landing);
    lpsw_case("LPSW_24", 0x00081000, (u32)(u64)lpsw_landing);
    lpsw_case("LPSW_ODD", 0x00080000, 0x80000000u | ((u32)(u64)odd_target + 1));
    lpsw_case("LPSW_NO_BIT12", 0x00002000, 0x80000000u | (u32)(u64)lpsw_landing);

    puts_("PSWPROBE done\n");
    flush();
    lpsw_exit();
}
