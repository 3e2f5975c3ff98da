/* zPCI adapter interruptions of a virtio-rng function, end to end.
 *
 * Registers adapter interruptions with MPCIFC (AIBV, AISB, summary bit, ISC),
 * enables MSI-X with the group's MSI address, puts queue 0 on vector 1 and
 * makes the device complete requests (used-buffer notifications).  Each
 * expected interruption is awaited in an enabled wait (PSW I/O mask, CR6 ISC
 * mask); the handler records the interruption code at lowcore 0xb8-0xc3 and
 * the I/O old PSW.  Cases: a first interruption; the summary byte still set
 * (no interruption); SIC single mode (one interruption, then none until the
 * next SIC); an ISC CR6 does not enable (pending until it does); a vector
 * beyond the registered noi.  Then an interrupt-driven workload: LOOP
 * requests, each completion taken as Linux's zpci handler does (clear the
 * summary, scan the vector, SIC single to re-arm).
 *
 * QEMU completes virtio-rng requests from a bottom half, so where no
 * interruption is expected the program first waits until the device has set
 * the vector bit (the MSI write itself), lets the rest of that write finish,
 * and only then opens a short I/O window. */
#include "guest.h"
#include "console.h"
#include "virtio.h"
#include "zpci.h"
#include "dma.h"

#define TAG "ZPCI-IRQ"
#define ISC 3
#define AIBVO 5                 /* vector bit offset in the AIBV */
#define AISBO 10                /* summary bit offset in the AISB */
#define VEC 1                   /* MSI-X vector of queue 0 */
#define LOOP 32
#define CHUNK 64
#define SETTLE 200000           /* iterations after the vector bit is seen */

static u8 buf[4096] ALIGNED(4096);
static volatile u8 aibv[8] ALIGNED(8);
static volatile u8 aisb[8] ALIGNED(8);
static u8 fib[80] ALIGNED(8);
static u8 iib[32] ALIGNED(8);

/* Filled by io_handler: subchannel id/nr, parameter, word; then the old PSW. */
volatile u8 io_info[32] ALIGNED(8);
volatile u32 io_count;
static u64 wait_psw[2] ALIGNED(8) = {0x0202000180000000UL, 0};   /* I/O + wait, EA|BA */
static u64 io_new_psw[2] ALIGNED(8);

/* I/O new PSW target: record, then return to the old PSW with the wait bit
 * and the I/O mask cleared (the program continues where it waited, disabled). */
asm(".text\n"
    "io_handler:\n"
    "  stmg  %r0,%r15,0x300\n"
    "  larl  %r1,io_info\n"
    "  mvc   0(12,%r1),0xb8\n"
    "  mvc   16(16,%r1),0x170\n"
    "  larl  %r2,io_count\n"
    "  l     %r3,0(%r2)\n"
    "  ahi   %r3,1\n"
    "  st    %r3,0(%r2)\n"
    "  ni    0x170,0xfd\n"
    "  ni    0x171,0xfd\n"
    "  lmg   %r0,%r15,0x300\n"
    "  lpswe 0x170\n");
extern char io_handler[];

static void wait_for_io(void)
{
    asm volatile("larl %%r1,1f\n\t"
                 "stg  %%r1,8(%0)\n\t"
                 "lpswe 0(%0)\n"
                 "1:"
                 :: "a"(wait_psw) : "1", "cc", "memory");
}

/* A few instructions with I/O interruptions enabled. */
static void io_window(void)
{
    u8 old;
    asm volatile("stosm %0,0x02\n\t"
                 "nopr %%r0\n\t"
                 "nopr %%r0\n\t"
                 "stnsm %0,0xfd"
                 : "=Q"(old) :: "cc", "memory");
}

static void set_cr6(u64 value)
{
    asm volatile("lctlg 6,6,%0" :: "Q"(value) : "memory");
}

static void settle(void)
{
    for (volatile u32 i = 0; i < SETTLE; i++)
        ;
}

static int vec_bit(u32 vec)
{
    u32 bit = AIBVO + vec;
    return (aibv[bit / 8] & (0x80 >> (bit % 8))) != 0;
}

static void clear_indicators(void)
{
    for (int i = 0; i < 8; i++)
        aibv[i] = aisb[i] = 0;
}

