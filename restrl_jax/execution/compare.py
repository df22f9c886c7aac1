"""Output comparison, done on the trusted side on plain data.

`stdio_match` follows the order of APPS' tolerant checks (testing_util.run_test): stripped text,
line lists with and without blank lines and per-line whitespace, all-float lines within
`np.allclose` tolerances, line-wise token sets, and token sets rounded to 3 decimals.
`call_match` follows APPS for call-based problems ("apps": tuples are lists, a singleton expected
list may wrap the answer) or EvalPlus ("exact": equality, floats within `atol`, 1e-6 when atol=0).
"""
from __future__ import annotations

import math
from typing import Any

MATCH_MODES = ("apps", "exact")


def _lines(text: str) -> list[str]:
  return text.splitlines()


def _floats(items: list[str]) -> list[float] | None:
  try:
    return [float(x) for x in items]
  except (TypeError, ValueError):
    return None


def _allclose(a: list[float], b: list[float]) -> bool:
  """numpy.allclose's default rule (rtol=1e-5, atol=1e-8; NaN never equal)."""
  return len(a) == len(b) and all(abs(x - y) <= 1e-8 + 1e-5 * abs(y) for x, y in zip(a, b))


def _token_sets(lines: list[str]) -> set[frozenset[str]]:
  return {frozenset(line.split()) for line in lines if line.split()}


def _rounded_sets(lines: list[str]) -> set[frozenset[float]] | None:
  try:
    return {frozenset(round(float(t), 3) for t in line.split()) for line in lines if line.split()}
  except ValueError:
    return None


def stdio_match(stdout: str, expected: Any, mode: str = "apps") -> bool:
  """APPS' tolerant comparison of a program's printed output with the expected output; mode
  "exact": the same whitespace-separated tokens in the same order."""
  want = "\n".join(expected) if isinstance(expected, list) else str(expected)
  if mode == "exact":
    return stdout.split() == want.split()
  got = _lines(stdout)
  if "\n".join(got).strip() == want.strip():
    return True
  if "\n".join(line.strip() for line in got).strip() == want.strip():
    return True
  want_lines = [line.strip() for line in want.split("\n") if line]
  got_nonempty = [line for line in got if line]
  if got == want_lines or got_nonempty == want_lines:
    return True
  got_f, want_f = _floats(got_nonempty), _floats(want_lines)
  if got_f is not None and want_f is not None and _allclose(got_f, want_f):
    return True
  if _token_sets(got_nonempty) == _token_sets(want_lines):
    return True
  got_r, want_r = _rounded_sets(got_nonempty), _rounded_sets(want_lines)
  return got_r is not None and got_r == want_r


def _listify(value: Any) -> Any:
  return list(value) if isinstance(value, tuple) else value


def _apps_call_match(output: Any, expected: Any) -> bool:
  output = _listify(output)
  if output == expected:
    return True
  if isinstance(expected, list) and expected and output == expected[0]:
    return True
  if isinstance(output, list) and output and isinstance(output[0], tuple):
    return isinstance(expected, list) and bool(expected) and (
        [list(x) for x in output] == expected[0])
  return False


def _is_floats(value: Any) -> bool:
  if isinstance(value, float):
    return True
  return isinstance(value, (list, tuple)) and bool(value) and all(
      isinstance(v, float) for v in value)


def _close(output: Any, expected: Any, atol: float) -> bool:
  if isinstance(expected, float):
    return isinstance(output, (int, float)) and not isinstance(output, bool) and math.isclose(
        output, expected, rel_tol=1e-7, abs_tol=atol)
  if not isinstance(output, (list, tuple)) or len(output) != len(expected):
    return False
  return all(_close(o, e, atol) for o, e in zip(output, expected))


def call_match(output: Any, expected: Any, mode: str = "apps", atol: float = 0.0) -> bool:
  if mode not in MATCH_MODES:
    raise ValueError(f"match mode must be one of {MATCH_MODES}, got {mode!r}")
  if mode == "apps":
    if _apps_call_match(output, expected):
      return True
  elif output == expected:
    return True
  if _is_floats(expected):
    return _close(output, expected, atol if atol > 0 else 1e-6)
  return False
