"""The optional C extension (``luna_monitoring/core/_speedups.c``); the rest of the build is
in pyproject.toml. Where no C compiler is found the install goes on without it, and the
pure-Python code runs."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "luna_monitoring.core._speedups",
            ["luna_monitoring/core/_speedups.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
