"""Build hook: the detectors' per-sample code compiled to C with mypyc, when it can be.

Everything else about the package is in pyproject.toml. The compiled modules are the same
source as the pure-Python ones (type-checked `mypy --strict` code, scores bit-identical on NAB);
compiled, the default detector set runs ~2.3x as fast (docs/benchmarks.md § Detection). Without
a C compiler and Python's headers, or with INFRAWATCH_PURE=1 in the environment, the package
installs as pure Python and works the same, only slower (`infrawatch check` says which).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

# The modules that run for every sample. base.py stays interpreted: mypyc cannot compile its
# runtime-checkable Protocols.
COMPILED = [
    "infrawatch/detect/art.py",
    "infrawatch/detect/feed.py",
    "infrawatch/detect/match.py",
    "infrawatch/detect/novelty.py",
    "infrawatch/detect/seasonal.py",
    "infrawatch/detect/threshold.py",
    "infrawatch/detect/zscore.py",
]


def _can_compile() -> str | None:
    """Why the modules can't be compiled here, or None if they can."""
    if os.environ.get("INFRAWATCH_PURE"):
        return "INFRAWATCH_PURE is set"
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler})"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "no Python.h (install the python3-dev package)"
    return None


class _OptionalBuildExt(build_ext):
    """A failed compile leaves a pure-Python install, not a failed one."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # the compiler's errors come in several classes
            for path in self.get_outputs():
                Path(path).unlink(missing_ok=True)  # all or nothing: no half-compiled set
            print(f"infrawatch: detectors not compiled ({exc}); pure Python", file=sys.stderr)


def _ext_modules() -> list[Any]:
    why_not = _can_compile()
    if why_not is not None:
        print(f"infrawatch: detectors not compiled ({why_not}); pure Python", file=sys.stderr)
        return []
    from mypyc.build import mypycify

    # Not the project's mypy config: its pydantic plugin and the third-party packages are not in
    # the build environment (their types only reach the compiled code as Any, which is fine:
    # the hot paths use this package's own classes).
    args = ["--config-file=", "--ignore-missing-imports", "--follow-imports=silent"]
    return mypycify([*args, *COMPILED], opt_level="3")


setup(ext_modules=_ext_modules(), cmdclass={"build_ext": _OptionalBuildExt})
