/* A runaway guest that only prints: the same line over the SCLP console,
 * forever.  Without a console budget it runs until the instruction budget. */
#include "console.h"

int main(void)
{
    for (;;) {
        puts_("chatty: a line that never ends the run\n");
        flush();
    }
}
