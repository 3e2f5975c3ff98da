/*
 * The per-instruction trap path of `zpci-emu boot`.
 *
 * The guest runs under unicorn in problem state, so every privileged
 * instruction (the zPCI family included) raises a program exception that
 * unicorn reports as UC_HOOK_INTR intno 3 with the PC at the instruction and
 * nothing executed.  This hook decodes the instruction, hands it to Python
 * once with the GPRs already read, and applies what Python decided.  A zPCI
 * instruction goes to the Python callable trap_run was given, called directly
 * (PyObject_Vectorcall, the GIL held for the whole run); anything else goes
 * through cffi's extern "Python" functions.  Unicorn is reached through the
 * libunicorn the Python binding already loaded (dlopen RTLD_NOLOAD), so
 * building this file needs no unicorn headers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>          /* the GIL and the direct zPCI call; first, as Python.h asks */

#include <dlfcn.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "decode.h"
#include "trap_api.h"

/* Defined by cffi from trap_cdef.h (extern "Python+C"). */
int trap_py_other(void);
void trap_py_block(uint64_t addr, uint32_t size);
int trap_py_poll(void);

/* The slice of unicorn.h 2.1 this file relies on (stable ABI values). */
enum {
    UCH_INTR = 1 << 0,
    UCH_CODE = 1 << 2,
    UCH_BLOCK = 1 << 3,
    UCH_MEM_UNMAPPED = (1 << 4) | (1 << 5) | (1 << 6),
};
enum { REG_R0 = 1, REG_PC = 65, REG_PSWM = 66, REG_CR0 = 100 };
enum { EXCP_PGM = 3 };
enum { PROT_READ = 1, PROT_WRITE = 2, PROT_EXEC = 4 };
/* uc_ctl(UC_CTL_WRITE(UC_CTL_TB_REMOVE_CACHE, 2), begin, end) */
#define CTL_TB_REMOVE_CACHE (9 | (2 << 26) | (1u << 30))
/* uc_ctl(UC_CTL_WRITE(UC_CTL_TLB_FLUSH, 0)) */
#define CTL_TLB_FLUSH (11 | (1u << 30))

#define PSW_MASK_CC 0x0000300000000000ULL
#define PSW_MASK_IO (1ULL << 57)
#define PSW_MASK_EXT (1ULL << 56)
#define PSW_MASK_WAIT (1ULL << 49)
#define PSW_MASK_PSTATE (1ULL << 48)
#define PSW_MASK_64 (1ULL << 32)
#define PSW_MASK_32 (1ULL << 31)
#define CR0_CKC_SC (1ULL << 11)          /* CR0 bit 52: clock-comparator subclass */

/* Offsets in unicorn 2.1's saved CPU state (uc_context data: QEMU's
 * CPUS390XState): the prefix (psa), the program-interruption code and
 * length of the exception being raised.  Measured by causing known
 * exceptions; tests/test_linux_cpu.py checks them on every run. */
enum { CTX_DATA = 40, CTX_PSA = 840, CTX_PGM_CODE = 848, CTX_PGM_ILEN = 852 };

typedef int (*uc_reg_read_fn)(void *, int, void *);
typedef int (*uc_reg_write_fn)(void *, int, const void *);
typedef int (*uc_reg_batch_fn)(void *, int const *, void **, int);
typedef int (*uc_mem_read_fn)(void *, uint64_t, void *, uint64_t);
typedef int (*uc_mem_write_fn)(void *, uint64_t, const void *, uint64_t);
typedef int (*uc_emu_start_fn)(void *, uint64_t, uint64_t, uint64_t, size_t);
typedef int (*uc_emu_stop_fn)(void *);
typedef int (*uc_hook_add_fn)(void *, size_t *, int, void *, void *, uint64_t, uint64_t, ...);
typedef int (*uc_vmem_read_fn)(void *, uint64_t, int, void *, size_t);
typedef int (*uc_vmem_write_fn)(void *, uint64_t, int, const void *, size_t);
typedef int (*uc_ctl_fn)(void *, int, ...);
typedef int (*uc_context_alloc_fn)(void *, void **);
typedef int (*uc_context_save_fn)(void *, void *);
typedef size_t (*uc_context_size_fn)(void *);

