/*
 * cdef-only part of the trap path (build_native.py gives it to cffi, never to
 * the C compiler): the Python functions cbits/trap.c calls, defined in
 * emulator/cpu/native.py with @ffi.def_extern.  "Python+C" makes them
 * visible to trap.c, which declares the same prototypes.
 *
 * trap_py_other returns 0 to resume at trap_state.next_pc, 1 to stop the
 * run.  trap_py_poll returns 1 to stop.  (zPCI instructions do not come this
 * way: trap.c calls the callable given to trap_run directly; see trap_api.h.)
 */
extern "Python+C" int trap_py_other(void);
extern "Python+C" void trap_py_block(uint64_t addr, uint32_t size);
extern "Python+C" int trap_py_poll(void);
