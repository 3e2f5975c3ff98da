/* Console output over the SCLP (SERVC write event data, ASCII console event)
 * and the result-line format shared by all guests. */
#ifndef CONSOLE_H
#define CONSOLE_H
#include "guest.h"

void putc_(char c);
void puts_(const char *s);
void hex(u64 v, int digits);        /* fixed width, lower-case */
void dec(u64 v);
void flush(void);
/* "D <tag> <offset>: xx xx ..." 16 bytes a line */
void dump(const char *tag, const void *p, u32 n);
/* "R <name> cc=<cc>|PGM=<ilc+code> st=<reg bits 32-39> reg=<reg> val=<val>"
 * PGM is printed when the last wrapper call took a program interruption
 * (pgm_code != 0), otherwise the condition code. */
void report(const char *name, int cc, u64 reg, u64 val);
/* "<tag> done pgm_count=NNNN" then flush. */
void done(const char *tag);
/* Print "<tag> FAIL <why>" and quiesce (for impossible set-up failures). */
void fail(const char *tag, const char *why) __attribute__((noreturn));

#endif