static struct {
    uc_reg_read_fn reg_read;
    uc_reg_write_fn reg_write;
    uc_reg_batch_fn reg_read_batch;
    uc_mem_read_fn mem_read;
    uc_mem_write_fn mem_write;
    uc_emu_start_fn emu_start;
    uc_emu_stop_fn emu_stop;
    uc_hook_add_fn hook_add;
    uc_vmem_read_fn vmem_read;
    uc_vmem_write_fn vmem_write;
    uc_ctl_fn ctl;
    uc_context_alloc_fn context_alloc;
    uc_context_save_fn context_save;
    uc_context_size_fn context_size;
    bool bound;
} U;

static char last_error[256];

const char *trap_last_error(void)
{
    return last_error;
}

int trap_bind(const char *libpath)
{
    if (U.bound)
        return 0;
    /* RTLD_NOLOAD: the very copy the binding uses, or nothing; a second copy
     * would have its own engines and crash on the binding's handles. */
    void *h = dlopen(libpath, RTLD_NOW | RTLD_NOLOAD);
    if (!h) {
        snprintf(last_error, sizeof last_error, "%s is not loaded: %s", libpath, dlerror());
        return -1;
    }
    struct { const char *name; void **slot; } syms[] = {
        { "uc_reg_read", (void **)&U.reg_read },
        { "uc_reg_write", (void **)&U.reg_write },
        { "uc_reg_read_batch", (void **)&U.reg_read_batch },
        { "uc_mem_read", (void **)&U.mem_read },
        { "uc_mem_write", (void **)&U.mem_write },
        { "uc_emu_start", (void **)&U.emu_start },
        { "uc_emu_stop", (void **)&U.emu_stop },
        { "uc_hook_add", (void **)&U.hook_add },
        { "uc_vmem_read", (void **)&U.vmem_read },
        { "uc_vmem_write", (void **)&U.vmem_write },
        { "uc_ctl", (void **)&U.ctl },
        { "uc_context_alloc", (void **)&U.context_alloc },
        { "uc_context_save", (void **)&U.context_save },
        { "uc_context_size", (void **)&U.context_size },
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        void *p = dlsym(h, syms[i].name);
        if (!p) {
            snprintf(last_error, sizeof last_error, "%s has no %s", libpath, syms[i].name);
            return -1;
        }
        *syms[i].slot = p;
    }
    U.bound = true;
    return 0;
}

/* ------------------------------------------------------------ counting */

#define BLOCK_CACHE (sizeof ((trap_state *)0)->block_cache / sizeof (trap_block_slot))

/* Guest code at addr: virtual (DAT as the CPU runs) for a supervisor-state
 * guest, absolute otherwise (DAT is never on in problem-state guests). */
static int read_code(trap_state *t, void *uc, uint64_t addr, uint8_t *buf, uint32_t n)
{
    if (t->supervisor)
        return U.vmem_read(uc, addr, PROT_EXEC, buf, n);
    return U.mem_read(uc, addr, buf, n);
}

static uint32_t insns_in(trap_state *t, void *uc, uint64_t addr, uint32_t size)
{
    uint8_t buf[4096];
    if (size == 0)
        return 0;
    if (size > sizeof buf)
        size = sizeof buf;
    if (read_code(t, uc, addr, buf, size) != 0)
        return 1;
    uint64_t stop;
    return (uint32_t)zpci_count_insns(buf, size, 0, size, NULL, &stop);
}

static void dispatch(trap_state *t, void *uc, uint64_t pc, uint32_t intno);
static void read_cpu_state(trap_state *t, void *uc);
static bool event_due(trap_state *t, void *uc);
static bool scan_block(trap_state *t, void *uc, uint64_t addr, uint32_t size, uint32_t *count);

