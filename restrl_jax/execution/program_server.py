"""Roles that run the candidate program itself (inside the sandbox, unprivileged).

`stdio_role` runs the program once as `__main__` with stdin/stdout already redirected to files.
`server_role` runs the program's top level, reports a summary of its globals, then answers calls
`{"call": name, "args": ..., "kwargs": ...}` with `{"ok": plain value}` or `{"exc": text}`. Only
plain data crosses (see `plain`), so whatever the program does to its own interpreter, all the
judging side ever sees is the data it returned.

Standalone apart from the payload modules `plain` and `wire`.
"""
import inspect
import sys
import types

from restrl_jax.execution import plain, wire

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


def run_program(source: str, header: bool, name: str = "__main__") -> dict:
  namespace = {"__name__": name, "__builtins__": __builtins__}
  if header:
    exec(compile(HEADER, "<header>", "exec"), namespace)  # pylint: disable=exec-used
  exec(compile(source, "<program>", "exec"), namespace)  # pylint: disable=exec-used
  return namespace


def stdio_role(source: str, header: bool) -> None:
  code = 0
  try:
    run_program(source, header)
  except SystemExit as exc:
    code = 0 if exc.code in (None, 0) else 1
  except BaseException:  # pylint: disable=broad-except
    code = 1
  try:
    sys.stdout.flush()
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
    return {"ok": plain.encode(value)}
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
