"""The process's heap policy on the host: keep freed memory for reuse, or give it back.

XLA:CPU allocates an executable's temporaries as one block, afresh at every call and on one of
its worker threads: ~170 MiB for the tiny model's train step, ~1.9 GiB at ~100M parameters
(`bench/host_memory.py`). glibc serves a block that large with its own `mmap` and unmaps it on
`free`, so every call faults all of its pages in again (the kernel maps and zeroes each 4 KiB
page): 0.06-0.10 s of system time per tiny train step, 2 s at ~100M, on 2 cores
(docs/benchmarks.md, "Session 8"). With the
"retain" policy every thread allocates from glibc's one main heap (`M_ARENA_MAX=1`), large
blocks come from that heap too (`M_MMAP_MAX=0`) and its free top is never trimmed
(`M_TRIM_THRESHOLD=-1`; any finite threshold, at most 2 GiB through `mallopt`, is below the
~100M float32 step's temporaries), so the next call reuses the block and touches no new page. The price is
a resident size that stays at its peak, as with any caching allocator.

It must be set before JAX starts its threads (before the first computation): a thread keeps the
arena it got at its first allocation. `restrl_jax.setup_runtime.initialize` applies
`config.host_memory` first thing. Not glibc (macOS, musl): nothing to set.
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import sys

POLICIES = ("auto", "retain", "release")

# mallopt(3) parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_RETAIN = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))  # -1: never trim
_ACCELERATOR_PLUGINS = ("libtpu", "jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm7_plugin")


def _glibc() -> ctypes.CDLL | None:
  if not sys.platform.startswith("linux"):
    return None
  libc = ctypes.CDLL(None)
  return libc if hasattr(libc, "gnu_get_libc_version") else None


def resolve(policy: str) -> str:
  """"retain" or "release" for a configured policy; "auto" retains when JAX will run on the
  CPU (JAX_PLATFORMS is "cpu", or no TPU/GPU plugin is installed): host-side work on an
  accelerator machine keeps glibc's defaults."""
  if policy not in POLICIES:
    raise ValueError(f"host memory policy must be one of {POLICIES}, got {policy!r}")
  if policy != "auto":
    return policy
  platforms = os.environ.get("JAX_PLATFORMS", "")
  if platforms:
    return "retain" if platforms.split(",")[0].strip() == "cpu" else "release"
  installed = any(importlib.util.find_spec(m) is not None for m in _ACCELERATOR_PLUGINS)
  return "release" if installed else "retain"


def apply(policy: str = "auto") -> str:
  """Set the heap policy (see the module docstring); returns the one in force: "retain",
  "release" (glibc's defaults, left as they are) or "unsupported" (not glibc)."""
  resolved = resolve(policy)
  if resolved == "release":
    return resolved
  libc = _glibc()
  if libc is None:
    return "unsupported"
  for param, value in _RETAIN:
    if libc.mallopt(param, value) != 1:
      raise OSError(f"mallopt({param}, {value}) failed: cannot set the 'retain' heap policy")
  return resolved
