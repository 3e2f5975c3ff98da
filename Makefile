# Two entry points, both safe to run again: `make report` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NATIVE_SRC := $(wildcard cbits/*.c cbits/*.h cbits/*.py) firmware_model/zpci_insns.def pyproject.toml setup.py

.PHONY: report test install guests bench clean native traces

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel cffi

$(STAMP): $(BIN)/python $(NATIVE_SRC)
	rm -f emulator/_native*.so
	$(BIN)/pip install -q -e '.[test]'
	# an editable install writes no bytecode, and with PYTHONDONTWRITEBYTECODE
	# set every run of the command would compile the tool again
	$(BIN)/python -m compileall -q emulator firmware_model >/dev/null
	touch $(STAMP)

install: $(STAMP)

report: $(STAMP)
	$(BIN)/zpci-emu report --out report

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Rebuild the bundled guest ELFs (needs Debian's gcc-s390x-linux-gnu).
guests:
	$(MAKE) -C traces/guests

# Re-record the bundled traces from the guest ELFs (fails unless replay --check reproduces them).
traces: $(STAMP)
	$(BIN)/python traces/build_traces.py

bench: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info emulator/_native*.so report

# Rebuild only the native extension in place (development; the editable
# install picks it up).
native: $(BIN)/python
	rm -f emulator/_native.abi3.so
	$(BIN)/python cbits/build_native.py
