/* Byte-wise memory helpers.  The compiler may emit calls to memset/memcpy
 * for aggregate copies, so those symbols exist too. */
#include "guest.h"

void mset(void *d, int c, u64 n)
{
    u8 *a = d;
    while (n--)
        *a++ = (u8)c;
}

void mcpy(void *d, const void *s, u64 n)
{
    u8 *a = d;
    const u8 *b = s;
    while (n--)
        *a++ = *b++;
}

int mcmp(const void *a, const void *b, u64 n)
{
    const u8 *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y)
            return *x < *y ? -1 : 1;
    return 0;
}

void *memset(void *d, int c, u64 n) { mset(d, c, n); return d; }
void *memcpy(void *d, const void *s, u64 n) { mcpy(d, s, n); return d; }
int memcmp(const void *a, const void *b, u64 n) { return mcmp(a, b, n); }
void *memmove(void *d, const void *s, u64 n)
{
    u8 *a = d;
    const u8 *b = s;
    if (a < b || a >= b + n) {
        mcpy(d, s, n);
    } else {
        while (n--)
            a[n] = b[n];
    }
    return d;
}
