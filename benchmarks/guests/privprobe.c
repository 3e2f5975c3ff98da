/*
 * Probe of the privileged instructions zpci-emu boot emulates (tests/test_boot_priv.py):
 * prints what the guest sees of each, so a run under qemu-system-s390x and
 * one under zpci-emu boot can be compared line by line.  Links with
 * traces/guests' start.S, link.ld and lib/ (see build.py).
 */
#include "console.h"
#include "sclp.h"

static u8 info[8192] ALIGNED(4096);   /* SCLPERR 1 crosses into the second page */

/* A lowcore field: through an address the compiler cannot see as a constant
 * (GCC's -Warray-bounds takes a constant small pointer for a null one). */
static inline volatile void *lowcore(u64 addr)
{
    asm("" : "+a"(addr));
    return (volatile void *)addr;
}

static void kv(const char *k, u64 v, int d) { puts_(k); hex(v, d); putc_('\n'); }

/* "<tag> <off>: xx xx ..." for the first n bytes of the SCCB, 16 a line */
static void sccb_dump(const char *tag, u32 n)
{
    for (u32 off = 0; off < n; off += 16) {
        puts_(tag); hex(off, 3); putc_(':');
        for (u32 j = 0; j < 16; j++) { putc_(' '); hex(info[off + j], 2); }
        putc_('\n');
    }
}

/* privprobe_start.S; program checks go to start.S's handler (pgm_code,
 * pgm_old_psw), SVCs to its handler, which leaves the old PSW at 0x140. */
extern u64 ext_psw[2];
extern u32 ext_param, ext_count;
extern u16 ext_code;
void set_ext_handler(void);
void do_svc(void);
void do_invalid(void);
void psw_probe(const u64 *psw);
extern u8 odd_target[];
extern u64 probe_old_psw[2];
extern u32 probe_pgm_word;

/* LPSWE of (mask, odd_target + off): the program interruption it ends in. */
static void lpswe_case(const char *tag, u64 mask, u64 off)
{
    static u64 psw[2] ALIGNED(8);
    psw[0] = mask;
    psw[1] = (u64)odd_target + off;
    probe_pgm_word = 0;
    psw_probe(psw);
    puts_(tag); puts_(" pgm="); hex(probe_pgm_word, 8);
    puts_(" old_mask="); hex(probe_old_psw[0], 16);
    puts_(" old_addr_delta="); hex(probe_old_psw[1] - (u64)odd_target, 4); putc_('\n');
}

