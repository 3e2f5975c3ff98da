/*
 * Supervisor-state guests (a Linux kernel): part of trap.c, included by it.
 *
 * A kernel runs in supervisor state under unicorn, so its privileged
 * instructions run natively; most do the right thing (control registers,
 * DAT, keys, PSW), but the ones below are silent no-ops or store wrong
 * values in unicorn 2.1 (measured, ../shared/docs/unicorn-notes.md).  They
 * are found when a block first runs (the block cache misses): its bytes are
 * walked by instruction length, every sensitive instruction gets a code hook
 * bounded to its address, the block's translation is dropped and the block
 * runs again, now with the hooks.  A hook whose address holds other code
 * later (another process, freed memory) lets that code run natively.
 *
 * Why here and not with problem state: problem state would trap ~395k more
 * privileged instructions per boot (LRA, STURG, STNSM...) without removing
 * any of these hooks, since the clock instructions are unprivileged.
 */

enum sens {
    SENS_NONE = 0,
    SENS_CLOCK,        /* STCK, STCKF, STCKE, SCKC, STCKC: answered here */
    SENS_WAIT,         /* LPSWE, LPSW: to Python only when the new PSW waits */
    SENS_PYTHON,       /* the rest: Python decides, or stops naming it */
};

static uint32_t insn_length(uint8_t b0)
{
    return b0 < 0x40 ? 2 : b0 < 0xC0 ? 4 : 6;
}

static enum sens sensitive(const uint8_t *b, uint32_t n)
{
    if (n < 2)
        return SENS_NONE;
    switch (b[0]) {
    case 0x82:                          /* LPSW */
        return SENS_WAIT;
    case 0x83:                          /* DIAGNOSE */
    case 0xAE:                          /* SIGP */
        return SENS_PYTHON;
    case 0xB2:
        switch (b[1]) {
        case 0x05: case 0x06: case 0x07: case 0x78: case 0x7C:
            return SENS_CLOCK;
        case 0xB2:                      /* LPSWE */
            return SENS_WAIT;
        case 0x02:                      /* STIDP */
        case 0x04:                      /* SCK: kills unicorn */
        case 0x20:                      /* SERVC */
        case 0x30: case 0x31: case 0x32: case 0x33: case 0x34: case 0x35: case 0x36:
        case 0x37: case 0x38: case 0x39: case 0x3A: case 0x3B: case 0x3C:   /* channel I/O */
        case 0x5F:                      /* CHSC */
        case 0x76:                      /* XSCH */
        case 0x7D:                      /* STSI */
        case 0xB0: case 0xB1:           /* STFLE, STFL */
            return SENS_PYTHON;
        }
        return SENS_NONE;
    case 0xB9:
        if (b[1] == 0x3C)               /* PRNO: unicorn lacks QEMU 7.2's TRNG */
            return SENS_PYTHON;
        break;
    }
    if (n >= insn_length(b[0])) {
        zpci_decoded d;
        zpci_decode_one(b, n, 0, &d);
        if (d.index != ZPCI_INDEX_NONE && !(d.flags & ZPCI_DEC_TRUNCATED))
            return SENS_PYTHON;
    }
    return SENS_NONE;
}

/* -------------------------------------------------------------- hooked sites */

static bool site_add(trap_state *t, uint64_t addr)
{
    /* addr is even and non-zero for any instruction past the lowcore */
    uint32_t mask = TRAP_SITE_SET - 1;
    uint32_t i = (uint32_t)((addr >> 1) * 0x9E3779B1u) & mask;
    for (uint32_t probes = 0; probes < TRAP_SITE_SET; probes++, i = (i + 1) & mask) {
        if (t->site_set[i] == addr)
            return false;
        if (t->site_set[i] == 0) {
            t->site_set[i] = addr;
            return true;
        }
    }
    return false;                       /* full: the hook is not added twice anyway */
}

/* Hooks every sensitive instruction of the block not hooked yet; true if
 * any was, after dropping the block's translation and setting PC back to
 * its start (nothing of it has run: this is the block hook).  Otherwise
 * *count gets the block's instruction count from the bytes read here (the
 * block cache then needs no second read), unless they could not be read. */
