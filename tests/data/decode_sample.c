/*
 * Test input for tests/test_decode_elf.py: ordinary -O2 code of several
 * shapes (loops, switch tables, 64/128-bit and floating-point arithmetic,
 * calls) plus one wrapper per zPCI table entry, each emitted exactly once.
 * Built freestanding with s390x-linux-gnu-gcc; never run.
 */
typedef unsigned long u64;
typedef unsigned int u32;
typedef unsigned char u8;

u32 crc32(const u8 *p, u64 n)
{
    u32 crc = ~0u;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & -(crc & 1));
    }
    return ~crc;
}

void insertion_sort(long *a, u64 n)
{
    for (u64 i = 1; i < n; i++) {
        long v = a[i];
        u64 j = i;
        while (j > 0 && a[j - 1] > v) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = v;
    }
}

int classify(int c)
{
    switch (c) {
    case 0: return 17;
    case 1: return 4;
    case 2: return 99;
    case 3: return -5;
    case 4: return 12345678;
    case 5: return 3;
    case 6: return 0x7fff0000;
    case 7: return 42;
    default: return c * 3;
    }
}

unsigned __int128 mul128(u64 a, u64 b)
{
    return (unsigned __int128)a * b;
}

double poly(const double *c, int n, double x)
{
    double r = 0;
    for (int i = n - 1; i >= 0; i--)
        r = r * x + c[i];
    return r;
}

u64 hash_str(const char *s)
{
    u64 h = 1469598103934665603ul;
    while (*s)
        h = (h ^ (u8)*s++) * 1099511628211ul;
    return h;
}

struct node { struct node *next; long key; };

long list_sum(const struct node *n, long (*f)(long))
{
    long s = 0;
    for (; n; n = n->next)
        s += f(n->key);
    return s;
}

/* The 4-byte forms: objdump prints them as .long and stays in sync. */
__attribute__((noinline, used)) u64 zpci_rre_forms(u64 a, u64 b)
{
    register u64 r2 asm("2") = a;
    register u64 r4 asm("4") = b;
    asm volatile(".insn rrf,0xb9a00000,%0,%1,0,0" : "+d"(r2) : "d"(r4) : "cc", "memory");
    asm volatile(".insn rre,0xb9d00000,%0,%1" : "+d"(r2) : "d"(r4) : "cc", "memory");
    asm volatile(".insn rre,0xb9d20000,%0,%1" : "+d"(r2) : "d"(r4) : "cc", "memory");
    asm volatile(".insn rre,0xb9d30000,%0,%1" : "+d"(r2) : "d"(r4) : "cc", "memory");
    asm volatile(".insn rre,0xb9d40000,%0,%1" : "+d"(r2) : "d"(r4) : "cc", "memory");
    asm volatile(".insn rre,0xb9d50000,0,0" ::: "cc", "memory");
    asm volatile(".insn rre,0xb9d60000,%0,%1" : "+d"(r2) : "d"(r4) : "cc", "memory");
    return r2;
}

/* The 6-byte forms: objdump loses sync after each of these. */
__attribute__((noinline, used)) u64 zpci_six_byte_forms(u64 a, u64 b, void *blk)
{
    register u64 r2 asm("2") = a;
    register u64 r3 asm("3") = b;
    asm volatile(".insn rxy,0xe300000000d0,%0,0(%2)" : "+d"(r2) : "d"(r3), "a"(blk) : "cc", "memory");
    asm volatile(".insn rxy,0xe300000000d4,%0,-8(%2)" : "+d"(r2) : "d"(r3), "a"(blk) : "cc", "memory");
    asm volatile(".insn rsy,0xeb00000000d0,%0,%1,4095(%2)" : "+d"(r2) : "d"(r3), "a"(blk) : "cc", "memory");
    asm volatile(".insn rsy,0xeb00000000d1,%0,%1,-524288(%2)" : "+d"(r2) : "d"(r3), "a"(blk) : "cc", "memory");
    asm volatile(".insn rsy,0xeb00000000d4,%0,%1,524287(%2)" : "+d"(r2) : "d"(r3), "a"(blk) : "cc", "memory");
    return r2;
}

void _start(void)
{
    for (;;)
        ;
}