int main(void)
{
    u64 v[4] = {0, 0, 0, 0};
    u32 w = 0;
    u16 hw = 0;
    u8 b = 0;
    int cc;

    /* What the IPL left in the lowcore (and the program-check and SVC new
     * PSWs start.S installed): every non-zero doubleword of the first 8 KiB. */
    for (u64 a = 0; a < 0x2000; a += 8) {
        u64 dw = *(volatile u64 *)a;
        if (dw) { puts_("LOWCORE "); hex(a, 4); putc_(' '); hex(dw, 16); putc_('\n'); }
    }
    set_ext_handler();
    asm volatile("stidp %0" : "=Q"(v[0]));
    kv("STIDP ", v[0], 16);
    asm volatile("stfl 0" ::: "memory");
    kv("STFL ", *(volatile u32 *)lowcore(0xc8), 8);
    {
        u64 r0v;
        register u64 r0 asm("0") = 3;
        asm volatile(".insn s,0xb2b00000,%[f]\n\tipm %[cc]\n\tsrl %[cc],28"
                     : [cc] "=d"(cc), "+d"(r0), [f] "=Q"(v) : : "cc");
        r0v = r0;
        kv("STFLE cc=", cc, 1);
        kv("STFLE r0=", r0v, 16);
        kv("STFLE0 ", v[0], 16); kv("STFLE1 ", v[1], 16);
        kv("STFLE2 ", v[2], 16); kv("STFLE3 ", v[3], 16);
    }
    asm volatile("stap %0" : "=Q"(hw));
    kv("STAP ", hw, 4);
    asm volatile("stpx %0" : "=Q"(w));
    kv("STPX ", w, 8);
    {
        u64 cr[16];
        asm volatile("stctg 0,15,%0" : "=Q"(cr));
        for (int i = 0; i < 16; i++) { puts_("CR"); hex(i, 1); putc_(' '); hex(cr[i], 16); putc_('\n'); }
    }
    {
        u64 r1 = 0, r2 = 0;
        /* a known cc first: QEMU 7.2's EPSW shows the cc of the last PSW
         * loaded, not the current one (the program's code decides that) */
        asm volatile("cr %%r0,%%r0\n\tepsw %0,%1" : "=d"(r1), "=d"(r2) : : "cc");
        kv("EPSW1 ", r1, 8); kv("EPSW2 ", r2, 8);
    }
    asm volatile("stosm %0,0x00" : "=Q"(b) : : "memory");
    kv("STOSM ", b, 2);
    asm volatile("stnsm %0,0xff" : "=Q"(b) : : "memory");
    kv("STNSM ", b, 2);
    {
        u64 st1, st2;
        int cc1, cc2, cc3;
        register u64 r2 asm("2") = 0;
        register u64 r3 asm("3") = 0;
        asm volatile("sigp %[r2],%[r3],0x12\n\tipm %[cc]\n\tsrl %[cc],28"
                     : [cc] "=d"(cc1), [r2] "+d"(r2) : [r3] "d"(r3) : "cc");
        st1 = r2;
        r2 = 0;
        asm volatile("sigp %[r2],%[r3],0x01\n\tipm %[cc]\n\tsrl %[cc],28"
                     : [cc] "=d"(cc2), [r2] "+d"(r2) : [r3] "d"(r3) : "cc");
        st2 = r2;
        r3 = 1;
        asm volatile("sigp %[r2],%[r3],0x01\n\tipm %[cc]\n\tsrl %[cc],28"
                     : [cc] "=d"(cc3), [r2] "+d"(r2) : [r3] "d"(r3) : "cc");
        kv("SIGP_SETARCH cc=", cc1, 1); kv("SIGP_SETARCH st=", st1, 16);
        kv("SIGP_SENSE cc=", cc2, 1); kv("SIGP_SENSE st=", st2, 16);
        kv("SIGP_SENSE1 cc=", cc3, 1);
    }
    do_svc();
    kv("SVC_OLD_MASK ", *(volatile u64 *)lowcore(0x140), 16);
    kv("SVC_CODE ", *(volatile u32 *)lowcore(0x88), 8);
    do_invalid();
    kv("PGM_WORD ", pgm_code, 8);
    kv("PGM_OLD_MASK ", pgm_old_psw[0], 16);
    kv("PGM_OLD_ADDR_DELTA ", pgm_old_psw[1] - (u64)do_invalid, 4);
    /* LPSWE of a PSW with an odd instruction address (64-bit, condition
     * code 2 in the mask, and 31-bit addressing) */
    lpswe_case("LPSWE_ODD", 0x0000000180000000ull, 1);
    lpswe_case("LPSWE_ODD_CC2", 0x0000200180000000ull, 3);
    lpswe_case("LPSWE_ODD_31", 0x0000000080000000ull, 5);
    /* SCLP write event mask (4-byte masks) */
    mset(info, 0, 64);
    st16(info, 28);
    st16(info + 10, 4);
    st32(info + 12, 0x40);
    cc = servc(0x00780005, info);
    kv("WEM cc=", cc, 1);
    kv("WEM rc=", be16(info + 6), 4);
    kv("WEM masks0 ", be32(info + 12), 8);
    kv("WEM masks2 ", be32(info + 20), 8);
    kv("WEM masks3 ", be32(info + 24), 8);
    /* SCLP read SCP info */
    mset(info, 0, 4096);
    st16(info, 4096);
    cc = servc(0x00020001, info);
    kv("RSCPI cc=", cc, 1);
    kv("RSCPI rc=", be16(info + 6), 4);
    kv("RSCPI rnmax=", be16(info + 8), 4);
    kv("RSCPI rnsize=", info[10], 2);
    kv("RSCPI cpus=", be16(info + 16), 4);
    kv("RSCPI offcpu=", be16(info + 18), 4);
    sccb_dump("RSCPI ", 160);
    /* READ CPU INFO */
    mset(info, 0, 4096);
    st16(info, 4096);
    cc = servc(0x00010001, info);
    kv("RCPUI cc=", cc, 1);
    sccb_dump("RCPUI ", 48);
    /* SCLP error answers: unknown command, page-crossing SCCB, bad event
     * buffer length, an event type nobody handles, a non-zero function code */
    {
        static const struct { u32 cmd; u32 at; u16 len; u16 elen; u8 type; u8 fc; } cases[] = {
            { 0x00990001, 0, 32, 18, 0x1a, 0 },
            { 0x00760005, 4096 - 16, 32, 24, 0x1a, 0 },
            { 0x00760005, 0, 32, 4, 0x1a, 0 },
            { 0x00760005, 0, 32, 40, 0x1a, 0 },
            { 0x00760005, 0, 32, 24, 0x02, 0 },
            { 0x00760005, 0, 32, 24, 0x1a, 1 },
        };
        for (u32 c = 0; c < ARRAY_SIZE(cases); c++) {
            u8 *b = info + cases[c].at;
            mset(info, 0, 4096);
            st16(b, cases[c].len); b[2] = cases[c].fc;
            st16(b + 8, cases[c].elen); b[10] = cases[c].type;
            for (u32 i = 14; i < cases[c].len && i < 24; i++) b[i] = 'x';
            b[22] = '\n';
            cc = servc(cases[c].cmd, b);
            puts_("SCLPERR "); hex(c, 1); puts_(" cc="); hex(cc, 1);
            puts_(" rc="); hex(be16(b + 6), 4); puts_(" flags="); hex(b[11], 2); putc_('\n');
        }
    }
    /* SERVC with an SCCB in the first 8 KiB: specification exception */
    pgm_code = 0;
    servc(0x00760005, (void *)0x1000);
    kv("SERVC_LOW pgm=", pgm_code, 8);
    /* The service signal of all those SERVCs is pending: enable the service
     * subclass in CR0 and external interruptions, and take it. */
    {
        u64 cr0;
        asm volatile("stctg 0,0,%0" : "=Q"(cr0));
        cr0 |= 0x200;
        asm volatile("lctlg 0,0,%0" : : "Q"(cr0));
        asm volatile("stosm %0,0x01" : "=Q"(b) : : "memory");
        kv("EXT_CODE ", ext_code, 4);
        kv("EXT_PARAM ", ext_param, 8);
        kv("EXT_OLD_MASK ", ext_psw[0], 16);
        kv("EXT_COUNT ", ext_count, 2);
    }
    puts_("PRIVPROBE done\n");
    return 0;
}
