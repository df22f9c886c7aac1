"""The process's heap policy on the host: give freed memory back (glibc's default) or keep it.

XLA:CPU allocates an executable's temporaries as one block, afresh at every call and on one of
its worker threads: ~170 MiB for the tiny model's float32 train step, ~1.9 GiB (bf16) to
~2.7 GiB (float32) at ~100M parameters. glibc serves a block that large with its own `mmap`
and unmaps it on `free`, so every call faults all of its pages in again (the kernel maps and
zeroes each page): 0.06-0.10 s of system time per tiny train step, 2-4 s at ~100M, on 2 cores
(`bench/host_memory.py`, docs/benchmarks.md, "What limits the CPU figures"). The "retain" policy makes every
thread allocate from glibc's one main heap (`M_ARENA_MAX=1`: a thread's own arena maps blocks
over 64 MiB itself whatever else is set), takes large blocks from that heap too
(`M_MMAP_MAX=0`) and never trims it (`M_TRIM_THRESHOLD=-1`), so the next call reuses the block.
It took 5-9% off a ~100M train step there (each step timed alone in its process, "Session
9"), but made the quick demo (sampling, sandbox, search threads) ~30% slower, so it is opt-in:
`--config.host_memory=retain` for training-heavy CPU runs. The resident size then stays near
its peak, and grows now and then: small allocations land in a freed block, the next call's no
longer fits there and the heap grows by its size, a few times over the first tens of steps
(whether it levels off over long runs is not measured).

It must be set before JAX starts its threads (a thread keeps the arena it got at its first
allocation): `restrl_jax.setup_runtime.initialize` applies `config.host_memory` first thing.
Not glibc (macOS, musl): nothing to set.
"""
from __future__ import annotations

import ctypes
import logging
import sys

POLICIES = ("release", "retain")

# mallopt(3) parameters (glibc's malloc.h), in the order they are set
_RETAIN = (("M_ARENA_MAX", -8, 1), ("M_MMAP_MAX", -4, 0), ("M_TRIM_THRESHOLD", -1, -1))


def _glibc() -> ctypes.CDLL | None:
  if not sys.platform.startswith("linux"):
    return None
  libc = ctypes.CDLL(None)
  return libc if hasattr(libc, "gnu_get_libc_version") else None


def _jax_started() -> bool:
  if "jax" not in sys.modules:
    return False
  from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel
  return xla_bridge.backends_are_initialized()


def apply(policy: str = "release") -> str:
  """Set the heap policy (see the module docstring). Returns the one in force: "release"
  (glibc's defaults, left as they are; an earlier "retain" is not undone), "retain",
  "unsupported" (not glibc) or "late" (JAX's threads already run: nothing set, a warning)."""
  if policy not in POLICIES:
    raise ValueError(f"host memory policy must be one of {POLICIES}, got {policy!r}")
  if policy == "release":
    return policy
  libc = _glibc()
  if libc is None:
    return "unsupported"
  if _jax_started():
    logging.warning("host_memory.apply(%r) after JAX started its threads: not set", policy)
    return "late"
  for name, param, value in _RETAIN:
    if libc.mallopt(param, value) != 1:
      raise OSError(f"mallopt({name}, {value}) failed: the 'retain' heap policy is not set")
  return policy
