"""Inside-the-sandbox check of one MBPP+ test case, with evalplus' comparison rules.

This module's source is embedded in each MBPP+ `TestSuite.setup_code` and exec'd in the sandboxed
process, so it imports nothing from the package (the value decoder is passed in). Rules, as in
evalplus' `unsafe_execute`: exact `==` first; for float outputs (or a task `atol`) a numeric
closeness check with `rtol=1e-7`; special oracles for tasks whose reference output is not a
stable value (`not_none`: only whether the result is None matters; `always`: any result passes;
`or_zero`: 0 is also accepted). One addition: `unordered`, for the tasks whose reference returns
a set's elements as a list/tuple, so their order depends on the hash seed of the process (evalplus
hides that by forking the checker from the process that computed the reference).
"""
import json
import math

_RTOL = 1e-7


def _is_number(x):
  return isinstance(x, (int, float))  # bools count, as in numpy


def _is_floats(x):
  if isinstance(x, float):
    return True
  return isinstance(x, (list, tuple)) and all(isinstance(i, float) for i in x)


def close(out, exp, atol):
  """Element-wise |out - exp| <= atol + rtol*|exp| over nested lists/tuples (NaN equals NaN)."""
  if isinstance(exp, (list, tuple)) or isinstance(out, (list, tuple)):
    if not isinstance(out, (list, tuple)) or not isinstance(exp, (list, tuple)):
      return False
    return len(out) == len(exp) and all(close(o, e, atol) for o, e in zip(out, exp))
  if not (_is_number(out) and _is_number(exp)):
    return False
  if math.isnan(out) or math.isnan(exp):
    return math.isnan(out) and math.isnan(exp)
  if math.isinf(out) or math.isinf(exp):
    return out == exp
  return abs(out - exp) <= atol + _RTOL * abs(exp)


def _same_items(out, exp):
  """Equal as multisets (elements need only support ==)."""
  rest = list(out)
  for e in exp:
    hit = next((i for i, o in enumerate(rest) if o == e), None)
    if hit is None:
      return False
    rest.pop(hit)
  return not rest


def matches(out, exp, atol, mode=""):
  """Whether `out` passes against the reference output `exp`."""
  if mode == "not_none":
    return exp == (out is not None)
  if mode == "always":
    return True
  if mode == "unordered" and type(out) is type(exp) and isinstance(exp, (list, tuple)):
    return _same_items(out, exp)
  try:
    exact = bool(out == exp)
  except Exception:  # pylint: disable=broad-except
    exact = False
  if mode == "or_zero":
    exact = exact or out == 0
  if atol == 0 and _is_floats(exp):
    atol = 1e-6
  return exact or (atol != 0 and close(out, exp, atol))


class Oracle:
  """Holds the encoded cases of one task; `check(fn, i)` runs case i."""

  def __init__(self, spec_json, decode):
    spec = json.loads(spec_json)
    self._inputs = spec["inputs"]
    self._expected = spec["expected"]
    self._atol = spec["atol"]
    self._mode = spec["mode"]
    self._decode = decode

  def check(self, fn, i):
    out = fn(*self._decode(self._inputs[i]))
    return matches(out, self._decode(self._expected[i]), self._atol, self._mode)
