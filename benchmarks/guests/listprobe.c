/*
 * CLP LIST PCI FUNCTIONS and QUERY PCI FUNCTION of every function, printed
 * one line each (tests/test_boot_priv.py): shows the order, fid, uid and
 * handle QEMU gives each -device configuration.  Links with traces/guests'
 * start.S, link.ld and lib/ (see build.py).
 */
#include "clp.h"
#include "console.h"

static struct zpci_fn fns[252];     /* as many as a 4 KiB response holds */

int main(void)
{
    u32 count;
    u16 rsp;
    int cc = clp_list(fns, ARRAY_SIZE(fns), &count, &rsp);
    puts_("LIST cc="); hex(cc, 1); puts_(" rsp="); hex(rsp, 4); puts_(" count="); hex(count, 2);
    putc_('\n');
    for (u32 i = 0; i < count; i++) {
        const struct zpci_fn *e = &fns[i];
        struct zpci_fninfo info;
        cc = clp_query_fn(e->fh, &info, &rsp);
        puts_("FN device="); hex(e->device, 4); puts_(" vendor="); hex(e->vendor, 4);
        puts_(" config="); hex(e->config, 8); puts_(" fid="); hex(e->fid, 8);
        puts_(" fh="); hex(e->fh, 8);
        puts_(" qcc="); hex(cc, 1); puts_(" qfid="); hex(info.fid, 8);
        puts_(" uid="); hex(info.uid, 8); putc_('\n');
    }
    puts_("LISTPROBE done\n");
    return 0;
}
