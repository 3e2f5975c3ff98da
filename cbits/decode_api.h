/*
 * zPCI decoder: the declarations cffi sees (cdef) and C compiles.
 *
 * cbits/build_native.py feeds this file both to ffibuilder.cdef() and, as an
 * #include, to the generated module, so it may only hold what cffi's cdef
 * parser accepts: integer #defines, typedefs and prototypes, no #include and
 * no include guard.  The fixed-width types come from <stdint.h>, which cffi's
 * generated code and cbits/decode.h include before this file.  Other C code
 * (cbits/trap.c) includes cbits/decode.h, not this file.
 */

/* zpci_decoded.flags: the buffer ended inside the instruction. */
#define ZPCI_DEC_TRUNCATED 1
/* zpci_decoded.index of an instruction that is not in the table. */
#define ZPCI_INDEX_NONE 255
/* Room for per-index counters; decode.c asserts the table fits. */
#define ZPCI_TABLE_MAX 32

/* zpci_insn_info.format */
#define ZPCI_FMT_RRE 0
#define ZPCI_FMT_RRF_C 1
#define ZPCI_FMT_RSY_A 2
#define ZPCI_FMT_RXY_A 3

/* zpci_insn_info.status_reg */
#define ZPCI_ST_NONE 0
#define ZPCI_ST_R1 1
#define ZPCI_ST_R2 2
#define ZPCI_ST_R2P1 3

/*
 * One decoded instruction; the field names are the contract of
 * docs/design.md (firmware_model.insns.Decoded has the same ones).  Ordered
 * widest first so the record is 32 bytes with no hidden holes, which lets
 * numpy view an array of them with a plain structured dtype.
 */
typedef struct zpci_decoded {
    uint64_t addr;
    uint32_t ipb;
    int32_t d2;
    uint16_t opcode;
    uint16_t ipa;
    uint8_t index;
    uint8_t ilen;
    uint8_t r1;
    uint8_t r2;
    uint8_t r3;
    uint8_t m3;
    uint8_t m4;
    uint8_t x2;
    uint8_t b2;
    uint8_t flags;
} zpci_decoded;

/* One row of firmware_model/zpci_insns.def as the C side compiled it. */
typedef struct zpci_insn_info {
    uint16_t opcode;
    uint8_t ilen;
    uint8_t format;
    uint8_t privileged;
    uint8_t status_reg;
    const char *mnemonic;
    const char *handler;
} zpci_insn_info;

/*
 * State of a walk over one buffer.  zpci_decode_buffer resumes at `next`
 * and adds to the counters, so a caller whose output array filled up can
 * grow it and call again without losing anything.
 */
typedef struct zpci_scan {
    uint64_t next;          /* offset of the first instruction not yet walked */
    uint64_t total;         /* complete instructions walked */
    uint64_t nzpci;         /* zPCI instructions written to the output */
    uint64_t trunc_offset;  /* offset of a truncated last instruction */
    uint32_t trunc_bytes;   /* its bytes present; 0 = buffer ends on a boundary */
    uint32_t full;          /* 1 = stopped because the output array was full */
    uint64_t counts[32];    /* per table index (ZPCI_TABLE_MAX) */
} zpci_scan;

/* The table. */
int zpci_table_size(void);
const zpci_insn_info *zpci_table_get(int index);     /* NULL out of range */
int zpci_table_lookup(unsigned int opcode);          /* index, or -1 */

/* 2, 4 or 6, from the instruction-length code in the first byte. */
int zpci_insn_length(unsigned int first_byte);

/*
 * Decode the instruction at buf[0].  Returns its architected length, or 0
 * for an empty buffer.  A non-zPCI instruction gets index ZPCI_INDEX_NONE,
 * ipa/ipb and zero operand fields; one cut by the end of the buffer gets
 * ZPCI_DEC_TRUNCATED and nothing else but addr and ilen.  Reads at most
 * min(len, 6) bytes.
 */
int zpci_decode_one(const uint8_t *buf, size_t len, uint64_t addr, zpci_decoded *out);

/* Zero a scan before the first zpci_decode_buffer call on a buffer. */
void zpci_scan_init(zpci_scan *scan);

/*
 * Walk buf from scan->next to the end, writing each zPCI instruction to
 * out[scan->nzpci ...] (at most cap records in total) with addr = base +
 * offset.  Returns 1 when the walk reached the end of the buffer, 0 when it
 * stopped because the output was full (scan->full; call again with a larger
 * array holding the records so far).
 */
int zpci_decode_buffer(const uint8_t *buf, size_t len, uint64_t base,
                       zpci_decoded *out, size_t cap, zpci_scan *scan);

/*
 * Count the complete instructions starting in [start, end) of buf, walking
 * from start; counts (ZPCI_TABLE_MAX entries, may be NULL) is incremented per
 * table index.  *stop receives the offset where the walk ended: the first
 * boundary at or after end, or the offset of an instruction cut by the
 * buffer end.
 */
uint64_t zpci_count_insns(const uint8_t *buf, size_t len, size_t start, size_t end,
                          uint64_t *counts, uint64_t *stop);
