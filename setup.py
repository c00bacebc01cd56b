"""The one C extension: the heuristic rules' repetition scans (operators/rulescan.py). Everything else is in pyproject.toml.

Built against Python's stable ABI, so one build serves every Python from 3.11; installing from source needs a C
compiler (gcc or clang).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "thresher.operators.rulescan_kernels",
            sources=["operators/rulescan_kernels.c"],
            define_macros=[("Py_LIMITED_API", "0x030B0000")],
            py_limited_api=True,
            extra_compile_args=["-O2"],
        )
    ],
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