static void hook_block(void *uc, uint64_t addr, uint32_t size, void *ud)
{
    trap_state *t = ud;
    /* Only a branch or a loaded PSW starts a block at an odd address, and the
     * architecture makes fetching there a specification exception.  Unicorn,
     * like QEMU 7.2, would run the bytes; the PC that Python's interruption
     * writes ends the block before any of them runs.  One test per block keeps
     * plain code at full speed, where a check per instruction would not. */
    if (addr & 1) {
        t->cur_block_size = 0;          /* the previous block ran to its end */
        dispatch(t, uc, addr, TRAP_INTNO_ODD_FETCH);
        return;
    }
    if (t->supervisor && (t->insns >= t->ckc_at || t->pending_ext_sc || t->pending_io_isc) &&
        event_due(t, uc)) {
        /* an interruption before the block: Python swaps the PSW, whose
         * new address ends the block before any of it runs */
        t->cur_block_size = 0;
        dispatch(t, uc, addr, TRAP_INTNO_EVENT);
        return;
    }
    if (!t->counting)
        return;
    trap_block_slot *slot = &t->block_cache[(addr >> 1) & (BLOCK_CACHE - 1)];
    uint32_t n;
    if (slot->addr == addr && slot->size == size && size) {
        n = slot->insns;
    } else {
        uint32_t scanned = UINT32_MAX;
        if (t->supervisor && scan_block(t, uc, addr, size, &scanned)) {
            /* new hooks: the block runs again, translated with them */
            t->cur_block_size = 0;
            return;
        }
        n = scanned != UINT32_MAX ? scanned : insns_in(t, uc, addr, size);
        slot->addr = addr;
        slot->size = size;
        slot->insns = n;
    }
    t->cur_block = addr;
    t->cur_block_size = size;
    t->cur_block_insns = n;
    t->insns += n;
    t->blocks++;
    if (t->tracing)
        trap_py_block(addr, size);
    if (t->insns >= t->insn_limit && t->stop == TRAP_STOP_NONE) {
        t->stop = TRAP_STOP_LIMIT;
        U.emu_stop(uc);
    }
    /* A guest that never traps would never let Python see a Ctrl-C. */
    /* a mask, not a modulo: a 64-bit division per block costs more than the
     * rest of this hook */
    if (t->poll_interval && (t->blocks & (t->poll_interval - 1)) == 0 &&
        trap_py_poll() != 0 && t->stop == TRAP_STOP_NONE) {
        t->stop = TRAP_STOP_PYTHON;
        U.emu_stop(uc);
    }
}

/* The block hook counted the whole block; a trap inside it means the rest of
 * the block did not run. */
static void uncount_rest_of_block(trap_state *t)
{
    if (t->pc < t->cur_block || t->pc >= t->cur_block + t->cur_block_size)
        return;
    uint32_t before = insns_in(t, t->uc, t->cur_block, (uint32_t)(t->pc - t->cur_block));
    t->insns -= t->cur_block_insns;
    t->insns += before;
    t->cur_block_size = 0;   /* counted once */
}

/* ------------------------------------------------------------ the zPCI call */

/* All of this runs with the GIL held: only trap_run sets t->py_zpci, and it
 * holds the GIL until it has cleared it again. */

/* Marks the run TRAP_STOP_ERROR with `what` (plus the exception `exc`, if
 * any) in t->error_text, on one line; the caller then returns 1, which stops
 * the run.  Calls Python only when exc is given; clears what that raises. */
