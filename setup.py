"""thresher's two small C extensions (everything else is in pyproject.toml): the heuristic rules' repetition scans
(operators/rulescan.py) and the MinHash shingles' and signatures' inner loops (operators/dedup.py).

Built against Python's stable ABI, so one build serves every Python from 3.11; installing from source needs a C
compiler (gcc or clang).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            f"thresher.operators.{name}",
            sources=[f"operators/{name}.c"],
            define_macros=[("Py_LIMITED_API", "0x030B0000")],
            py_limited_api=True,
            extra_compile_args=["-O3"],
        )
        for name in ("rulescan_kernels", "minhash_kernel")
    ],
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
