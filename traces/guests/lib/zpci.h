/* Inline wrappers for every zPCI instruction, encoded with .insn (GNU as 2.40
 * knows none of the mnemonics).  Each wrapper clears pgm_code first, so after
 * the call pgm_code != 0 means the instruction took a program interruption
 * (start.S resumes after it) and the returned cc is the one from before.
 *
 * Register conventions (see docs/zpci-architecture.md):
 *   request  = fh << 32 | pcias << 16 | len        (PCILG/PCISTG/PCISTB)
 *   r1       = fh << 32 | dmaas << 16 | oc         (MPCIFC/STPCIFC)
 *   status   = bits 32-39 of the status register = (reg >> 24) & 0xff
 */
#ifndef ZPCI_H
#define ZPCI_H
#include "guest.h"

#define ZREQ(fh, as, len) (((u64)(u32)(fh) << 32) | ((u64)(as) << 16) | (u64)(len))
#define ZST(reg) ((unsigned)(((reg) >> 24) & 0xff))
#define ZPCI_POISON 0xdeadbeefdeadbeefUL

#define PCIAS_CFG 15
#define FH_ENABLED 0x80000000u

/* MPCIFC operation controls */
#define MPCIFC_REG_INT     2
#define MPCIFC_DEREG_INT   3
#define MPCIFC_REG_IOAT    4
#define MPCIFC_DEREG_IOAT  5
#define MPCIFC_REREG_IOAT  6
#define MPCIFC_RESET_ERROR 7
#define MPCIFC_RESET_BLOCK 9
#define MPCIFC_SET_MEASURE 10

/* CLP B9A0 R1,R2,M3,M4: R2 = LPCB (request block, response block after it);
 * M4 = logical-processor selector 2 (PCI) as Linux issues it. */
static inline int clp(void *lpcb)
{
    int cc = 0xff;
    u64 ign = 0;
    pgm_code = 0;
    asm volatile(".insn rrf,0xb9a00000,%[ign],%[req],0,2\n\tipm %[cc]\n\tsrl %[cc],28"
                 : [cc] "+d"(cc), [ign] "+d"(ign) : [req] "a"(lpcb) : "cc", "memory");
    return cc;
}

/* PCILG B9D2 R1,R2: R1 <- data; R2 = request (even), R2+1 = offset. */
static inline int pcilg(u64 *data, u64 *req, u64 off)
{
    register u64 r2 asm("2") = *req;
    register u64 r3 asm("3") = off;
    u64 d = ZPCI_POISON;
    int cc;
    pgm_code = 0;
    asm volatile(".insn rre,0xb9d20000,%[d],%[r2]\n\tipm %[cc]\n\tsrl %[cc],28"
                 : [cc] "=d"(cc), [d] "+d"(d), [r2] "+d"(r2) : "d"(r3) : "cc", "memory");
    *data = d;
    *req = r2;
    return cc;
}

/* PCISTG B9D0 R1,R2: R1 = data; R2 = request (even), R2+1 = offset. */
static inline int pcistg(u64 data, u64 *req, u64 off)
{
    register u64 r2 asm("2") = *req;
    register u64 r3 asm("3") = off;
    int cc;
    pgm_code = 0;
    asm volatile(".insn rre,0xb9d00000,%[d],%[r2]\n\tipm %[cc]\n\tsrl %[cc],28"
                 : [cc] "=d"(cc), [r2] "+d"(r2) : [d] "d"(data), "d"(r3) : "cc", "memory");
    *req = r2;
    return cc;
}

/* RPCIT B9D3 R1,R2: R1 = fh << 32 (status out); R2 = start, R2+1 = length. */
static inline int rpcit(u64 *r1v, u64 start, u64 len)
{
    register u64 r2 asm("2") = start;
    register u64 r3 asm("3") = len;
    u64 r1 = *r1v;
    int cc;
    pgm_code = 0;
    asm volatile(".insn rre,0xb9d30000,%[r1],%[r2]\n\tipm %[cc]\n\tsrl %[cc],28"
                 : [cc] "=d"(cc), [r1] "+d"(r1) : [r2] "d"(r2), "d"(r3) : "cc", "memory");
    *r1v = r1;
    return cc;
}

/* MPCIFC E3D0 R1,D2(X2,B2): R1 = fh << 32 | dmaas << 16 | oc; FIB at D2(B2). */
static inline int mpcifc(u64 *r1v, void *fib)
{
    u64 r1 = *r1v;
    int cc;
    pgm_code = 0;
    asm volatile(".insn rxy,0xe300000000d0,%[r1],0(%[fib])\n\tipm %[cc]\n\tsrl %[cc],28"
                 : [cc] "=d"(cc), [r1] "+d"(r1) : [fib] "a"(fib) : "cc", "memory");
    *r1v = r1;
    return cc;
}