static bool scan_block(trap_state *t, void *uc, uint64_t addr, uint32_t size, uint32_t *count)
{
    uint8_t buf[4096];
    if (size == 0 || size > sizeof buf || read_code(t, uc, addr, buf, size) != 0)
        return false;
    t->scanned_blocks++;
    bool added = false;
    for (uint32_t off = 0; off + 2 <= size; off += insn_length(buf[off])) {
        uint32_t n = size - off < 6 ? size - off : 6;
        if (sensitive(buf + off, n) == SENS_NONE || addr + off == 0)
            continue;
        if (!site_add(t, addr + off))
            continue;
        size_t h;
        if (U.hook_add(uc, &h, UCH_CODE, (void *)hook_code_at, t, addr + off, addr + off) != 0)
            continue;
        t->hooked_sites++;
        added = true;
    }
    if (added) {
        U.ctl(uc, CTL_TB_REMOVE_CACHE, addr, addr + size);
        U.reg_write(uc, REG_PC, &addr);
    } else {
        uint64_t stop;
        *count = (uint32_t)zpci_count_insns(buf, size, 0, size, NULL, &stop);
    }
    return added;
}

/* ------------------------------------------------------------------- clock */

uint64_t trap_tod_now(trap_state *t)
{
    return t->tod_base + t->insns * 512 / 125;      /* 4096 units per us, 1 ns each */
}

void trap_set_ckc(trap_state *t, uint64_t ckc)
{
    t->ckc = ckc;
    if (ckc < t->tod_base) {
        t->ckc_at = 0;
        return;
    }
    unsigned __int128 n = (unsigned __int128)(ckc - t->tod_base) * 125 / 512;
    t->ckc_at = n >= UINT64_MAX ? UINT64_MAX : (uint64_t)n;
}

/* Each clock store is at least TOD_READ_STEP later than the previous one:
 * the clock is unique for each store, and a loop that polls the clock (a
 * udelay, a timeout) sees time pass at a rate independent of how few
 * instructions it takes.  The instruction clock follows, so that the clock
 * comparator and later stores agree with what was stored. */
#define TOD_READ_STEP 4096              /* 1 us */

static uint64_t tod_store_value(trap_state *t)
{
    uint64_t now = trap_tod_now(t);
    uint64_t v = now;
    if (t->tod_last && v < t->tod_last + TOD_READ_STEP)
        v = t->tod_last + TOD_READ_STEP;
    if (v != now) {
        t->tod_base += v - now;
        trap_set_ckc(t, t->ckc);
    }
    t->tod_last = v;
    return v;
}