static void print_state(const char *what, u32 seen)
{
    puts_("I "); puts_(what);
    puts_(" ints="); dec(io_count - seen);
    puts_(" aibv="); hex(aibv[0], 2); putc_(' '); hex(aibv[1], 2);
    puts_(" aisb="); hex(aisb[0], 2); putc_(' '); hex(aisb[1], 2);
    putc_('\n');
}

static void print_interruption(const char *what)
{
    puts_("I "); puts_(what);
    puts_(" sch_id="); hex(be16((const u8 *)io_info), 4);
    puts_(" sch_nr="); hex(be16((const u8 *)io_info + 2), 4);
    puts_(" parm="); hex(be32((const u8 *)io_info + 4), 8);
    puts_(" word="); hex(be32((const u8 *)io_info + 8), 8);
    puts_(" old_mask="); hex(be64((const u8 *)io_info + 16), 16);
    putc_('\n');
}

static int mpcifc_int(struct virtio_dev *v, int oc, u32 noi)
{
    mset(fib, 0, sizeof fib);
    st32(fib + 40, ((u32)ISC << 28) | (noi << 16) | (AIBVO << 8) | (1u << 7) | AISBO);
    st64(fib + 48, (u64)aibv);
    st64(fib + 56, (u64)aisb);
    u64 r1 = ((u64)v->z.fh << 32) | (u64)oc;
    int cc = mpcifc(&r1, fib);
    report(oc == MPCIFC_REG_INT ? "MPCIFC_REG_INT" : "MPCIFC_DEREG_INT", cc, r1, 0);
    return cc;
}

static u32 msix_cap(struct virtio_dev *v)
{
    u32 ptr = pci_cfg_read32(v, 0x34) & 0xfc;
    for (int guard = 0; ptr && guard < 48; guard++) {
        u32 w0 = pci_cfg_read32(v, ptr);
        if ((w0 & 0xff) == 0x11)
            return ptr;
        ptr = (w0 >> 8) & 0xfc;
    }
    fail(TAG, "no MSI-X capability");
}

/* One request of CHUNK bytes; returns after the doorbell. */
static void kick(struct virtio_dev *v, u64 iova)
{
    virtio_post(v, virtio_addr(v, buf, iova), CHUNK, 1);
    virtio_notify(v);
}

static void consume(struct virtio_dev *v)
{
    u32 len;
    virtio_wait_used(v, &len);
}

/* The device has made its MSI write once the vector bit is set; let the
 * rest of it (summary bit, maybe an interruption) finish, then look. */
static void await_vector_bit(u32 vec)
{
    for (u64 i = 0; !vec_bit(vec); i++)
        if (i > 100000000UL)
            fail(TAG, "vector bit never set");
    settle();
    io_window();
}

enum take { WAIT, POLL };
enum clear { VECTOR_ONLY, BOTH };

/* One request on vector VEC.  WAIT: its interruption is awaited in an enabled
 * wait; POLL: the vector bit is awaited with I/O disabled, then a short I/O
 * window shows whether an interruption is pending.  Prints what arrived. */
static void request(struct virtio_dev *v, u64 iova, const char *what, enum clear c,
                    enum take t)
{
    u32 seen = io_count;
    if (c == BOTH)
        clear_indicators();
    else
        aibv[0] = aibv[1] = 0;
    kick(v, iova);
    if (t == WAIT)
        wait_for_io();
    else
        await_vector_bit(VEC);
    print_state(what, seen);
    consume(v);
}

