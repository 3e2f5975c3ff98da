"""Shared test set-up: hypothesis profiles and tool-availability markers."""
import os
import shutil

import pytest
from hypothesis import HealthCheck, settings

# ci: derandomised and bounded so the whole suite stays within the CI budget.
settings.register_profile(
    "ci", derandomize=True, max_examples=200, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# thorough: for long local runs (pytest --hypothesis-profile=thorough).
settings.register_profile(
    "thorough", max_examples=5000, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

QEMU = shutil.which("qemu-system-s390x")
CROSS_GCC = shutil.which("s390x-linux-gnu-gcc")
OBJDUMP = shutil.which("s390x-linux-gnu-objdump")

needs_qemu = pytest.mark.skipif(
    QEMU is None, reason="qemu-system-s390x not installed (apt-get install qemu-system-misc)")
needs_cross = pytest.mark.skipif(
    CROSS_GCC is None, reason="s390x-linux-gnu-gcc not installed (apt-get install gcc-s390x-linux-gnu)")
needs_objdump = pytest.mark.skipif(
    OBJDUMP is None, reason="s390x-linux-gnu-objdump not installed (apt-get install binutils-s390x-linux-gnu)")
