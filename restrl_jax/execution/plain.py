"""Plain data: the only values that cross between a candidate program and the judging side.

`encode` accepts values built from the exact builtin types (no subclasses, no user classes), so a
value that crossed cannot carry behaviour: an object whose `__eq__` always answers True is refused
at encoding, and `decode` rebuilds fresh builtin objects on the trusted side. numpy scalars and
arrays are turned into their builtin equivalents (numpy is a trusted library). Containers are
tagged so tuples, sets, frozensets, non-string dict keys, bytes, complex and non-finite floats
survive the JSON round trip.

Standalone: stdlib only, no package imports (it is part of the sandbox payload).
"""
import json
import math

MAX_DEPTH = 64
_SCALARS = (type(None), bool, int, str)
_TAGS = ("t", "s", "fs", "d", "f", "b", "c")


class NotPlain(TypeError):
  """A value that is not plain data (user-defined class, subclass, too deep, ...)."""


def _numpy_to_builtin(value):
  module = type(value).__module__
  if module != "numpy" or not hasattr(value, "tolist"):
    raise NotPlain(f"not plain data: a value of type {type(value).__name__}")
  return value.tolist()


def _encode(value, depth):
  if depth > MAX_DEPTH:
    raise NotPlain("value nested too deeply")
  kind = type(value)
  if kind in _SCALARS:
    return value
  if kind is float:
    return value if math.isfinite(value) else {"f": repr(value)}
  if kind is list:
    return [_encode(v, depth + 1) for v in value]
  if kind is tuple:
    return {"t": [_encode(v, depth + 1) for v in value]}
  if kind is set or kind is frozenset:
    return {"s" if kind is set else "fs": [_encode(v, depth + 1) for v in value]}
  if kind is dict:
    return {"d": [[_encode(k, depth + 1), _encode(v, depth + 1)] for k, v in value.items()]}
  if kind is bytes:
    return {"b": value.hex()}
  if kind is complex:
    return {"c": [_encode(value.real, depth), _encode(value.imag, depth)]}
  return _encode(_numpy_to_builtin(value), depth + 1)


def encode(value):
  """JSON-ready form of a plain value; raises `NotPlain` for anything else."""
  return _encode(value, 0)


def dumps(value) -> str:
  return json.dumps(encode(value), allow_nan=False, separators=(",", ":"))


def decode(data):
  """Inverse of `encode`, building fresh builtin objects; `ValueError` on malformed input."""
  if isinstance(data, list):
    return [decode(v) for v in data]
  if not isinstance(data, dict):
    if type(data) not in (type(None), bool, int, float, str):
      raise ValueError(f"malformed plain value of type {type(data).__name__}")
    return data
  if len(data) != 1 or next(iter(data)) not in _TAGS:
    raise ValueError(f"malformed plain value: {str(data)[:80]}")
  tag, payload = next(iter(data.items()))
  if tag == "f":
    return float(payload)
  if tag == "b":
    return bytes.fromhex(payload)
  if tag == "c":
    return complex(decode(payload[0]), decode(payload[1]))
  items = [decode(v) for v in payload]
  if tag == "d":
    return {k: v for k, v in items}
  return {"t": tuple, "s": set, "fs": frozenset}[tag](items)
