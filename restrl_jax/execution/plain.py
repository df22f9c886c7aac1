"""Plain data: the only values that cross between a candidate program and the judging side.

`encode` accepts values built from the exact builtin types (no subclasses, no user classes), so a
value that crossed cannot carry behaviour: an object whose `__eq__` always answers True is refused
at encoding, and `decode` rebuilds fresh objects of trusted types on the judging side. Besides the
builtins, a few stdlib value types cross the same way (`STDLIB_TYPES`: Counter, OrderedDict,
defaultdict, deque, Fraction, Decimal, range, bytearray, dict views): matched by exact type, sent
as their contents and rebuilt from the judging side's own classes, so `==` on them means what it
means in Python (`Counter(a=1) == {"a": 1}` is True, `deque([1]) == [1]` is False). A defaultdict
whose factory is not a builtin type is rebuilt with a factory that raises `OpaqueUse`. numpy
scalars and arrays become their builtin equivalents (numpy is a trusted library). Containers are
tagged so tuples, sets, frozensets, non-string dict keys, bytes, complex and non-finite floats
survive the JSON round trip.

With `opaque=True` (return values for the judge) any other value crosses as an `Opaque` marker
naming its type and its truth value: the judge can still test it with `is` / `is not` (e.g.
`re.Match` or None) and `bool` (which a program could forge by returning a bool anyway), but every
other use (`==`, `hash`, attributes, `str`) raises `OpaqueUse`, so the test errors. An object
whose `__eq__` always answers True thus still scores 0.

Standalone: stdlib only, no package imports (it is part of the sandbox payload).
"""
import collections
import decimal
import fractions
import json
import math

MAX_DEPTH = 64
_SCALARS = (type(None), bool, int, str)
_TAGS = ("t", "s", "fs", "d", "f", "b", "c", "C", "od", "dd", "dq", "fr", "dec", "r", "ba", "dk",
         "dv", "di", "o")
_FACTORIES = {t.__name__: t for t in (list, dict, set, frozenset, tuple, int, float, complex, str,
                                      bytes, bool)}
_DICT_VIEWS = {type({}.keys()): "dk", type({}.values()): "dv", type({}.items()): "di"}
STDLIB_TYPES = (collections.Counter, collections.OrderedDict, collections.defaultdict,
                collections.deque, fractions.Fraction, decimal.Decimal, range, bytearray,
                *_DICT_VIEWS)


class NotPlain(TypeError):
  """A value that is not plain data (user-defined class, subclass, too deep, ...)."""


class OpaqueUse(Exception):
  """A test used a value that could not cross (anything but an identity check)."""


class Opaque:
  """Judging-side marker for a returned value that is not plain data: `is` works on it, and
  `bool` when the program reported a truth value (no more than returning a bool could forge)."""
  __slots__ = ("type_name", "truth")

  def __init__(self, type_name: str, truth=None):
    object.__setattr__(self, "type_name", str(type_name)[:100])
    object.__setattr__(self, "truth", truth if type(truth) is bool else None)

  def _refuse(self, *args, **kwargs):
    raise OpaqueUse(f"a returned {object.__getattribute__(self, 'type_name')} is not plain data")

  def __bool__(self) -> bool:
    truth = object.__getattribute__(self, "truth")
    if truth is None:
      self._refuse()
    return truth

  __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __hash__ = _refuse
  __len__ = __iter__ = __contains__ = __getitem__ = __call__ = __str__ = __format__ = _refuse
  __int__ = __float__ = __index__ = __getattr__ = __setattr__ = _refuse

  def __repr__(self) -> str:
    return f"<opaque {object.__getattribute__(self, 'type_name')}>"


def _opaque_factory():
  raise OpaqueUse("the default factory of a returned defaultdict is not plain data")


def _numpy_to_builtin(value):
  module = type(value).__module__
  if module != "numpy" or not hasattr(value, "tolist"):
    raise NotPlain(f"not plain data: a value of type {type(value).__name__}")
  return value.tolist()


def _truth(value):
  try:
    return bool(value)
  except Exception:  # pylint: disable=broad-except
    return None


def _pairs(items, depth, opaque):
  return [[_encode(k, depth + 1, opaque), _encode(v, depth + 1, opaque)] for k, v in items]


def _encode_stdlib(value, depth, opaque):
  """Tagged form of a `STDLIB_TYPES` value (exact type), or None."""
  kind, seq = type(value), lambda items: [_encode(v, depth + 1, opaque) for v in items]
  if kind is collections.Counter or kind is collections.OrderedDict:
    return {"C" if kind is collections.Counter else "od": _pairs(dict.items(value), depth, opaque)}
  if kind is collections.defaultdict:
    factory = value.default_factory
    name = None if factory is None else next(
        (n for n, t in _FACTORIES.items() if factory is t), "?")
    return {"dd": [name, _pairs(dict.items(value), depth, opaque)]}
  if kind is collections.deque:
    return {"dq": [value.maxlen, seq(value)]}
  if kind is fractions.Fraction:
    return {"fr": [int(value.numerator), int(value.denominator)]}
  if kind is decimal.Decimal:
    return {"dec": str(value)}
  if kind is range:
    return {"r": [value.start, value.stop, value.step]}
  if kind is bytearray:
    return {"ba": bytes(value).hex()}
  if kind in _DICT_VIEWS:
    tag = _DICT_VIEWS[kind]
    return {tag: _pairs(value, depth, opaque) if tag == "di" else seq(value)}
  return None


