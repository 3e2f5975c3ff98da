/*
 * Benchmark guest of benchmarks/boot.py.  Built twice:
 *   -DMODE_ZPCI:  enables the first zPCI function, then ZPCI_LOOPS PCILG
 *                 config-space reads with a little plain code around each;
 *   -DMODE_PLAIN: PLAIN_LOOPS rounds of a memory checksum, no zPCI at all.
 * Each prints one result line over the SCLP console and quiesces, so the
 * same ELF runs unchanged under qemu-system-s390x and zpci-emu boot.
 * plain_done marks the end of the plain loop for the hook-free unicorn run.
 */
typedef unsigned long u64;
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;

static u8 sccb[4096] __attribute__((aligned(4096)));
static u8 lpcb[4096] __attribute__((aligned(4096)));
static u64 work[512];

static void wr(const char *s, u32 n)
{
    for (u32 i = 0; i < 16; i++)
        sccb[i] = 0;
    u32 tot = 8 + 6 + n, el = 6 + n;
    sccb[0] = tot >> 8; sccb[1] = tot;
    sccb[8] = el >> 8; sccb[9] = el; sccb[10] = 0x1a;
    for (u32 i = 0; i < n; i++)
        sccb[14 + i] = s[i];
    asm volatile(".insn rre,0xb2200000,%[cmd],%[blk]"
                 : : [cmd] "d"((u64)0x00760005), [blk] "a"(sccb) : "cc", "memory");
}

static void line(const char *tag, u64 v)
{
    char buf[64];
    u32 n = 0;
    while (*tag)
        buf[n++] = *tag++;
    for (int i = 15; i >= 0; i--)
        buf[n++] = "0123456789abcdef"[(v >> (4 * i)) & 0xf];
    buf[n++] = '\n';
    wr(buf, n);
}

static int clp(void)
{
    int cc;
    u64 ign = 0;
    asm volatile(".insn rrf,0xb9a00000,%[ign],%[req],0,0\n\tipm %[cc]\n\tsrl %[cc],28"
                 : [cc] "=d"(cc), [ign] "+d"(ign) : [req] "a"(lpcb) : "cc", "memory");
    return cc;
}

static void zero(void)
{
    for (u32 i = 0; i < sizeof lpcb; i++)
        lpcb[i] = 0;
}

static u32 be32(const u8 *p) { return (u32)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

static int pcilg(u64 *data, u64 req, u64 off)
{
    register u64 r2 asm("2") = req;
    register u64 r3 asm("3") = off;
    u64 d;
    int cc;
    asm volatile(".insn rre,0xb9d20000,%[d],%[r2]\n\tipm %[cc]\n\tsrl %[cc],28"
                 : [cc] "=d"(cc), [d] "=d"(d), [r2] "+d"(r2) : "d"(r3) : "cc");
    *data = d;
    return cc;
}

#ifdef MODE_ZPCI
void main(void)
{
    zero();                                 /* CLP LIST PCI FUNCTIONS */
    lpcb[1] = 32; lpcb[3] = 2; lpcb[32] = 0x0f; lpcb[33] = 0xe0;
    clp();
    u32 fh = be32(lpcb + 32 + 32 + 12);
    zero();                                 /* CLP SET PCI FUNCTION: enable */
    lpcb[1] = 32; lpcb[3] = 5; lpcb[16] = fh >> 24; lpcb[17] = fh >> 16;
    lpcb[18] = fh >> 8; lpcb[19] = fh; lpcb[23] = 1; lpcb[32] = 0x0f; lpcb[33] = 0xe0;
    clp();
    fh = be32(lpcb + 32 + 16);
    u64 sum = 0, val, bad = 0;
    u64 req = ((u64)fh << 32) | (15 << 16) | 4;
    for (u32 i = 0; i < ZPCI_LOOPS; i++) {
        if (pcilg(&val, req, (i & 3) * 4))
            bad++;
        sum += val ^ i;
    }
    line("BENCH zpci sum=", sum);
    line("BENCH zpci bad=", bad);
}
#else
void plain_done(void) __attribute__((noinline));
void plain_done(void) { asm volatile(""); }

void main(void)
{
    u64 sum = 0;
    for (u32 i = 0; i < 512; i++)
        work[i] = i * 2654435761u;
    for (u32 r = 0; r < PLAIN_LOOPS; r++) {
        for (u32 i = 0; i < 512; i++) {
            u64 w = work[i] + r;
            sum += w ^ (sum >> 3);
            work[i] = w;
        }
    }
    plain_done();
    line("BENCH plain sum=", sum);
}
#endif
