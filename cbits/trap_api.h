/*
 * cdef of the unicorn trap path (cbits/trap.c).  This file is read as a cffi
 * cdef and also compiled as C, so it stays plain: no includes, no
 * conditionals, integer #defines only.  Includers provide <stdint.h>.
 *
 * One trap_state per unicorn engine.  The C hook fills it, calls Python once
 * (the run's zPCI callable for a zPCI instruction, trap_py_other for anything
 * else) and applies what Python left in it: changed GPRs, the CC, the PSW
 * mask and the next address.
 *
 * The zPCI callable is the hot path (one call per zPCI instruction), so C
 * calls it directly (PyObject_Vectorcall on a Python object trap_run was
 * given) instead of through cffi's extern "Python" entry, which costs about
 * 0.19 us per call.  The rare callbacks (other privileged instructions, the
 * block hook, the poll) stay cffi `extern "Python+C"` functions, declared in
 * trap_cdef.h (cdef only: that syntax is not C) and defined with
 * @ffi.def_extern by emulator/cpu/native.py, which attaches the running
 * machine's handlers for the length of each trap_run.  No callback takes a
 * trap_state argument: the machine already holds its own, and an argument
 * would cost a cdata object per call.  Needs decode_api.h (zpci_decoded)
 * first, which build_native.py's part order gives.
 */

/* Instructions per block, direct-mapped by address (the block hook runs on
 * every block execution and must not re-read guest code each time). */
typedef struct trap_block_slot {
    uint64_t addr;
    uint32_t size;
    uint32_t insns;
} trap_block_slot;

/* A zPCI instruction site: its address and bytes, direct-mapped by address,
 * so Python can reuse the decoded instruction it built for the same bytes. */
typedef struct trap_site_slot {
    uint64_t addr;
    uint8_t bytes[6];
    uint8_t valid;
    uint8_t pad;
} trap_site_slot;

typedef struct trap_state {
    void *uc;                 /* uc_engine * */
    uint64_t gpr[16];         /* in: GPRs at the trap; out: new values */
    uint64_t pc;              /* address of the trapping instruction */
    uint64_t pswm;            /* unicorn's PSW mask at the trap (problem state set) */
    uint64_t next_pc;         /* out: where to continue */
    uint64_t new_pswm;        /* out: written when set_pswm */
    int32_t set_pswm;
    int32_t cc;               /* out: -1 keeps the condition code */
    uint32_t intno;           /* unicorn's exception number (3 = program) */
    uint32_t nbytes;          /* readable instruction bytes at pc (0..6) */
    uint8_t bytes[6];
    /* The decoder's view of the instruction at pc, whatever the trap (ilen
     * 0 when no byte is readable); index is ZPCI_INDEX_NONE unless it is a
     * complete zPCI instruction that raised a program exception. */
    zpci_decoded d;

    /* run control and accounting */
    uint64_t insns;           /* guest instructions executed (when counting) */
    uint64_t insn_limit;      /* stop once insns reaches it (when counting) */
    uint64_t zpci_traps;
    uint64_t other_traps;
    uint64_t blocks;          /* block executions seen by the block hook */
    int32_t stop;             /* why the last trap_run returned: TRAP_STOP_* */
    int32_t counting;         /* the block hook counts instructions */
    int32_t tracing;          /* block hook reports blocks to Python */
    int32_t fault_type;       /* uc_mem_type of an unmapped access */
    uint64_t fault_addr;      /* its address (TRAP_STOP_UNMAPPED) */
    uint64_t fault_pc;        /* PC unicorn reported for it */
    uint64_t cur_block;       /* start, size, instructions of the running block */
    uint32_t cur_block_size;
    uint32_t cur_block_insns;
    int32_t uc_err;           /* uc_emu_start's result */

    uint64_t poll_interval;   /* trap_py_poll every this many blocks, a power of two
                                 (0: never); a poll returning 1 stops the run */
    uint64_t zpci_counts[256];  /* zPCI traps per table row (zpci_decoded.index) */
    /* For a zPCI trap: the site slot of pc, plus TRAP_SITE_NEW when the slot
     * was (re)filled now, i.e. Python's object for that slot is stale. */
    uint32_t site;
    /* trap_run's callables (PyObject *): strong references held by C for the
     * length of a run, NULL outside one.  Python must not write them. */
    void *py_zpci;
    void *py_error;
    char error_text[160];     /* TRAP_STOP_ERROR: why, one line */
    trap_block_slot block_cache[65536];
    trap_site_slot site_cache[1024];
    /* Measurement only (benchmarks/boot.py's floor of the trap path): when
     * non-zero, every zPCI trap takes this as the zPCI callable's result
     * without calling Python.  0 in every real run. */
    int32_t fixed_zpci_result;

    /* Supervisor-state guests (a Linux kernel image; see trap_supervise).
     * The instructions unicorn runs as silent no-ops or wrongly are found
     * when their block first runs and hooked at their addresses: the clock
     * instructions are answered here in C, an LPSWE/LPSW goes to Python only
     * when it loads a wait PSW, the rest go to Python as TRAP_INTNO_HOOKED
     * (zPCI to the zPCI callable).  The TOD clock is instruction time:
     * tod_base + insns * 4096 / 1000 (1 ns per instruction); an enabled wait
     * moves tod_base forward to the clock comparator. */
    int32_t supervisor;
    int32_t pgm_code;         /* a program exception: unicorn's interruption code ... */
    int32_t pgm_ilen;         /* ... and instruction length (read from its CPU state) */
    int32_t pad0;
    uint64_t prefix;          /* the CPU's prefix, read at each supervisor trap to Python */
    uint64_t tod_base;
    uint64_t tod_last;        /* last TOD value stored: each store is unique */
    uint64_t ckc;             /* clock comparator */
    uint64_t ckc_at;          /* insns from which the clock comparator may be due */
    uint64_t pending_ext_sc;  /* CR0 subclass bits of pending external interruptions */
    uint64_t pending_io_isc;  /* CR6 ISC bits of pending I/O interruptions */
    uint64_t clock_insns;     /* clock instructions answered in C */
    uint64_t hooked_sites;    /* addresses hooked */
    uint64_t scanned_blocks;  /* blocks scanned for sensitive instructions */
    void *uc_ctx;             /* uc_context for reading the CPU state */
    uint64_t site_set[16384]; /* hooked addresses, open addressing (0 = empty) */
} trap_state;

