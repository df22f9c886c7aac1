"""Lossless JSON encoding of the Python values that test cases hold.

Plain JSON turns tuples into lists, cannot hold sets, non-string dict keys, NaN/inf or bytes, yet
MBPP+ reference outputs are such values and are compared exactly. `encode` tags them
(`{"__tuple__": [...]}` etc.); `decode` restores them. Lists, strings, numbers, bools and None
stay plain JSON. This module has no package imports so a bare child process can load it.
"""
from __future__ import annotations

import json
import math
from typing import Any

_TAGS = ("__tuple__", "__set__", "__frozenset__", "__dict__", "__float__", "__bytes__",
         "__complex__")


def encode(value: Any) -> Any:
  """A JSON-serialisable form of `value`; `TypeError` for unsupported types."""
  if value is None or isinstance(value, (bool, int, str)):
    return value
  if isinstance(value, float):
    return value if math.isfinite(value) else {"__float__": repr(value)}
  if isinstance(value, list):
    return [encode(v) for v in value]
  if isinstance(value, tuple):
    return {"__tuple__": [encode(v) for v in value]}
  if isinstance(value, (set, frozenset)):   # sorted: the encoding must not depend on hash seeds
    tag = "__frozenset__" if isinstance(value, frozenset) else "__set__"
    return {tag: sorted((encode(v) for v in value), key=_sort_key)}
  if isinstance(value, dict):
    return {"__dict__": [[encode(k), encode(v)] for k, v in value.items()]}
  if isinstance(value, bytes):
    return {"__bytes__": value.hex()}
  if isinstance(value, complex):
    return {"__complex__": [encode(value.real), encode(value.imag)]}
  raise TypeError(f"cannot encode a value of type {type(value).__name__}")


def _sort_key(encoded: Any) -> str:
  return json.dumps(encoded, sort_keys=True)


def decode(data: Any) -> Any:
  """Inverse of `encode`."""
  if isinstance(data, list):
    return [decode(v) for v in data]
  if not isinstance(data, dict):
    return data
  if len(data) != 1 or next(iter(data)) not in _TAGS:
    raise ValueError(f"not an encoded value: {str(data)[:80]}")
  tag, payload = next(iter(data.items()))
  if tag == "__float__":
    return float(payload)
  if tag == "__bytes__":
    return bytes.fromhex(payload)
  if tag == "__complex__":
    return complex(decode(payload[0]), decode(payload[1]))
  items = [decode(v) for v in payload]
  if tag == "__dict__":
    return {k: v for k, v in items}
  return {"__tuple__": tuple, "__set__": set, "__frozenset__": frozenset}[tag](items)