static void set_error_text(trap_state *t, const char *what, PyObject *exc)
{
    const char *detail = NULL;
    PyObject *str = NULL;
    if (exc) {
        str = PyObject_Str(exc);
        if (str)
            detail = PyUnicode_AsUTF8(str);
        if (!detail)
            PyErr_Clear();
    }
    if (exc)
        snprintf(t->error_text, sizeof t->error_text, "%s: %s%s%s", what,
                 Py_TYPE(exc)->tp_name, detail && *detail ? ": " : "", detail ? detail : "");
    else
        snprintf(t->error_text, sizeof t->error_text, "%s", what);
    Py_XDECREF(str);
    for (char *c = t->error_text; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    if (t->stop == TRAP_STOP_NONE || t->stop == TRAP_STOP_PYTHON)
        t->stop = TRAP_STOP_ERROR;
}

/* The zPCI callable raised (the exception is set): hands the exception to
 * the run's error callable, so Python reports it as it reports any other.
 * Returns with no exception set, whatever happens. */
static void pass_exception(trap_state *t)
{
    PyObject *exc;
#if PY_VERSION_HEX >= 0x030C0000
    exc = PyErr_GetRaisedException();
#else
    PyObject *type, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (exc && tb)
        PyException_SetTraceback(exc, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
#endif
    if (!exc) {
        set_error_text(t, "the zPCI callback failed without an exception", NULL);
        return;
    }
    PyObject *efn = t->py_error;
    PyObject *r = efn ? PyObject_CallOneArg(efn, exc) : NULL;
    if (r) {
        Py_DECREF(r);
    } else {
        PyErr_Clear();
        set_error_text(t, "exception in the zPCI callback", exc);
        /* A Ctrl-C must not vanish with it: Python raises it on return. */
        if (PyErr_GivenExceptionMatches(exc, PyExc_KeyboardInterrupt))
            PyErr_SetInterrupt();
    }
    Py_DECREF(exc);
}

/* Calls the run's zPCI callable with t->site; its int result, or 1 (stop). */
static int call_zpci(trap_state *t)
{
    PyObject *fn = t->py_zpci;
    if (!fn) {
        /* trap_run was given none, or did not start this run (then maybe
         * nobody holds the GIL): no Python now. */
        set_error_text(t, "zPCI instruction with no zPCI callable (run not started by "
                          "trap_run, or given none)", NULL);
        return 1;
    }
    PyObject *site = PyLong_FromUnsignedLong(t->site);
    if (!site) {
        pass_exception(t);
        return 1;
    }
    PyObject *argv[2] = { NULL, site };
    PyObject *res = PyObject_Vectorcall(fn, argv + 1, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(site);
    if (!res) {
        pass_exception(t);
        return 1;
    }
    long v = -1;
    if (PyLong_Check(res)) {
        v = PyLong_AsLong(res);
        if (v == -1 && PyErr_Occurred()) {
            /* OverflowError already set */
        } else if (v < INT_MIN || v > INT_MAX) {
            PyErr_Format(PyExc_OverflowError, "the zPCI callback returned %ld", v);
        }
    } else {
        PyErr_Format(PyExc_TypeError, "the zPCI callback returned %.80s, not int",
                     Py_TYPE(res)->tp_name);
    }
    Py_DECREF(res);
    if (PyErr_Occurred()) {
        pass_exception(t);
        return 1;
    }
    return (int)v;
}

/* ------------------------------------------------------------ the hook */

static const int gpr_ids[16] = {
    REG_R0 + 0, REG_R0 + 1, REG_R0 + 2, REG_R0 + 3, REG_R0 + 4, REG_R0 + 5, REG_R0 + 6, REG_R0 + 7,
    REG_R0 + 8, REG_R0 + 9, REG_R0 + 10, REG_R0 + 11, REG_R0 + 12, REG_R0 + 13, REG_R0 + 14, REG_R0 + 15,
};

/* The prefix and, for a program exception, unicorn's code and length: from
 * the saved CPU state (no register id reaches them). */
static void read_cpu_state(trap_state *t, void *uc)
{
    t->pgm_code = t->pgm_ilen = 0;
    if (!t->uc_ctx || U.context_save(uc, t->uc_ctx) != 0)
        return;
    const uint8_t *d = (const uint8_t *)t->uc_ctx + CTX_DATA;
    uint64_t psa;
    uint32_t code, ilen;
    memcpy(&psa, d + CTX_PSA, sizeof psa);
    memcpy(&code, d + CTX_PGM_CODE, sizeof code);
    memcpy(&ilen, d + CTX_PGM_ILEN, sizeof ilen);
    t->prefix = psa;
    if (t->intno == EXCP_PGM) {
        t->pgm_code = (int32_t)code;
        t->pgm_ilen = (int32_t)ilen;
    }
}

/* Fills t for the instruction at pc, calls Python once and applies the result. */
static void dispatch(trap_state *t, void *uc, uint64_t pc, uint32_t intno)
{
    uint64_t before[16];
    void *ptrs[16];

    t->pc = pc;
    t->intno = intno;
    if (t->counting)
        uncount_rest_of_block(t);

    /* Up to 6 bytes; near the end of memory fewer are readable. */
    t->nbytes = 0;
    for (uint32_t n = 6; n >= 2; n -= 2) {
        if (read_code(t, uc, t->pc, t->bytes, n) == 0) {
            t->nbytes = n;
            break;
        }
    }
    /* Decoded whatever the trap, so Python takes every length from t->d. */
    if (t->nbytes) {
        zpci_decode_one(t->bytes, t->nbytes, t->pc, &t->d);
    } else {
        memset(&t->d, 0, sizeof t->d);
        t->d.addr = t->pc;
        t->d.index = ZPCI_INDEX_NONE;
    }
    /* Only a program exception on a complete instruction is a zPCI trap: a
     * hooked EPSW, an SVC or the bytes at an odd address are not, and a cut
     * instruction is none to the model. */
    if ((intno != EXCP_PGM && !(intno == TRAP_INTNO_HOOKED && t->supervisor)) ||
        (t->d.flags & ZPCI_DEC_TRUNCATED))
        t->d.index = ZPCI_INDEX_NONE;
    if (t->supervisor)
        read_cpu_state(t, uc);

    for (int i = 0; i < 16; i++)
        ptrs[i] = &t->gpr[i];
    U.reg_read_batch(uc, gpr_ids, ptrs, 16);
    memcpy(before, t->gpr, sizeof before);
    U.reg_read(uc, REG_PSWM, &t->pswm);
    t->cc = -1;
    t->set_pswm = 0;
    t->next_pc = t->pc + (t->d.index != ZPCI_INDEX_NONE ? t->d.ilen : 0);

    int rc;
    if (t->d.index != ZPCI_INDEX_NONE) {
        t->zpci_traps++;
        t->zpci_counts[t->d.index]++;
        uint32_t slot = (uint32_t)(t->pc >> 1) & (TRAP_SITES - 1);
        trap_site_slot *s = &t->site_cache[slot];
        if (s->valid && s->addr == t->pc && memcmp(s->bytes, t->bytes, t->d.ilen) == 0) {
            t->site = slot;
        } else {
            s->valid = 1;
            s->addr = t->pc;
            memcpy(s->bytes, t->bytes, t->d.ilen);
            t->site = slot | TRAP_SITE_NEW;
        }
        rc = t->fixed_zpci_result ? t->fixed_zpci_result : call_zpci(t);
        /* exactly TRAP_RESUME_CC | cc: any other non-zero result stops */
        if ((rc & ~3) == TRAP_RESUME_CC) {
            t->cc = rc & 3;
            rc = 0;
        }
    } else {
        t->other_traps++;
        rc = trap_py_other();
    }

    for (int i = 0; i < 16; i++)
        if (t->gpr[i] != before[i])
            U.reg_write(uc, REG_R0 + i, &t->gpr[i]);
    uint64_t mask = t->set_pswm ? t->new_pswm : t->pswm;
    if (t->cc >= 0)
        mask = (mask & ~PSW_MASK_CC) | ((uint64_t)(t->cc & 3) << 44);
    /* The PSW mask must be in place before the PC write ends the block. */
    if (mask != t->pswm)
        U.reg_write(uc, REG_PSWM, &mask);
    if (rc == 0 && t->counting && intno != TRAP_INTNO_ODD_FETCH && intno != TRAP_INTNO_EVENT)
        t->insns++;                     /* (nothing ran at those) */
    /* On a stop too: PC then tells a driver where to resume.  A hooked
     * instruction that stops the run is stepped over, since writing its own
     * address back would let unicorn run it (SCK would crash the process). */
    if (rc != 0 && intno == TRAP_INTNO_HOOKED && t->next_pc == t->pc && t->d.ilen)
        t->next_pc = t->pc + t->d.ilen;
    U.reg_write(uc, REG_PC, &t->next_pc);
    if (rc != 0) {
        if (t->stop == TRAP_STOP_NONE)
            t->stop = TRAP_STOP_PYTHON;
        U.emu_stop(uc);
    }
}

static void hook_intr(void *uc, uint32_t intno, void *ud)
{
    uint64_t pc;
    U.reg_read(uc, REG_PC, &pc);
    dispatch(ud, uc, pc, intno);
}

/* Unprivileged instructions whose result would show that the guest runs in
 * problem state (EPSW) or unicorn's own CPU model (STFLE) are hooked at their
 * addresses; writing PC from a code hook skips unicorn's execution. */
static bool supervisor_site(trap_state *t, void *uc, uint64_t addr);

static void hook_code_at(void *uc, uint64_t addr, uint32_t size, void *ud)
{
    (void)size;
    trap_state *t = ud;
    if (t->supervisor && !supervisor_site(t, uc, addr))
        return;
    dispatch(t, uc, addr, TRAP_INTNO_HOOKED);
}

#include "trap_super.h"

int trap_hook_at(trap_state *t, uint64_t addr)
{
    size_t h;
    int err = U.hook_add(t->uc, &h, UCH_CODE, (void *)hook_code_at, t, addr, addr);
    if (err) {
        snprintf(last_error, sizeof last_error, "uc_hook_add(CODE at %#llx) failed: %d",
                 (unsigned long long)addr, err);
        return -1;
    }
    return 0;
}

static bool hook_unmapped(void *uc, int type, uint64_t addr, int size, int64_t value, void *ud)
{
    (void)size;
    (void)value;
    trap_state *t = ud;
    t->fault_type = type;
    t->fault_addr = addr;
    U.reg_read(uc, REG_PC, &t->fault_pc);
    if (t->stop == TRAP_STOP_NONE)
        t->stop = TRAP_STOP_UNMAPPED;
    return false;
}

int trap_install(trap_state *t, uintptr_t uch, int count, int trace, uint64_t mapped_end)
{
    if (!U.bound) {
        snprintf(last_error, sizeof last_error, "trap_bind was not called");
        return -1;
    }
    void *uc = (void *)uch;
    t->uc = uc;
    t->counting = count || trace;
    t->tracing = trace;
    memset(t->block_cache, 0, sizeof t->block_cache);
    memset(t->site_cache, 0, sizeof t->site_cache);
    size_t h;
    int err = U.hook_add(uc, &h, UCH_INTR, (void *)hook_intr, t, 1, 0);
    if (err) {
        snprintf(last_error, sizeof last_error, "uc_hook_add(INTR) failed: %d", err);
        return -1;
    }
    /* Bounded to what lies above storage: unicorn keeps every store to a
     * page under a memory hook on its slow path (it never marks the page
     * dirty), and a hook over all addresses put every guest store there. */
    err = U.hook_add(uc, &h, UCH_MEM_UNMAPPED, (void *)hook_unmapped, t, mapped_end,
                     UINT64_MAX);
    if (err) {
        snprintf(last_error, sizeof last_error, "uc_hook_add(MEM_UNMAPPED) failed: %d", err);
        return -1;
    }
    /* Installed even when nothing is counted: it is what catches a block
     * that starts at an odd address. */
    err = U.hook_add(uc, &h, UCH_BLOCK, (void *)hook_block, t, 1, 0);
    if (err) {
        snprintf(last_error, sizeof last_error, "uc_hook_add(BLOCK) failed: %d", err);
        return -1;
    }
    return 0;
}

int trap_run(trap_state *t, uint64_t begin, void *zpci_fn, void *error_fn)
{
    if (!t->uc) {
        /* trap_install hooks the engine and binds unicorn; without it there is
         * nothing to run (and U.emu_start may be unset) */
        snprintf(last_error, sizeof last_error, "trap_run: trap_install was not called");
        return -1;
    }
    t->stop = TRAP_STOP_NONE;
    t->cur_block_size = 0;
    t->error_text[0] = 0;
    /* cffi released the GIL for this call.  Taking it back once for the whole
     * run makes every extern "Python" callback's PyGILState_Ensure the cheap
     * nested case instead of a GIL hand-over per trap (~50 ns each, measured),
     * and lets the hook call the zPCI callable directly; other Python threads
     * wait while the guest runs.  A machine run from inside another machine's
     * callback takes the GIL here the same way (cffi released it for this
     * call too); each trap_state has its own callables. */
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *fn = zpci_fn, *efn = error_fn;
    if ((fn && !PyCallable_Check(fn)) || (efn && !PyCallable_Check(efn))) {
        static const char msg[] = "trap_run: a callback is not callable";
        memcpy(last_error, msg, sizeof msg);
        memcpy(t->error_text, msg, sizeof msg);
        t->stop = TRAP_STOP_ERROR;
        PyGILState_Release(gil);
        return -1;
    }
    /* Our own references for the run; the previous pair comes back after it
     * (NULL, unless this engine's run is re-entered). */
    PyObject *old_fn = t->py_zpci, *old_efn = t->py_error;
    Py_XINCREF(fn);
    Py_XINCREF(efn);
    t->py_zpci = fn;
    t->py_error = efn;
    /* The end address 1 is odd, so no instruction ever starts there. */
    t->uc_err = U.emu_start(t->uc, begin, 1, 0, 0);
    t->py_zpci = old_fn;
    t->py_error = old_efn;
    Py_XDECREF(fn);
    Py_XDECREF(efn);
    PyGILState_Release(gil);
    return t->uc_err;
}

int trap_mem_read(trap_state *t, uint64_t addr, uint8_t *out, uint64_t n)
{
    return U.mem_read(t->uc, addr, out, n);
}

int trap_mem_write(trap_state *t, uint64_t addr, const uint8_t *data, uint64_t n)
{
    return U.mem_write(t->uc, addr, data, n);
}

/* ------------------------------------------------------------ GPR accessors */

/* t->gpr + r for the capsule `self` and register number `r`, or NULL with an
 * exception set. */
static uint64_t *gpr_slot(PyObject *self, PyObject *r)
{
    /* unnamed: no name comparison on every call */
    trap_state *t = PyCapsule_GetPointer(self, NULL);
    if (!t)
        return NULL;
    long i = PyLong_AsLong(r);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    if (i < 0 || i > 15) {
        PyErr_Format(PyExc_IndexError, "general register %ld does not exist", i);
        return NULL;
    }
    return &t->gpr[i];
}

static PyObject *gpr_get(PyObject *self, PyObject *r)
{
    uint64_t *slot = gpr_slot(self, r);
    return slot ? PyLong_FromUnsignedLongLong(*slot) : NULL;
}

static PyObject *gpr_set(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "set_gpr takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    uint64_t *slot = gpr_slot(self, args[0]);
    if (!slot)
        return NULL;
    /* value & (2**64 - 1), negative values included, as the Guest interface says */
    unsigned long long v = PyLong_AsUnsignedLongLongMask(args[1]);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    *slot = v;
    Py_RETURN_NONE;
}

static PyMethodDef gpr_get_def = { "gpr", gpr_get, METH_O, "gpr(r): general register r" };
static PyMethodDef gpr_set_def = { "set_gpr", (PyCFunction)(void (*)(void))gpr_set, METH_FASTCALL,
                                   "set_gpr(r, value): general register r = value mod 2**64" };

static void gpr_capsule_free(PyObject *capsule)
{
    Py_XDECREF((PyObject *)PyCapsule_GetContext(capsule));
}

int trap_gpr_accessors(trap_state *t, void *owner, void *out)
{
    /* cffi released the GIL for this call */
    PyGILState_STATE gil = PyGILState_Ensure();
    int rc = -1;
    PyObject *get = NULL, *set = NULL;
    PyObject *capsule = PyCapsule_New(t, NULL, gpr_capsule_free);
    if (capsule && PyCapsule_SetContext(capsule, owner) == 0) {
        Py_XINCREF((PyObject *)owner);
        get = PyCFunction_New(&gpr_get_def, capsule);
        set = PyCFunction_New(&gpr_set_def, capsule);
        if (get && set && PyList_Check((PyObject *)out) &&
            PyList_Append(out, get) == 0 && PyList_Append(out, set) == 0)
            rc = 0;
    }
    if (rc != 0) {
        snprintf(last_error, sizeof last_error, "trap_gpr_accessors failed");
        PyErr_Clear();
    }
    Py_XDECREF(get);
    Py_XDECREF(set);
    Py_XDECREF(capsule);
    PyGILState_Release(gil);
    return rc;
}
