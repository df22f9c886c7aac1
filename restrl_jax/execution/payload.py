"""The code that runs inside a sandbox, shipped as one `python -I -c` bootstrap.

The sandbox cannot see the repository, so the zygote's modules travel as source text: the
bootstrap installs them as `restrl_jax.execution.<name>` modules (under empty package stubs, so
no package `__init__` runs) and makes one call, `zygote.main()` (or the start-up probe,
`sandbox_proc.probe`). These modules import only the stdlib and each other.
"""
from __future__ import annotations

import functools
import pathlib

MODULES = ("plain", "wire", "wrapping", "reroot", "namespaces", "sandbox_proc", "program_server", "judge",
           "inproc", "zygote")

_BOOT = '''import sys, types
def _install(sources):
  for pkg in ("restrl_jax", "restrl_jax.execution"):
    stub = types.ModuleType(pkg)
    stub.__path__ = []
    sys.modules[pkg] = stub
  sys.modules["restrl_jax"].execution = sys.modules["restrl_jax.execution"]
  for name, source in sources:
    full = "restrl_jax.execution." + name
    module = types.ModuleType(full)
    module.__file__ = "<sandbox " + name + ">"
    sys.modules[full] = module
    setattr(sys.modules["restrl_jax.execution"], name, module)
    exec(compile(source, module.__file__, "exec"), module.__dict__)
_install(SOURCES)
del _install
import restrl_jax.execution.MODULE as _entry
_entry.CALL
'''


@functools.lru_cache(maxsize=4)
def bootstrap_source(entry: str = "zygote.main()") -> str:
  """The `python -c` source that installs `MODULES` and calls `entry` ("module.function(...)")."""
  module, _, call = entry.partition(".")
  if module not in MODULES or not call:
    raise ValueError(f"entry must call a function of one of {MODULES}, got {entry!r}")
  here = pathlib.Path(__file__).resolve().parent
  sources = [(name, (here / f"{name}.py").read_text(encoding="utf-8")) for name in MODULES]
  boot = _BOOT.replace("MODULE", module, 1).replace("CALL", call, 1)
  return boot.replace("SOURCES", repr(sources), 1)