def _encode(value, depth, opaque=False):
  if depth > MAX_DEPTH:
    raise NotPlain("value nested too deeply")
  kind = type(value)
  if kind in _SCALARS:
    return value
  if kind is float:
    return value if math.isfinite(value) else {"f": repr(value)}
  if kind is list:
    return [_encode(v, depth + 1, opaque) for v in value]
  if kind is tuple:
    return {"t": [_encode(v, depth + 1, opaque) for v in value]}
  if kind is set or kind is frozenset:
    return {"s" if kind is set else "fs": [_encode(v, depth + 1, opaque) for v in value]}
  if kind is dict:
    return {"d": _pairs(value.items(), depth, opaque)}
  if kind is bytes:
    return {"b": value.hex()}
  if kind is complex:
    return {"c": [_encode(value.real, depth), _encode(value.imag, depth)]}
  tagged = _encode_stdlib(value, depth, opaque)
  if tagged is not None:
    return tagged
  try:
    converted = _numpy_to_builtin(value)
  except NotPlain:
    if not opaque:
      raise
    return {"o": [type(value).__name__, _truth(value)]}
  return _encode(converted, depth + 1, opaque)


def encode(value, opaque: bool = False):
  """JSON-ready form of a plain value; raises `NotPlain` for anything else (with `opaque`, other
  values become `Opaque` markers instead; values nested too deeply are still refused)."""
  return _encode(value, 0, opaque)


def dumps(value) -> str:
  return json.dumps(encode(value), allow_nan=False, separators=(",", ":"))


def _decode_stdlib(tag, payload, opaque):
  if tag in ("C", "od", "dd", "di"):
    pairs = payload[1] if tag == "dd" else payload
    items = {decode(k, opaque): decode(v, opaque) for k, v in pairs}
    if tag == "dd":
      factory = None if payload[0] is None else _FACTORIES.get(payload[0], _opaque_factory)
      return collections.defaultdict(factory, items)
    if tag == "di":
      return items.items()
    return (collections.Counter if tag == "C" else collections.OrderedDict)(items)
  if tag == "dq":
    maxlen = payload[0]
    if maxlen is not None and type(maxlen) is not int:
      raise ValueError("malformed deque maxlen")
    return collections.deque([decode(v, opaque) for v in payload[1]], maxlen)
  if tag == "fr":
    return fractions.Fraction(*[_int(x) for x in payload])
  if tag == "dec":
    return decimal.Decimal(str(payload))
  if tag == "r":
    return range(*[_int(x) for x in payload])
  if tag == "ba":
    return bytearray.fromhex(payload)
  items = [decode(v, opaque) for v in payload]
  return dict.fromkeys(items).keys() if tag == "dk" else dict(enumerate(items)).values()


def _int(value) -> int:
  if type(value) is not int:
    raise ValueError(f"malformed plain value: expected an int, got {type(value).__name__}")
  return value


def decode(data, opaque: bool = False):
  """Inverse of `encode`, building fresh objects of trusted types; `ValueError` on malformed input
  (and on an `Opaque` marker unless `opaque`)."""
  if isinstance(data, list):
    return [decode(v, opaque) for v in data]
  if not isinstance(data, dict):
    if type(data) not in (type(None), bool, int, float, str):
      raise ValueError(f"malformed plain value of type {type(data).__name__}")
    return data
  if len(data) != 1 or next(iter(data)) not in _TAGS:
    raise ValueError(f"malformed plain value: {str(data)[:80]}")
  tag, payload = next(iter(data.items()))
  if tag == "o":
    if not opaque:
      raise ValueError("an opaque (non-plain) value where plain data is required")
    if not (isinstance(payload, list) and len(payload) == 2):
      raise ValueError(f"malformed opaque marker: {str(payload)[:80]}")
    return Opaque(*payload)
  if tag == "f":
    return float(payload)
  if tag == "b":
    return bytes.fromhex(payload)
  if tag == "c":
    return complex(decode(payload[0]), decode(payload[1]))
  if tag not in ("t", "s", "fs", "d"):
    try:
      return _decode_stdlib(tag, payload, opaque)
    except (TypeError, IndexError, ArithmeticError) as err:
      raise ValueError(f"malformed plain value ({tag}): {err}") from None
  items = [decode(v, opaque) for v in payload]
  if tag == "d":
    return {k: v for k, v in items}
  return {"t": tuple, "s": set, "fs": frozenset}[tag](items)
