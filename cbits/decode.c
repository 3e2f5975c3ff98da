/*
 * zPCI decoder: walks an s390x instruction stream by the instruction-length
 * code and decodes every instruction of firmware_model/zpci_insns.def.
 *
 * Safety contract: no function reads buf[len] or beyond, whatever the bytes.
 * Each walk has three stages: three instructions per step while 18 bytes
 * remain, one per step while 6 remain (enough for any instruction and its
 * selector byte), and a tail that checks every read.
 */
#include <string.h>

#include "decode.h"

/* 00 -> 2, 01 and 10 -> 4, 11 -> 6: (b + 64) >> 7 maps the ILC to 0, 1, 1, 2. */
#define ILC_LEN(b) (2u + 2u * ((((unsigned)(b) & 0xffu) + 64u) >> 7))

/* Table indices as enumerators, so the tables below can be built statically. */
enum zpci_table_index {
#define ZPCI_INSN(op, mn, fmt, ilen, cls, priv, even, fhr, st, h) ZPCI_IDX_##mn,
#include "zpci_insns.def"
#undef ZPCI_INSN
    ZPCI_NINSN
};

_Static_assert(ZPCI_NINSN <= ZPCI_TABLE_MAX, "zpci_insns.def outgrew ZPCI_TABLE_MAX");
_Static_assert(ZPCI_NINSN < ZPCI_INDEX_NONE, "table index collides with ZPCI_INDEX_NONE");
_Static_assert(sizeof(zpci_decoded) == 32, "zpci_decoded should pack into 32 bytes");

/*
 * The walk finds an entry by (first byte, byte at 1 or 5), so the table's
 * length must be the one the ILC of its first byte gives, and the opcode
 * must not be 0 (key 0 means "no entry").
 */
