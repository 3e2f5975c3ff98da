/* SCLP console: one SERVC WRITE EVENT DATA per line, synchronous in QEMU.
 * Every line is also appended to the NUL-terminated log at RESULT_LOG. */
#include "console.h"
#include "sclp.h"

static u8 sccb[4096] ALIGNED(4096);
/* bytes of RESULT_LOG in use; LOG_LIMIT also marks the log closed */
#define LOG_LIMIT 0xfff0
static u32 log_len;
static char line[512];
static u32 line_len;

static void sclp_write(const char *s, u32 n)
{
    /* SCCB header (8) + event buffer header (6) + ASCII text (type 0x1a) */
    mset(sccb, 0, 16);
    u16 tot = (u16)(8 + 6 + n);
    st16(sccb, tot);                 /* SCCB length */
    st16(sccb + 8, (u16)(6 + n));    /* event buffer length */
    sccb[10] = 0x1a;                 /* VT220 / ASCII console data */
    mcpy(sccb + 14, s, n);
    servc(0x00760005, sccb);         /* WRITE EVENT DATA */
}

void flush(void)
{
    if (!line_len)
        return;
    sclp_write(line, line_len);
    if (log_len + line_len < LOG_LIMIT) {
        mcpy(RESULT_LOG + log_len, line, line_len);
        log_len += line_len;
        RESULT_LOG[log_len] = 0;
    }
    line_len = 0;
}

void putc_(char c)
{
    line[line_len++] = c;
    if (c == '\n' || line_len >= sizeof(line) - 1)
        flush();
}

void puts_(const char *s)
{
    while (*s)
        putc_(*s++);
}

void hex(u64 v, int digits)
{
    for (int i = digits - 1; i >= 0; i--)
        putc_("0123456789abcdef"[(v >> (4 * i)) & 0xf]);
}

void dec(u64 v)
{
    char buf[24];
    int n = 0;
    do {
        buf[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        putc_(buf[--n]);
}

void dump(const char *tag, const void *p, u32 n)
{
    const u8 *b = p;
    for (u32 i = 0; i < n; i += 16) {
        puts_("D ");
        puts_(tag);
        putc_(' ');
        hex(i, 4);
        putc_(':');
        for (u32 j = i; j < i + 16 && j < n; j++) {
            putc_(' ');
            hex(b[j], 2);
        }
        putc_('\n');
    }
}

void report(const char *name, int cc, u64 reg, u64 val)
{
    puts_("R ");
    puts_(name);
    if (pgm_code) {
        puts_(" PGM=");
        hex(pgm_code, 8);
    } else {
        puts_(" cc=");
        hex((u64)cc, 1);
    }
    puts_(" st=");
    hex((reg >> 24) & 0xff, 2);
    puts_(" reg=");
    hex(reg, 16);
    puts_(" val=");
    hex(val, 16);
    putc_('\n');
}

void done(const char *tag)
{
    puts_(tag);
    puts_(" done pgm_count=");
    hex(pgm_count, 4);
    putc_('\n');
    flush();
}

void fail(const char *tag, const char *why)
{
    puts_(tag);
    puts_(" FAIL ");
    puts_(why);
    putc_('\n');
    flush();
    qemu_exit();
}

/* Called by start.S (on its own stack) when program interruptions repeat
 * without end, e.g. a nullifying exception retried forever. */
void pgm_fatal(void)
{
    /* The repeating exception may be the log store itself (RESULT_LOG beyond
     * RAM, e.g. -m 1): with the log open, every flush here would take it
     * again and re-enter pgm_fatal, printing the pending line forever. */
    log_len = LOG_LIMIT;
    flush();
    puts_("FATAL program-check loop pgm=");
    hex(pgm_code, 8);
    puts_(" psw=");
    hex(pgm_old_psw[0], 16);
    putc_(' ');
    hex(pgm_old_psw[1], 16);
    putc_('\n');
    flush();
    qemu_exit();
}
