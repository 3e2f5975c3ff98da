/* Common types and helpers of the bare-metal guests (freestanding, no libc). */
#ifndef GUEST_H
#define GUEST_H

typedef unsigned long u64;
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;
typedef long s64;

#define ALIGNED(n) __attribute__((aligned(n)))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Set by start.S's program-check handler: ILC byte << 16 | interruption code
 * (the word at lowcore 0x8c), a running count and the old PSW. */
extern volatile u32 pgm_code, pgm_count;
extern volatile u64 pgm_old_psw[2];
extern char RESULT_LOG[];
void qemu_exit(void) __attribute__((noreturn));
/* start.S: switch to problem state (PSW bit 15) and back (SVC 0).  Nothing
 * privileged, console output included, may run in between. */
void to_problem_state(void);
void to_supervisor_state(void);

/* mem.c (also memset/memcpy/memcmp for code the compiler generates) */
void mset(void *d, int c, u64 n);
void mcpy(void *d, const void *s, u64 n);
int mcmp(const void *a, const void *b, u64 n);

/* Big-endian byte-array access (architected control blocks). */
static inline u16 be16(const u8 *p) { return (u16)((p[0] << 8) | p[1]); }
static inline u32 be32(const u8 *p)
{
    return ((u32)p[0] << 24) | ((u32)p[1] << 16) | ((u32)p[2] << 8) | p[3];
}
static inline u64 be64(const u8 *p) { return ((u64)be32(p) << 32) | be32(p + 4); }
static inline void st16(u8 *p, u16 v) { p[0] = v >> 8; p[1] = (u8)v; }
static inline void st32(u8 *p, u32 v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = (u8)v; }
static inline void st64(u8 *p, u64 v) { st32(p, v >> 32); st32(p + 4, (u32)v); }

/* Byte reversal: PCI is little-endian, the guest big-endian. */
static inline u16 bswap16(u16 v) { return (u16)((v >> 8) | (v << 8)); }
static inline u32 bswap32(u32 v)
{
    return (v >> 24) | ((v >> 8) & 0xff00) | ((v << 8) & 0xff0000) | (v << 24);
}
static inline u64 bswap64(u64 v)
{
    return ((u64)bswap32((u32)v) << 32) | bswap32((u32)(v >> 32));
}

/* Compiler barrier: memory shared with a device is re-read after it. */
#define barrier() asm volatile("" ::: "memory")
/* Serialization (BCR 14,0): orders stores before a doorbell. */
#define mb() asm volatile("bcr 14,0" ::: "memory")

#endif