static uint64_t operand_address(void *uc, const uint8_t *b, uint64_t pswm)
{
    uint64_t base = 0;
    uint32_t rb = b[2] >> 4;
    if (rb)
        U.reg_read(uc, REG_R0 + (int)rb, &base);
    uint64_t a = base + (((uint64_t)(b[2] & 0xF) << 8) | b[3]);
    if (pswm & PSW_MASK_64)
        return a;
    return a & (pswm & PSW_MASK_32 ? 0x7FFFFFFFULL : 0xFFFFFFULL);
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* Completes a clock instruction at addr; false leaves it to Python (a
 * privileged one in problem state, an operand that does not translate). */
static bool clock_insn(trap_state *t, void *uc, uint64_t addr, const uint8_t *b)
{
    uint64_t pswm;
    U.reg_read(uc, REG_PSWM, &pswm);
    bool privileged = b[1] == 0x06 || b[1] == 0x07;
    if (privileged && (pswm & PSW_MASK_PSTATE))
        return false;
    uint64_t ea = operand_address(uc, b, pswm);
    uint8_t out[16] = {0};
    uint32_t n = 8;
    bool sets_cc = false;
    switch (b[1]) {
    case 0x05: case 0x7C:               /* STCK, STCKF */
        put_be64(out, tod_store_value(t));
        sets_cc = true;
        break;
    case 0x78:                          /* STCKE: epoch index 0, clock, zeros, TOD programmable 0 */
        put_be64(out + 1, tod_store_value(t));
        n = 16;
        sets_cc = true;
        break;
    case 0x07:                          /* STCKC */
        put_be64(out, t->ckc);
        break;
    case 0x06: {                        /* SCKC */
        uint8_t in[8];
        if (ea & 7 || U.vmem_read(uc, ea, PROT_READ, in, 8) != 0)
            return false;
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
            v = v << 8 | in[i];
        trap_set_ckc(t, v);
        n = 0;
        break;
    }
    default:
        return false;
    }
    if (b[1] == 0x07 && (ea & 7))
        return false;                   /* specification: Python delivers it */
    if (n && U.vmem_write(uc, ea, PROT_WRITE, out, n) != 0)
        return false;
    if (t->counting)
        uncount_rest_of_block(t);
    if (sets_cc && (pswm & PSW_MASK_CC)) {
        pswm &= ~PSW_MASK_CC;           /* cc 0: the clock is in the set state */
        U.reg_write(uc, REG_PSWM, &pswm);
    }
    t->clock_insns++;
    if (t->counting)
        t->insns++;
    uint64_t next = addr + 4;
    U.reg_write(uc, REG_PC, &next);
    return true;
}

/* Whether the LPSWE/LPSW at addr loads a wait PSW (which Python handles). */
static bool loads_wait(trap_state *t, void *uc, const uint8_t *b)
{
    (void)t;
    uint64_t pswm;
    U.reg_read(uc, REG_PSWM, &pswm);
    if (pswm & PSW_MASK_PSTATE)
        return true;                    /* privileged operation: Python delivers it */
    uint8_t psw[8];
    if (U.vmem_read(uc, operand_address(uc, b, pswm), PROT_READ, psw, 8) != 0)
        return true;                    /* let Python report it */
    /* bit 14 of the mask, in both the 16-byte and the short format */
    return (psw[1] & 0x02) != 0;
}

/* The code hook of a supervisor-state site: true hands the instruction to
 * Python; false means it was completed here or is to run natively. */
static bool supervisor_site(trap_state *t, void *uc, uint64_t addr)
{
    uint8_t b[6];
    uint32_t n = 0;
    for (uint32_t k = 6; k >= 2; k -= 2)
        if (read_code(t, uc, addr, b, k) == 0) {
            n = k;
            break;
        }
    t->pc = addr;
    switch (sensitive(b, n)) {
    case SENS_NONE:
        return false;                   /* other code at this address now */
    case SENS_CLOCK:
        if (b[1] == 0x04)
            return true;
        return !clock_insn(t, uc, addr, b);
    case SENS_WAIT:
        return loads_wait(t, uc, b);
    default:
        return true;
    }
}

/* ------------------------------------------------------------ interruptions */

/* Whether the PSW and the control registers enable a pending interruption
 * (the clock comparator once the clock has passed it). */
static bool event_due(trap_state *t, void *uc)
{
    uint64_t pswm;
    U.reg_read(uc, REG_PSWM, &pswm);
    if (pswm & PSW_MASK_EXT) {
        uint64_t ext = t->pending_ext_sc;
        if (t->insns >= t->ckc_at && trap_tod_now(t) > t->ckc)
            ext |= CR0_CKC_SC;
        if (ext) {
            uint64_t cr0;
            U.reg_read(uc, REG_CR0, &cr0);
            if (cr0 & ext)
                return true;
        }
    }
    if ((pswm & PSW_MASK_IO) && t->pending_io_isc) {
        uint64_t cr6;
        U.reg_read(uc, REG_CR0 + 6, &cr6);
        if (cr6 & t->pending_io_isc)
            return true;
    }
    return false;
}

int trap_supervise(trap_state *t)
{
    if (!t->uc) {
        snprintf(last_error, sizeof last_error, "trap_supervise: trap_install was not called");
        return -1;
    }
    if (!t->uc_ctx && U.context_alloc(t->uc, &t->uc_ctx) != 0) {
        snprintf(last_error, sizeof last_error, "uc_context_alloc failed");
        return -1;
    }
    if (U.context_size(t->uc) < CTX_DATA + CTX_PGM_ILEN + 4) {
        snprintf(last_error, sizeof last_error, "unicorn's CPU state is smaller than expected");
        return -1;
    }
    t->supervisor = 1;
    t->counting = 1;
    t->ckc = UINT64_MAX;
    trap_set_ckc(t, UINT64_MAX);
    return 0;
}

void trap_tlb_flush(trap_state *t)
{
    U.ctl(t->uc, CTL_TLB_FLUSH);
}

int trap_vmem_read(trap_state *t, uint64_t addr, uint8_t *out, uint64_t n)
{
    return U.vmem_read(t->uc, addr, PROT_READ, out, n);
}

int trap_vmem_write(trap_state *t, uint64_t addr, const uint8_t *data, uint64_t n)
{
    return U.vmem_write(t->uc, addr, PROT_WRITE, data, n);
}
