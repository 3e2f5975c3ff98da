/* CLP helpers over one page-aligned 8 KiB LPCB (clp_lpcb, also usable raw). */
#ifndef CLP_H
#define CLP_H
#include "guest.h"

#define CLP_LIST_PCI    0x0002
#define CLP_QUERY_PCI   0x0003
#define CLP_QUERY_GRP   0x0004
#define CLP_SET_PCI     0x0005
#define CLP_RSP_OK      0x0010

#define CLP_SET_ENABLE  0
#define CLP_SET_DISABLE 1

extern u8 clp_lpcb[8192];

struct zpci_fn {            /* one CLP LIST PCI entry */
    u16 device, vendor;
    u32 config, fid, fh;
};

struct zpci_fninfo {        /* from CLP QUERY PCI FUNCTION */
    u8 pfgid;
    u8 bar_size[6];
    u32 bar[6];             /* as stored (little-endian config BAR value) */
    u32 fid, uid;
    u64 sdma, edma;
};

struct zpci_grpinfo {       /* from CLP QUERY PCI FUNCTION GROUP */
    u16 noi, maxstbl, mui;
    u8 fr, dtsm;
    u64 dasm, msia;
};

/* Prepare clp_lpcb for `cmd` with a 32-byte request and a response length of
 * 4096 - 32; returns the request block for the caller to fill in. */
u8 *clp_prepare(u16 cmd);
/* Issue CLP on clp_lpcb; *rsp = response code.  Returns the cc. */
int clp_issue(u16 *rsp);

/* LIST PCI: up to `max` entries into fns, *n = count. Returns the cc. */
int clp_list(struct zpci_fn *fns, u32 max, u32 *n, u16 *rsp);
int clp_query_fn(u32 fh, struct zpci_fninfo *info, u16 *rsp);
int clp_query_grp(u8 pfgid, struct zpci_grpinfo *info, u16 *rsp);
/* SET PCI FUNCTION: oc enable/disable, ndas; *newfh = response fh. */
int clp_set(u32 fh, u8 oc, u8 ndas, u32 *newfh, u16 *rsp);

/* Discovery used by the drivers: the first configured function with this
 * vendor and one of the two device ids; query it and its group, enable it
 * with one DMA address space.  Prints a FAIL line and quiesces if absent. */
struct zpci_dev {
    struct zpci_fn fn;
    struct zpci_fninfo info;
    struct zpci_grpinfo grp;
    u32 fh;                 /* enabled handle */
};
void zpci_find_enable(const char *tag, u16 vendor, u16 dev_a, u16 dev_b, struct zpci_dev *d);

#endif
