#include "clp.h"
#include "console.h"
#include "zpci.h"

u8 clp_lpcb[8192] ALIGNED(4096);

u8 *clp_prepare(u16 cmd)
{
    mset(clp_lpcb, 0, sizeof clp_lpcb);
    st16(clp_lpcb + 0, 32);
    st16(clp_lpcb + 2, cmd);
    st16(clp_lpcb + 32, 4096 - 32);
    return clp_lpcb;
}

int clp_issue(u16 *rsp)
{
    int cc = clp(clp_lpcb);
    u16 reqlen = be16(clp_lpcb);
    *rsp = be16(clp_lpcb + reqlen + 2);
    return cc;
}

int clp_list(struct zpci_fn *fns, u32 max, u32 *n, u16 *rsp)
{
    clp_prepare(CLP_LIST_PCI);
    int cc = clp_issue(rsp);
    *n = 0;
    if (cc || *rsp != CLP_RSP_OK)
        return cc;
    const u8 *r = clp_lpcb + 32;
    u32 nent = (be16(r) - 32) / 16;
    for (u32 i = 0; i < nent && i < max; i++) {
        const u8 *e = r + 32 + 16 * i;
        fns[i].device = be16(e);
        fns[i].vendor = be16(e + 2);
        fns[i].config = be32(e + 4);
        fns[i].fid = be32(e + 8);
        fns[i].fh = be32(e + 12);
        (*n)++;
    }
    return cc;
}

int clp_query_fn(u32 fh, struct zpci_fninfo *info, u16 *rsp)
{
    u8 *q = clp_prepare(CLP_QUERY_PCI);
    st32(q + 16, fh);
    int cc = clp_issue(rsp);
    const u8 *r = clp_lpcb + 32;
    info->pfgid = r[19];
    info->fid = be32(r + 20);
    for (int i = 0; i < 6; i++) {
        info->bar_size[i] = r[24 + i];
        info->bar[i] = be32(r + 32 + 4 * i);
    }
    info->sdma = be64(r + 64);
    info->edma = be64(r + 72);
    info->uid = be32(r + 124);
    return cc;
}

int clp_query_grp(u8 pfgid, struct zpci_grpinfo *info, u16 *rsp)
{
    u8 *q = clp_prepare(CLP_QUERY_GRP);
    q[19] = pfgid;
    int cc = clp_issue(rsp);
    const u8 *r = clp_lpcb + 32;
    info->noi = be16(r + 16) & 0xfff;
    info->fr = r[19];
    info->maxstbl = be16(r + 20);
    info->mui = be16(r + 22);
    info->dtsm = r[24];
    info->dasm = be64(r + 32);
    info->msia = be64(r + 40);
    return cc;
}

int clp_set(u32 fh, u8 oc, u8 ndas, u32 *newfh, u16 *rsp)
{
    u8 *q = clp_prepare(CLP_SET_PCI);
    st32(q + 16, fh);
    q[22] = oc;
    q[23] = ndas;
    int cc = clp_issue(rsp);
    *newfh = be32(clp_lpcb + 32 + 16);
    return cc;
}

void zpci_find_enable(const char *tag, u16 vendor, u16 dev_a, u16 dev_b, struct zpci_dev *d)
{
    static struct zpci_fn fns[16];
    u32 n = 0;
    u16 rsp;
    int cc = clp_list(fns, ARRAY_SIZE(fns), &n, &rsp);
    if (cc || rsp != CLP_RSP_OK)
        fail(tag, "CLP LIST PCI failed");
    u32 i;
    for (i = 0; i < n; i++)
        if ((fns[i].config & 0x80000000u) && fns[i].vendor == vendor &&
            (fns[i].device == dev_a || fns[i].device == dev_b))
            break;
    if (i == n)
        fail(tag, "no configured function of the expected type");
    d->fn = fns[i];
    if (clp_query_fn(d->fn.fh, &d->info, &rsp) || rsp != CLP_RSP_OK)
        fail(tag, "CLP QUERY PCI FUNCTION failed");
    if (clp_query_grp(d->info.pfgid, &d->grp, &rsp) || rsp != CLP_RSP_OK)
        fail(tag, "CLP QUERY PCI FUNCTION GROUP failed");
    if (clp_set(d->fn.fh, CLP_SET_ENABLE, 1, &d->fh, &rsp) || rsp != CLP_RSP_OK)
        fail(tag, "CLP SET PCI FUNCTION enable failed");
}