/* STPCIFC E3D4 R1,D2(X2,B2): R1 = fh << 32 | dmaas << 16; FIB stored at D2(B2). */
static inline int stpcifc(u64 *r1v, void *fib)
{
    u64 r1 = *r1v;
    int cc;
    pgm_code = 0;
    asm volatile(".insn rxy,0xe300000000d4,%[r1],0(%[fib])\n\tipm %[cc]\n\tsrl %[cc],28"
                 : [cc] "=d"(cc), [r1] "+d"(r1) : [fib] "a"(fib) : "cc", "memory");
    *r1v = r1;
    return cc;
}

/* PCISTB EBD0 R1,R3,D2(B2): R1 = request (len <= maxstbl); R3 = offset;
 * D2(B2) = source data in guest storage. */
static inline int pcistb(u64 *r1v, u64 off, const void *src)
{
    u64 r1 = *r1v;
    int cc;
    pgm_code = 0;
    asm volatile(".insn rsy,0xeb00000000d0,%[r1],%[r3],0(%[src])\n\tipm %[cc]\n\tsrl %[cc],28"
                 : [cc] "=d"(cc), [r1] "+d"(r1) : [r3] "d"(off), [src] "a"(src) : "cc", "memory");
    *r1v = r1;
    return cc;
}

/* SIC EBD1 R1,R3,D2(B2): R1 low 16 bits = mode; R3 = isc << 27; D2(B2) = IIB.
 * SIC sets no condition code: the wrapper presets cc with SPM to `precc`
 * and returns the cc found afterwards (precc if the cc was left alone). */
static inline int sic(u64 mode, u64 r3, void *iib, int precc)
{
    u64 pre = (u64)(precc & 3) << 28;
    int cc;
    pgm_code = 0;
    asm volatile("spm %[pre]\n\t"
                 ".insn rsy,0xeb00000000d1,%[r1],%[r3],0(%[iib])\n\tipm %[cc]\n\tsrl %[cc],28"
                 : [cc] "=&d"(cc) : [pre] "d"(pre), [r1] "d"(mode), [r3] "d"(r3), [iib] "a"(iib)
                 : "cc", "memory");
    return cc;
}

/* ---- MIO forms (unprivileged; unknown to QEMU 7.2: operation exception) */

/* PCILG-MIO B9D6 R1,R2: R1 <- data; R2 = MIO address, R2+1 = length (status out). */
static inline int pcilgi(u64 *data, u64 addr, u64 *len)
{
    register u64 r2 asm("2") = addr;
    register u64 r3 asm("3") = *len;
    u64 d = ZPCI_POISON;
    int cc;
    pgm_code = 0;
    asm volatile(".insn rre,0xb9d60000,%[d],%[r2]\n\tipm %[cc]\n\tsrl %[cc],28"
                 : [cc] "=d"(cc), [d] "+d"(d), [r2] "+d"(r2), "+d"(r3) :: "cc", "memory");
    *data = d;
    *len = r3;
    return cc;
}

/* PCISTG-MIO B9D4 R1,R2: R1 = data; R2 = MIO address, R2+1 = length. */
static inline int pcistgi(u64 data, u64 addr, u64 *len)
{
    register u64 r2 asm("2") = addr;
    register u64 r3 asm("3") = *len;
    int cc;
    pgm_code = 0;
    asm volatile(".insn rre,0xb9d40000,%[d],%[r2]\n\tipm %[cc]\n\tsrl %[cc],28"
                 : [cc] "=d"(cc), [r2] "+d"(r2), "+d"(r3) : [d] "d"(data) : "cc", "memory");
    *len = r3;
    return cc;
}

/* PCIWB B9D5: write barrier, no operands. */
static inline int pciwb(void)
{
    int cc;
    pgm_code = 0;
    asm volatile(".insn rre,0xb9d50000,0,0\n\tipm %[cc]\n\tsrl %[cc],28"
                 : [cc] "=d"(cc) :: "cc", "memory");
    return cc;
}

/* PCISTB-MIO EBD4 R1,R3,D2(B2): R1 = length (status out); R3 = MIO address. */
static inline int pcistbi(u64 *len, u64 addr, const void *src)
{
    u64 r1 = *len;
    int cc;
    pgm_code = 0;
    asm volatile(".insn rsy,0xeb00000000d4,%[r1],%[r3],0(%[src])\n\tipm %[cc]\n\tsrl %[cc],28"
                 : [cc] "=d"(cc), [r1] "+d"(r1) : [r3] "d"(addr), [src] "a"(src) : "cc", "memory");
    *len = r1;
    return cc;
}

#endif