#define ZPCI_INSN(op, mn, fmt, ilen, cls, priv, even, fhr, st, h)                                   \
    _Static_assert(ILC_LEN((op) >> 8) == (ilen), #mn ": length disagrees with ILC"); \
    _Static_assert((ilen) != 2, #mn ": 2-byte forms have no selector byte");       \
    _Static_assert((op) != 0, #mn ": opcode 0 is reserved as the miss key");
#include "zpci_insns.def"
#undef ZPCI_INSN

static const zpci_insn_info table[ZPCI_NINSN] = {
#define ZPCI_INSN(op, mn, fmt, ilen, cls, priv, even, fhr, st, h) \
    {op, ilen, ZPCI_FMT_##fmt, priv, ZPCI_ST_##st, #mn, #h},
#include "zpci_insns.def"
#undef ZPCI_INSN
};

/*
 * hit[first byte << 8 | selector byte] = index + 1; the selector is byte 1
 * of a 4-byte instruction and byte 5 of a 6-byte one.  64 KiB, but a walk
 * only touches the rows of the table's first bytes plus row 0, so it stays
 * in a few cache lines.
 */
#pragma GCC diagnostic push
#pragma GCC diagnostic error "-Woverride-init"  /* a duplicate opcode in the table */
static const uint8_t hit[65536] = {
#define ZPCI_INSN(op, mn, fmt, ilen, cls, priv, even, fhr, st, h) [op] = ZPCI_IDX_##mn + 1,
#include "zpci_insns.def"
#undef ZPCI_INSN
};
#pragma GCC diagnostic pop

/*
 * keymask[b] keeps the key for first bytes that start some entry and zeroes
 * it otherwise, which sends every other instruction to hit[0] without a
 * branch: common first bytes (E3 is lg/stg) share a row with zPCI entries,
 * so a branch on the first byte alone would mispredict on ordinary code.
 */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverride-init"  /* entries share first bytes */
static const uint16_t keymask[256] = {
#define ZPCI_INSN(op, mn, fmt, ilen, cls, priv, even, fhr, st, h) [(op) >> 8] = 0xffff,
#include "zpci_insns.def"
#undef ZPCI_INSN
};
#pragma GCC diagnostic pop

int zpci_table_size(void)
{
    return ZPCI_NINSN;
}

const zpci_insn_info *zpci_table_get(int index)
{
    if (index < 0 || index >= ZPCI_NINSN)
        return NULL;
    return &table[index];
}

int zpci_table_lookup(unsigned int opcode)
{
    if (opcode > 0xffff)
        return -1;
    return (int)hit[opcode] - 1;
}

int zpci_insn_length(unsigned int first_byte)
{
    return (int)ILC_LEN(first_byte);
}

/* Selector offset: where the second opcode byte sits for this length. */
static inline unsigned sel_offset(unsigned b0)
{
    return ILC_LEN(b0) == 6 ? 5u : 1u;
}

/* Operand fields of a complete instruction q[0..ilen) known to be entry idx. */
static void fill_fields(const uint8_t *q, unsigned idx, zpci_decoded *d)
{
    const zpci_insn_info *in = &table[idx];

    d->index = (uint8_t)idx;
    d->opcode = in->opcode;
    switch (in->format) {
    case ZPCI_FMT_RRF_C:
        d->m3 = q[2] >> 4;
        d->m4 = q[2] & 0xf;
        d->r1 = q[3] >> 4;
        d->r2 = q[3] & 0xf;
        break;
    case ZPCI_FMT_RRE:
        /* bits 16-23 are unused in RRE: ignored, as the CPU does */
        d->r1 = q[3] >> 4;
        d->r2 = q[3] & 0xf;
        break;
    default: {
        /* RSY-a / RXY-a: DL is 12 bits, DH the signed high 8 of 20. */
        int32_t dl = ((q[2] & 0xf) << 8) | q[3];
        d->d2 = (int32_t)(int8_t)q[4] * 4096 + dl;
        d->r1 = q[1] >> 4;
        d->b2 = q[2] >> 4;
        if (in->format == ZPCI_FMT_RSY_A)
            d->r3 = q[1] & 0xf;
        else
            d->x2 = q[1] & 0xf;
        break;
    }
    }
}

/* Full decode of a complete instruction (ilen bytes readable at q). */
static void decode_complete(const uint8_t *q, unsigned ilen, unsigned idx1, uint64_t addr,
                            zpci_decoded *d)
{
    memset(d, 0, sizeof(*d));
    d->addr = addr;
    d->ilen = (uint8_t)ilen;
    d->index = ZPCI_INDEX_NONE;
    d->ipa = (uint16_t)(q[0] << 8 | q[1]);
    /* SIE's ipb: bytes 2-5, left-justified, so a 4-byte form has a zero low half. */
    if (ilen >= 4)
        d->ipb = (uint32_t)q[2] << 24 | (uint32_t)q[3] << 16;
    if (ilen == 6)
        d->ipb |= (uint32_t)q[4] << 8 | q[5];
    if (idx1)
        fill_fields(q, idx1 - 1, d);
}

/* Table lookup for the instruction at q (its selector byte must be readable): index + 1 or 0. */
static inline unsigned lookup(const uint8_t *q, unsigned b0)
{
    unsigned sel = q[sel_offset(b0)];
    return hit[((b0 << 8) | sel) & keymask[b0]];
}

int zpci_decode_one(const uint8_t *buf, size_t len, uint64_t addr, zpci_decoded *out)
{
    if (!buf || len == 0 || !out)
        return 0;
    unsigned b0 = buf[0];
    unsigned ilen = ILC_LEN(b0);
    if (len < ilen) {
        memset(out, 0, sizeof(*out));
        out->addr = addr;
        out->ilen = (uint8_t)ilen;
        out->index = ZPCI_INDEX_NONE;
        out->flags = ZPCI_DEC_TRUNCATED;
        return (int)ilen;
    }
    /* A 2-byte instruction has no selector byte and no table entry. */
    decode_complete(buf, ilen, ilen == 2 ? 0 : lookup(buf, b0), addr, out);
    return (int)ilen;
}

void zpci_scan_init(zpci_scan *scan)
{
    if (scan)
        memset(scan, 0, sizeof(*scan));
}

/* Record a truncated tail at pc if the buffer ends inside an instruction. */
static void note_tail(zpci_scan *s, size_t pc, size_t len)
{
    s->next = pc;
    if (pc < len) {
        s->trunc_offset = pc;
        s->trunc_bytes = (uint32_t)(len - pc);
    } else {
        s->trunc_offset = 0;
        s->trunc_bytes = 0;
    }
}

/*
 * Three instructions per step.  The length chain (byte -> length -> next
 * byte) is what bounds a walk, so the fast loop looks up the combined
 * length of three instructions at once: their starts can only be at even
 * offsets 0..12, and the ILC bits of the bytes there (7 x 2 bits) select
 * the advance from a 16 KiB table.  A step reads bytes 0..17 (the third
 * instruction can start at 12 and its selector byte is at +5).
 */
#define STEP3_SPAN 18u
static uint8_t step3_advance[1u << 14];

__attribute__((constructor)) static void init_step3(void)
{
    for (unsigned key = 0; key < (1u << 14); key++) {
        unsigned off = 0;
        for (int i = 0; i < 3; i++)
            off += ILC_LEN(((key >> off) & 3u) << 6);   /* field at offset o is key bits o..o+1 */
        step3_advance[key] = (uint8_t)off;
    }
}

static inline uint64_t load_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* ILC bits of bytes 0, 2, 4, 6 of p, packed into 8 bits (byte 2j -> bits 2j). */
static inline unsigned ilc_fields4(const uint8_t *p)
{
    /*
     * After >> 6 and the mask the four 2-bit fields sit at bits 0, 16, 32
     * and 48; the multiply moves them to bits 48, 50, 52, 54, and every
     * other partial product lands below bit 40 or above bit 63, so nothing
     * carries into the result.
     */
    const uint64_t mask = 0x0003000300030003ull;
    const uint64_t gather = (1ull << 48) | (1ull << 34) | (1ull << 20) | (1ull << 6);
    return (unsigned)((((load_le64(p) >> 6) & mask) * gather) >> 48) & 0xffu;
}

static inline unsigned step3_key(const uint8_t *p)
{
    return ilc_fields4(p) | (ilc_fields4(p + 8) & 0x3fu) << 8;
}

/* Whether any of the three instructions at p is in the table. */
static inline unsigned step3_hits(const uint8_t *p)
{
    unsigned o1 = ILC_LEN(p[0]);
    unsigned o2 = o1 + ILC_LEN(p[o1]);
    return lookup(p, p[0]) | lookup(p + o1, p[o1]) | lookup(p + o2, p[o2]);
}

/* A walk in progress; small enough that the compiler keeps it in registers. */
struct walk {
    const uint8_t *buf;
    uint64_t base;
    zpci_decoded *out;
    size_t cap;
    size_t pc;
    uint64_t total;
    uint64_t nz;
    uint64_t *counts;
};

/* One instruction with >= 6 bytes readable at pc; 0 (pc unchanged) if the output is full. */
static inline __attribute__((always_inline)) int walk_one(struct walk *w)
{
    const uint8_t *q = w->buf + w->pc;
    unsigned b0 = q[0];
    unsigned h = lookup(q, b0);
    if (__builtin_expect(h != 0, 0)) {
        if (w->nz >= w->cap || !w->out)
            return 0;
        decode_complete(q, ILC_LEN(b0), h, w->base + w->pc, &w->out[w->nz++]);
        w->counts[h - 1]++;
    }
    w->pc += ILC_LEN(b0);
    w->total++;
    return 1;
}

/* The fast part of a walk: returns 0 if it stopped because the output is full. */
static inline __attribute__((always_inline)) int walk_fast(struct walk *w, size_t len)
{
    if (len >= STEP3_SPAN) {
        const size_t last3 = len - STEP3_SPAN;
        while (w->pc <= last3) {
            const uint8_t *p = w->buf + w->pc;
            if (__builtin_expect(step3_hits(p) != 0, 0)) {
                /* Rare: take these three one at a time, recording the hits. */
                if (!walk_one(w) || !walk_one(w) || !walk_one(w))
                    return 0;
                continue;
            }
            w->pc += step3_advance[step3_key(p)];
            w->total += 3;
        }
    }
    if (len >= 6) {
        const size_t last = len - 6;
        while (w->pc <= last)
            if (!walk_one(w))
                return 0;
    }
    return 1;
}

int zpci_decode_buffer(const uint8_t *buf, size_t len, uint64_t base,
                       zpci_decoded *out, size_t cap, zpci_scan *s)
{
    if (!s)
        return 1;
    s->full = 0;
    if (!buf)
        len = 0;
    if (s->next >= len) {
        note_tail(s, len, len);
        return 1;
    }
    struct walk w = {buf, base, out, cap, s->next, s->total, s->nzpci, s->counts};
    int done = walk_fast(&w, len);

    /* Tail: fewer than 6 bytes left, every read checked. */
    while (done && w.pc < len) {
        unsigned b0 = buf[w.pc];
        unsigned ilen = ILC_LEN(b0);
        if (len - w.pc < ilen)
            break;
        unsigned h = ilen == 2 ? 0 : lookup(buf + w.pc, b0);
        if (h) {
            if (w.nz >= cap || !out) {
                done = 0;
                break;
            }
            decode_complete(buf + w.pc, ilen, h, base + w.pc, &out[w.nz++]);
            s->counts[h - 1]++;
        }
        w.pc += ilen;
        w.total++;
    }

    s->total = w.total;
    s->nzpci = w.nz;
    if (!done) {
        s->full = 1;
        s->next = w.pc;
        return 0;
    }
    note_tail(s, w.pc, len);
    return 1;
}

uint64_t zpci_count_insns(const uint8_t *buf, size_t len, size_t start, size_t end,
                          uint64_t *counts, uint64_t *stop)
{
    uint64_t n = 0;
    size_t pc = start;
    if (!buf)
        len = 0;
    if (end > len)
        end = len;

    /* Three at a time while the third start (<= pc + 12) is below end and
     * 18 bytes are readable. */
    if (len >= STEP3_SPAN && end > 12) {
        const size_t lim3 = end - 12 < len - STEP3_SPAN + 1 ? end - 12 : len - STEP3_SPAN + 1;
        while (pc < lim3) {
            const uint8_t *p = buf + pc;
            if (counts && __builtin_expect(step3_hits(p) != 0, 0)) {
                for (int i = 0; i < 3; i++) {
                    unsigned b0 = buf[pc], h = lookup(buf + pc, b0);
                    if (h)
                        counts[h - 1]++;
                    pc += ILC_LEN(b0);
                }
                n += 3;
                continue;
            }
            pc += step3_advance[step3_key(p)];
            n += 3;
        }
    }
    /* Hot loop: as in zpci_decode_buffer, 6 readable bytes guaranteed. */
    if (len >= 6) {
        const size_t last = len - 6;
        const size_t lim = end < last + 1 ? end : last + 1;
        if (counts) {
            while (pc < lim) {
                unsigned b0 = buf[pc];
                unsigned h = lookup(buf + pc, b0);
                if (__builtin_expect(h != 0, 0))
                    counts[h - 1]++;
                pc += ILC_LEN(b0);
                n++;
            }
        } else {
            while (pc < lim) {
                pc += ILC_LEN(buf[pc]);
                n++;
            }
        }
    }
    while (pc < end) {
        unsigned b0 = buf[pc];
        unsigned ilen = ILC_LEN(b0);
        if (len - pc < ilen)
            break;
        if (counts && ilen != 2) {
            unsigned h = lookup(buf + pc, b0);
            if (h)
                counts[h - 1]++;
        }
        pc += ilen;
        n++;
    }
    if (stop)
        *stop = pc;
    return n;
}
