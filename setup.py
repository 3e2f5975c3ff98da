# cffi's API-mode build hooks into setuptools through cffi_modules; everything
# else lives in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["cbits/build_native.py:ffibuilder"])