#define TRAP_SITES 1024
#define TRAP_SITE_NEW 0x10000

/* the zPCI callable's result: resume and set the condition code to the low 2 bits */
#define TRAP_RESUME_CC 0x10

/* stop reasons */
#define TRAP_STOP_NONE 0
#define TRAP_STOP_PYTHON 1
#define TRAP_STOP_LIMIT 2
#define TRAP_STOP_UNMAPPED 3
/* a zPCI trap could not be handed to Python (an exception the error callable
 * could not take, or no callable: a run not started by trap_run); see
 * trap_state.error_text */
#define TRAP_STOP_ERROR 4

/* intno reported for an instruction caught by trap_hook_at */
#define TRAP_INTNO_HOOKED 256
/* intno reported for a block that starts at an odd address: nothing ran
 * there, and trap_state.pc is that address (the block hook's trap) */
#define TRAP_INTNO_ODD_FETCH 257
/* intno reported before a block when an interruption may be deliverable
 * (supervisor state): nothing of the block ran, trap_state.pc is its start */
#define TRAP_INTNO_EVENT 258
#define TRAP_SITE_SET 16384

/* Binds the libunicorn the Python binding already loaded (dlopen RTLD_NOLOAD).
 * Returns 0, or -1 with the reason in trap_last_error(). */
int trap_bind(const char *libpath);
const char *trap_last_error(void);

/* Hooks the engine `uch` (the binding's uc_engine pointer).  The block hook
 * is always installed (it catches blocks at odd addresses); `count` makes it
 * count instructions, `trace` makes it report each block to trap_py_block.
 * Storage is mapped from 0 to `mapped_end`; the unmapped-access hook covers
 * only what lies above. */
int trap_install(trap_state *t, uintptr_t uch, int count, int trace, uint64_t mapped_end);

/* Hooks the instruction at addr (UC_HOOK_CODE bounded to it): it reaches
 * trap_py_other with intno TRAP_INTNO_HOOKED instead of running. */
int trap_hook_at(trap_state *t, uint64_t addr);

/* uc_emu_start(begin, no end address) from C, holding the GIL for the whole
 * run (callbacks then enter Python cheaply); returns uc_err, sets t->stop.
 *
 * zpci_fn and error_fn are Python objects (PyObject *, passed from Python as
 * ffi.cast("void *", id(obj)) of an object the caller references for the
 * whole call); C takes its own references for the run and drops them at the
 * end, so nothing outlives the run.  zpci_fn(site) is called once per zPCI
 * instruction with trap_state.site and returns an int: 0 resumes at
 * trap_state.next_pc, TRAP_RESUME_CC | cc resumes with that condition code,
 * anything else stops the run.  If it raises (or returns no int), the
 * exception goes to error_fn(exc) and the run stops (TRAP_STOP_PYTHON); if
 * error_fn is NULL or raises too, the run stops with TRAP_STOP_ERROR and a
 * one-line description in trap_state.error_text.  Returns -1 without running
 * when either is not callable (NULL is allowed: zPCI traps then stop the run
 * with TRAP_STOP_ERROR) or trap_install has not hooked an engine into t. */
int trap_run(trap_state *t, uint64_t begin, void *zpci_fn, void *error_fn);

/* Makes t a supervisor-state machine (before its first run): no problem
 * state, sensitive instructions hooked as their blocks first run, program
 * exceptions reported with unicorn's own code and length.  0, or -1. */
int trap_supervise(trap_state *t);

/* The TOD clock now, and the instruction count from which it exceeds ckc
 * (call after changing ckc or tod_base). */
uint64_t trap_tod_now(trap_state *t);
void trap_set_ckc(trap_state *t, uint64_t ckc);

/* Drops unicorn's TLB (after a control-register change it must see). */
void trap_tlb_flush(trap_state *t);

/* Virtual (DAT) access with the current translation, as an instruction
 * operand would be: 0 on success. */
int trap_vmem_read(trap_state *t, uint64_t addr, uint8_t *out, uint64_t n);
int trap_vmem_write(trap_state *t, uint64_t addr, const uint8_t *data, uint64_t n);

/* Cheap guest access for the Python side: 0 on success. */
int trap_mem_read(trap_state *t, uint64_t addr, uint8_t *out, uint64_t n);
int trap_mem_write(trap_state *t, uint64_t addr, const uint8_t *data, uint64_t n);

/* The model's register accessors for t->gpr, appended to the Python list
 * `out` (a PyObject *, passed as trap_run's callables are): gpr(r) -> int and
 * set_gpr(r, value), which stores value modulo 2**64, both for r in 0..15
 * (IndexError otherwise).  They are builtins, so a model reading or setting a
 * register spends no Python frame and no cffi conversion on it; each keeps
 * `owner` (the cdata that owns t) alive.  0, or -1 with a Python error
 * cleared and trap_last_error set. */
int trap_gpr_accessors(trap_state *t, void *owner, void *out);
