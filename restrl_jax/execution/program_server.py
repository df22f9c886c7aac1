"""Roles that run the candidate program itself (inside the sandbox, unprivileged).

`stdio_role` runs the program once as `__main__` with stdin/stdout already redirected to files
(APPS-wrapped in `code()` when it only compiles that way, see `wrapping`).
`server_role` runs the program's top level, reports a summary of its globals, then answers calls
`{"call": name, "args": ..., "kwargs": ...}` with `{"ok": plain value}` or `{"exc": text}`. Only
plain data crosses (see `plain`), so whatever the program does to its own interpreter, all the
judging side ever sees is the data it returned.

Standalone apart from the payload modules `plain`, `wire` and `wrapping`.
"""
import atexit
import inspect
import sys
import types

from restrl_jax.execution import plain, wire, wrapping

# APPS' customary import header (sys, itertools, collections, math, numpy, heapq, ...).
HEADER = """\
import sys
import time
import itertools
from itertools import accumulate, product, permutations, combinations
import collections
from collections import Counter, OrderedDict, deque, defaultdict, ChainMap
from functools import lru_cache
import math
from math import sqrt, sin, cos, tan, ceil, fabs, floor, gcd, exp, log, log2
import fractions
from typing import List, Tuple
import random
import heapq
from heapq import *
try:
  import numpy as np
except ImportError:
  pass
"""


def run_program(source: str, header: bool, name: str = "__main__", stdio: bool = False) -> dict:
  """Run `source` as module `name` (after APPS' header if `header`). A stdin program (`stdio`) also
  gets APPS' `stdin`/`stdout` globals and, when it only compiles that way, its `code()` wrapper."""
  namespace = {"__name__": name, "__builtins__": __builtins__}
  if header:
    exec(compile(HEADER, "<header>", "exec"), namespace)  # pylint: disable=exec-used
  if stdio:
    namespace.update(stdin=sys.stdin, stdout=sys.stdout)
  code = wrapping.compile_program(source, "<program>", allow_wrap=stdio)
  exec(code, namespace)  # pylint: disable=exec-used
  return namespace


def _shut_down_like_python() -> None:
  """What the interpreter does at exit before flushing stdout: join the program's non-daemon
  threads (solutions that run `main` in a big-stack thread), then run its `atexit` handlers
  (solutions that buffer their output and write it at exit)."""
  threading = sys.modules.get("threading")
  if threading is not None:
    threading._shutdown()  # pylint: disable=protected-access
  atexit._run_exitfuncs()  # pylint: disable=protected-access


def stdio_role(source: str, header: bool) -> None:
  atexit._clear()  # pylint: disable=protected-access  # the zygote's handlers are not the program's
  code = 0
  try:
    run_program(source, header, stdio=True)
  except SystemExit as exc:
    code = 0 if exc.code in (None, 0) else 1
  except BaseException:  # pylint: disable=broad-except
    code = 1
  try:
    _shut_down_like_python()
  except BaseException:  # pylint: disable=broad-except
    code = 1
  for stream in dict.fromkeys((sys.stdout, sys.__stdout__)):  # the program may have swapped them
    try:
      if not getattr(stream, "closed", False):  # closing it (`stdout.close()`) already flushed it
        stream.flush()
    except BaseException:  # pylint: disable=broad-except
      code = 1
  raise SystemExit(code)


PROGRAM_MODULE = "__program__"


def _describe(value):
  if isinstance(value, types.ModuleType):
    return ["module", getattr(value, "__name__", "")]
  if inspect.isclass(value):
    return ["class"]
  module = getattr(value, "__module__", None)
  qualname = getattr(value, "__qualname__", None)
  if callable(value):
    own = ("__main__", "builtins", PROGRAM_MODULE)
    if isinstance(module, str) and module not in own and isinstance(qualname, str):
      return ["ref", module, qualname]
    return ["func"]
  try:
    return ["value", plain.encode(value)]
  except (plain.NotPlain, RecursionError):
    return ["opaque"]


def summarise(namespace: dict) -> dict:
  """name -> how the judging side may stand in for it (see `judge.build_namespace`)."""
  return {k: _describe(v) for k, v in list(namespace.items()) if not k.startswith("__")}


class _Resolver:
  """APPS rule: `Solution().name` when the program defines class Solution with it, else `name`."""

  def __init__(self, namespace: dict):
    self.namespace = namespace
    self.instance = None

  def __call__(self, name: str):
    solution = self.namespace.get("Solution")
    if inspect.isclass(solution) and hasattr(solution, name):
      if self.instance is None:
        self.instance = solution()
      return getattr(self.instance, name)
    if name not in self.namespace:
      raise NameError(f"the program defines no {name!r}")
    return self.namespace[name]


def _answer(resolve, request) -> dict:
  try:
    fn = resolve(request["call"])
    value = fn(*plain.decode(request.get("args", [])), **plain.decode(request.get("kwargs", {
        "d": []})))
    return {"ok": plain.encode(value, opaque=request.get("opaque") is True)}
  except SystemExit:
    return {"exc": "SystemExit"}
  except BaseException as exc:  # pylint: disable=broad-except
    return {"exc": f"{type(exc).__name__}: {str(exc)[:300]}"}


def server_role(source: str, header: bool, fd_in: int, fd_out: int) -> None:
  try:
    namespace = run_program(source, header, name=PROGRAM_MODULE)
  except BaseException as exc:  # pylint: disable=broad-except
    wire.send(fd_out, {"ready": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
    return
  wire.send(fd_out, {"ready": True, "globals": summarise(namespace)})
  resolve = _Resolver(namespace)
  while True:
    try:
      request = wire.recv(fd_in)
    except wire.WireError:
      return
    wire.send(fd_out, _answer(resolve, request))
