/* SERVC (B220): the SCLP service call, shared by the console and by probes
 * that issue other SCLP commands. */
#ifndef SCLP_H
#define SCLP_H
#include "guest.h"

/* SERVC R1,R2: R1 = SCLP command word, R2 = SCCB address.  Returns the cc. */
static inline int servc(u32 cmd, void *blk)
{
    int cc;
    asm volatile(".insn rre,0xb2200000,%[cmd],%[blk]\n\tipm %[cc]\n\tsrl %[cc],28"
                 : [cc] "=d"(cc) : [cmd] "d"((u64)cmd), [blk] "a"(blk) : "cc", "memory");
    return cc;
}

#endif