int main(void)
{
    struct virtio_dev v;
    u64 iova = virtio_rng_start(&v, TAG);
    virtio_buffer_map(&v, iova, buf);

    /* I/O new PSW: 64-bit, every interruption disabled */
    io_new_psw[0] = 0x0000000180000000UL;
    io_new_psw[1] = (u64)io_handler;
    mcpy((void *)0x1f0, io_new_psw, 16);

    /* register adapter interruptions; STPCIFC shows what the function holds */
    mpcifc_int(&v, MPCIFC_REG_INT, 2);
    u64 r1 = (u64)v.z.fh << 32;
    int cc = stpcifc(&r1, fib);
    report("STPCIFC", cc, r1, be32(fib + 40));
    puts_("I fib aibv_ok="); dec(be64(fib + 48) == (u64)aibv);
    puts_(" aisb_ok="); dec(be64(fib + 56) == (u64)aisb);
    putc_('\n');

    /* MSI-X: both table entries at the group's MSI address, data = vector */
    u32 cap = msix_cap(&v);
    u32 w0 = pci_cfg_read32(&v, cap), tbl = pci_cfg_read32(&v, cap + 4);
    u8 bar = tbl & 7;
    u32 toff = tbl & ~7u;
    for (u32 i = 0; i < 2; i++) {
        virtio_write(&v, bar, toff + 16 * i + 0, 4, v.z.grp.msia & 0xffffffffUL);
        virtio_write(&v, bar, toff + 16 * i + 4, 4, v.z.grp.msia >> 32);
        virtio_write(&v, bar, toff + 16 * i + 8, 4, i);
        virtio_write(&v, bar, toff + 16 * i + 12, 4, 0);
    }
    pci_cfg_write16(&v, cap + 2, (u16)((w0 >> 16) | 0x8000));
    virtio_write(&v, v.common_bar, v.common_off + 0x16, 2, 0);      /* queue_select */
    virtio_write(&v, v.common_bar, v.common_off + 0x1a, 2, VEC);    /* queue_msix_vector */
    puts_("I msix ctrl="); hex(pci_cfg_read32(&v, cap) >> 16, 4);
    puts_(" table="); hex(bar, 1); putc_(':'); hex(toff, 4);
    puts_(" msia="); hex(v.z.grp.msia, 16);
    puts_(" qvec="); hex(virtio_read(&v, v.common_bar, v.common_off + 0x1a, 2), 4);
    putc_('\n');

    set_cr6((0x80UL >> ISC) << 24);

    /* a used-buffer notification raises the adapter interruption */
    request(&v, iova, "first", BOTH, WAIT);
    print_interruption("first");
    /* vector bit cleared, summary byte still set: no interruption */
    request(&v, iova, "summary-set", VECTOR_ONLY, POLL);

    /* SIC single mode: the first interruption is presented, the next one
     * suppressed (summary clear or not), and SIC again re-arms without
     * raising anything by itself */
    report("SIC_SINGLE", sic(1, (u64)ISC << 27, iib, 2), 0, 0);
    request(&v, iova, "single-first", BOTH, WAIT);
    request(&v, iova, "single-suppressed", BOTH, POLL);
    u32 seen = io_count;
    report("SIC_SINGLE", sic(1, (u64)ISC << 27, iib, 2), 0, 0);
    io_window();
    print_state("rearmed", seen);
    report("SIC_ALL", sic(0, (u64)ISC << 27, iib, 1), 0, 0);

    /* CR6 without the ISC: pending, not presented, until CR6 enables it */
    set_cr6(0);
    seen = io_count;
    request(&v, iova, "cr6-masked", BOTH, POLL);
    set_cr6((0x80UL >> ISC) << 24);
    io_window();
    print_state("cr6-enabled", seen);
    print_interruption("cr6-enabled");

    /* registered with noi 1, vector 1 is beyond it */
    mpcifc_int(&v, MPCIFC_DEREG_INT, 2);
    mpcifc_int(&v, MPCIFC_REG_INT, 1);
    request(&v, iova, "beyond-noi", BOTH, POLL);
    mpcifc_int(&v, MPCIFC_DEREG_INT, 1);
    mpcifc_int(&v, MPCIFC_REG_INT, 2);

    /* the workload: every completion through its interruption, Linux style */
    sic(1, (u64)ISC << 27, iib, 2);
    seen = io_count;
    u32 handled = 0, vectors = 0;
    clear_indicators();
    for (int i = 0; i < LOOP; i++) {
        kick(&v, iova);
        wait_for_io();
        if (aisb[AISBO / 8] & (0x80 >> (AISBO % 8))) {
            aisb[AISBO / 8] = 0;
            handled++;
            if (vec_bit(VEC)) {
                vectors++;
                aibv[(AIBVO + VEC) / 8] = 0;
            }
        }
        consume(&v);
        sic(1, (u64)ISC << 27, iib, 2);
    }
    puts_("I loop requests="); dec(LOOP);
    puts_(" interruptions="); dec(io_count - seen);
    puts_(" summary="); dec(handled);
    puts_(" vectors="); dec(vectors);
    putc_('\n');

    mpcifc_int(&v, MPCIFC_DEREG_INT, 2);
    set_cr6(0);
    virtio_buffer_unmap(&v, iova);
    virtio_close(&v);
    done(TAG);
    return 0;
}
