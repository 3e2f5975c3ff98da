"""cffi API-mode build of the native core: the zPCI decoder and the unicorn trap path.

The cdef for each C file lives next to it (``*_api.h``), so each part owns its
declarations; ``*_api.h`` is also #included into the module, so it must be
valid C. A part may add ``*_cdef.h`` with cffi-only declarations (such as
``extern "Python"`` callbacks), which go to the cdef alone.  The zPCI table is included from ``firmware_model/zpci_insns.def``.
"""
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PARTS = ["decode", "trap"]

ffibuilder = FFI()
cdef = []
sources = []
for part in PARTS:
    api = HERE / f"{part}_api.h"
    src = HERE / f"{part}.c"
    if api.exists() and src.exists():
        cdef.append(api.read_text())
        extra = HERE / f"{part}_cdef.h"
        if extra.exists():
            cdef.append(extra.read_text())
        sources.append(str(src.relative_to(ROOT)))
ffibuilder.cdef("\n".join(cdef))
ffibuilder.set_source(
    "emulator._native",
    "\n".join(f'#include "{p}_api.h"' for p in PARTS if (HERE / f"{p}_api.h").exists()),
    sources=sources,
    include_dirs=[str(HERE), str(ROOT / "firmware_model")],
    extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-fno-strict-aliasing"],
    libraries=["dl"],
    # trap.c calls the model through the full C API (PyObject_Vectorcall),
    # which the limited API only has from 3.12 on.
    py_limited_api=False,
)

if __name__ == "__main__":
    # In-place build for development: writes emulator/_native*.so into the tree,
    # which an editable install imports directly.
    ffibuilder.compile(tmpdir=str(ROOT), verbose=False)
