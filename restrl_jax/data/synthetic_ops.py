"""The operations the synthetic coding suite composes, each with its meaning, words and code.

An `Op` transforms a value of one type into another. Types:
  ints   list of integers        str    a string (a sequence of characters)
  words  list of strings         int    one integer
Every op carries three independent descriptions of the same function:
  * `semantics`: a plain Python function (the pure evaluator used to pick test inputs and to
    cross-check the reference programs),
  * `steps` / `noun`: English, as an imperative step ("keep only the even numbers") or as a noun
    phrase wrapped around its argument ("the even numbers in {x}"), so a statement can list the
    steps in code order or nest them in the reverse order,
  * `code`: a template. Filters hold a predicate on the element `{e}`, maps an expression of `{e}`;
    structural ops and reductions hold whole statements from `{src}` into `{dst}`; reductions may
    also hold an accumulator form `acc = (init, update)` so a loop can fuse them.
Ops of one `group` never appear together in a composition (e.g. two parity filters).
"""
from __future__ import annotations

import dataclasses
import random
from typing import Any, Callable, Mapping

Params = Mapping[str, Any]
KINDS = ("filter", "map", "struct", "reduce")
SEQ_TYPES = ("ints", "str", "words")
ELEM_NOUN = {"ints": "numbers", "str": "characters", "words": "words"}
ELEM_NOUN_1 = {"ints": "number", "str": "character", "words": "word"}
ELEM_VARS = {"ints": ("x", "y", "z", "v"), "str": ("c", "ch", "d"), "words": ("w", "t", "u")}


def _no_params(rng: random.Random) -> dict[str, Any]:
  del rng
  return {}


@dataclasses.dataclass(frozen=True, eq=False)
class Op:
  """One operation; ops are equal when their names are (names are unique in the catalogue)."""
  name: str
  kind: str                      # one of KINDS
  in_type: str
  out_type: str
  group: str
  steps: tuple[str, ...]         # imperative phrasings; may use {k}, {c}, {d}, {items}, {item}
  noun: str                      # noun phrase around the argument {x}
  semantics: Callable[..., Any]  # filter: pred(e, p); map: f(e, p); others: f(value, p)
  code: str                      # see the module docstring
  var: str                       # preferred name of the result variable
  acc: tuple[str, str] | None = None
  params: Callable[[random.Random], dict[str, Any]] = _no_params

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"Op {self.name}: kind must be one of {KINDS}, got {self.kind!r}")

  def __eq__(self, other: object) -> bool:
    return isinstance(other, Op) and other.name == self.name

  def __hash__(self) -> int:
    return hash(self.name)

  def apply(self, value: Any, p: Params) -> Any:
    """The pure evaluator: this op applied to `value` with constants `p`."""
    if self.kind == "filter":
      kept = [e for e in value if self.semantics(e, p)]
      return "".join(kept) if self.in_type == "str" else kept
    if self.kind == "map":
      mapped = [self.semantics(e, p) for e in value]
      return "".join(mapped) if self.out_type == "str" else mapped
    return self.semantics(value, p)


def _k(lo: int, hi: int) -> Callable[[random.Random], dict[str, Any]]:
  return lambda rng: {"k": rng.randint(lo, hi)}


def _char(pool: str) -> Callable[[random.Random], dict[str, Any]]:
  return lambda rng: {"c": rng.choice(pool)}


def _char_pair(rng: random.Random) -> dict[str, Any]:
  c, d = rng.sample("aeiostn", 2)
  return {"c": c, "d": d}


def _int_ops() -> list[Op]:
  f, m = "filter", "map"
  return [
      Op("keep_even", f, "ints", "ints", "parity", ("keep only the even numbers",
         "remove the odd numbers"), "the even numbers in {x}", lambda e, p: e % 2 == 0,
         "{e} % 2 == 0", "evens"),
      Op("keep_odd", f, "ints", "ints", "parity", ("keep only the odd numbers",
         "remove the even numbers"), "the odd numbers in {x}", lambda e, p: e % 2 != 0,
         "{e} % 2 == 1", "odds"),
      Op("keep_pos", f, "ints", "ints", "sign", ("keep only the positive numbers",
         "remove every number that is zero or negative"), "the positive numbers in {x}",
         lambda e, p: e > 0, "{e} > 0", "pos"),
      Op("keep_gt", f, "ints", "ints", "cmp", ("keep only the numbers greater than {k}",
         "remove every number that is at most {k}"), "the numbers greater than {k} in {x}",
         lambda e, p: e > p["k"], "{e} > {k}", "big", params=_k(0, 9)),
      Op("keep_lt", f, "ints", "ints", "cmp", ("keep only the numbers less than {k}",
         "remove every number that is at least {k}"), "the numbers less than {k} in {x}",
         lambda e, p: e < p["k"], "{e} < {k}", "small", params=_k(1, 9)),
      Op("keep_mult", f, "ints", "ints", "div", ("keep only the multiples of {k}",
         "remove the numbers not divisible by {k}"), "the multiples of {k} in {x}",
         lambda e, p: e % p["k"] == 0, "{e} % {k} == 0", "mults", params=_k(3, 5)),
      Op("drop_mult", f, "ints", "ints", "div", ("remove the multiples of {k}",
         "keep only the numbers not divisible by {k}"), "the numbers not divisible by {k} in {x}",
         lambda e, p: e % p["k"] != 0, "{e} % {k} != 0", "rest", params=_k(3, 5)),
      Op("square", m, "ints", "ints", "power", ("square each number",
         "replace every number by its square"), "the squares of {x}", lambda e, p: e ** 2,
         "{e} * {e}", "squares"),
      Op("times", m, "ints", "ints", "scale", ("multiply each number by {k}",),
         "{k} times each of {x}", lambda e, p: p["k"] * e, "{e} * {k}", "scaled",
         params=_k(2, 5)),
      Op("half", m, "ints", "ints", "scale", ("halve each number, rounding down",),
         "the halves (rounded down) of {x}", lambda e, p: e // 2, "{e} // 2", "halves"),
      Op("add", m, "ints", "ints", "shift", ("add {k} to each number",
         "increase every number by {k}"), "{k} more than each of {x}", lambda e, p: e + p["k"],
         "{e} + {k}", "shifted", params=_k(1, 9)),
      Op("sub", m, "ints", "ints", "shift", ("subtract {k} from each number",
         "decrease every number by {k}"), "{k} less than each of {x}", lambda e, p: e - p["k"],
         "{e} - {k}", "shifted", params=_k(1, 9)),
      Op("absval", m, "ints", "ints", "sign", ("replace each number by its absolute value",),
         "the absolute values of {x}", lambda e, p: -e if e < 0 else e, "abs({e})", "mags"),
      Op("mod", m, "ints", "ints", "mod", ("replace each number by its remainder modulo {k}",
         "take each number modulo {k}"), "the remainders modulo {k} of {x}",
         lambda e, p: e - p["k"] * (e // p["k"]), "{e} % {k}", "rems", params=_k(3, 7)),
      Op("last_digit", m, "ints", "ints", "mod", ("replace each number by its last digit",),
         "the last digits of {x}", lambda e, p: int(str(e)[-1]), "abs({e}) % 10", "lasts"),
      Op("running", "struct", "ints", "ints", "scan", ("replace the numbers by their running "
         "totals",), "the running totals of {x}", _running,
         "{dst} = []\nrun = 0\nfor {e} in {src}:\n    run += {e}\n    {dst}.append(run)", "sums"),
      Op("diffs", "struct", "ints", "ints", "scan", ("replace the numbers by the differences "
         "between each number and the one before it",),
         "the differences between neighbouring numbers of {x}",
         lambda v, p: [b - a for a, b in zip(v, v[1:])],
         "{dst} = []\nfor i in range(1, len({src})):\n    {dst}.append({src}[i] - {src}[i - 1])",
         "gaps"),
      Op("sort_asc", "struct", "ints", "ints", "order", ("sort the numbers in increasing order",),
         "the increasing ordering of {x}", lambda v, p: sorted(v), "{dst} = sorted({src})",
         "ordered"),
      Op("sort_desc", "struct", "ints", "ints", "order", ("sort the numbers from largest to "
         "smallest",), "the decreasing ordering of {x}", lambda v, p: sorted(v)[::-1],
         "{dst} = sorted({src}, reverse=True)", "ordered"),
      Op("sum", "reduce", "ints", "int", "reduce", ("add up the {items}",), "the sum of {x}",
         _sum, "{dst} = sum({src})", "total", acc=("{acc} = 0", "{acc} += {e}")),
      Op("product", "reduce", "ints", "int", "reduce", ("multiply the {items} together",),
         "the product of {x} (1 if there are none)", _product, "", "prod",
         acc=("{acc} = 1", "{acc} *= {e}")),
      Op("max0", "reduce", "ints", "int", "reduce", ("take the largest of the {items}",),
         "the largest of {x} (0 if there are none)", lambda v, p: sorted(v)[-1] if v else 0,
         "{dst} = max({src}, default=0)", "best"),
      Op("min0", "reduce", "ints", "int", "reduce", ("take the smallest of the {items}",),
         "the smallest of {x} (0 if there are none)", lambda v, p: sorted(v)[0] if v else 0,
         "{dst} = min({src}, default=0)", "least"),
  ]


def _running(v: list[int], p: Params) -> list[int]:
  out, total = [], 0
  for e in v:
    total += e
    out.append(total)
  return out


def _sum(v: list[int], p: Params) -> int:
  total = 0
  for e in v:
    total += e
  return total


def _product(v: list[int], p: Params) -> int:
  total = 1
  for e in v:
    total *= e
  return total


def _dedupe(v, p: Params):
  seen = []
  for e in v:
    if e not in seen:
      seen.append(e)
  return "".join(seen) if isinstance(v, str) else seen


def _generic_ops(t: str) -> list[Op]:
  """Structural ops and reductions that work on every sequence type `t`."""
  collect = "''" if t == "str" else "[]"
  add = "{dst} += {e}" if t == "str" else "{dst}.append({e})"
  return [
      Op(f"reverse.{t}", "struct", t, t, "order", ("reverse the order of the {items}",),
         "the reversal of {x}", lambda v, p: v[::-1], "{dst} = {src}[::-1]", "backwards"),
      Op(f"dedupe.{t}", "struct", t, t, "dedupe", ("remove repeated {items}, keeping the first "
         "occurrence of each",), "the distinct {items} (in order of first appearance) of {x}",
         _dedupe, f"{{dst}} = {collect}\nfor {{e}} in {{src}}:\n    if {{e}} not in {{dst}}:\n"
         f"        {add}", "unique"),
      Op(f"take.{t}", "struct", t, t, "slice", ("keep only the first {k} {items}",),
         "the first {k} {items} of {x}", lambda v, p: v[:p["k"]], "{dst} = {src}[:{k}]", "head",
         params=_k(2, 4)),
      Op(f"drop.{t}", "struct", t, t, "slice", ("remove the first {k} {items}",),
         "all but the first {k} {items} of {x}", lambda v, p: v[p["k"]:], "{dst} = {src}[{k}:]",
         "tail", params=_k(2, 3)),
      Op(f"every_other.{t}", "struct", t, t, "slice", ("keep every second {item}, starting with "
         "the first",), "every second {item} (starting with the first) of {x}",
         lambda v, p: v[0::2], "{dst} = {src}[::2]", "alternate"),
      Op(f"count.{t}", "reduce", t, "int", "reduce", ("count the {items}",), "the count of {x}",
         lambda v, p: len(v), "{dst} = len({src})", "count", acc=("{acc} = 0", "{acc} += 1")),
      Op(f"ndistinct.{t}", "reduce", t, "int", "reduce", ("count the distinct {items}",),
         "the number of distinct {items} in {x}", lambda v, p: len(_dedupe(v, p)),
         "{dst} = len(set({src}))", "count"),
  ]


def _str_ops() -> list[Op]:
  f, m, s = "filter", "map", "str"
  return [
      Op("keep_vowels", f, s, s, "vowel", ("keep only the vowels (a, e, i, o, u)",),
         "the vowels of {x}", lambda e, p: e in "aeiou", "{e} in 'aeiou'", "vowels"),
      Op("drop_vowels", f, s, s, "vowel", ("remove the vowels (a, e, i, o, u)",),
         "the non-vowel characters of {x}", lambda e, p: e not in "aeiou", "{e} not in 'aeiou'",
         "consonants"),
      Op("keep_letters", f, s, s, "class", ("keep only the letters",), "the letters of {x}",
         lambda e, p: "a" <= e.lower() <= "z", "{e}.isalpha()", "letters"),
      Op("keep_digits", f, s, s, "class", ("keep only the digits",), "the digits of {x}",
         lambda e, p: e in "0123456789", "{e}.isdigit()", "digits"),
      Op("drop_spaces", f, s, s, "space", ("remove the spaces",),
         "the non-space characters of {x}", lambda e, p: e != " ", "{e} != ' '", "packed"),
      Op("drop_char", f, s, s, "char", ("remove every '{c}'",),
         "the characters of {x} other than '{c}'", lambda e, p: e != p["c"], "{e} != '{c}'",
         "rest", params=_char("aeiostn")),
      Op("upper", m, s, s, "case", ("convert the text to upper case",),
         "the upper-case form of {x}", lambda e, p: _swap(e) if e.islower() else e,
         "{e}.upper()", "loud"),
      Op("swapcase", m, s, s, "case", ("swap the case of every letter",),
         "the case-swapped form of {x}", lambda e, p: _swap(e), "{e}.swapcase()", "swapped"),
      Op("replace", m, s, s, "char", ("replace every '{c}' with '{d}'",),
         "the result of replacing every '{c}' with '{d}' in {x}",
         lambda e, p: p["d"] if e == p["c"] else e, "'{d}' if {e} == '{c}' else {e}", "fixed",
         params=_char_pair),
      Op("sort_chars", "struct", s, s, "order", ("sort the characters",),
         "the sorted characters of {x}", lambda v, p: "".join(sorted(v)),
         "{dst} = ''.join(sorted({src}))", "ordered"),
      Op("split", "struct", s, "words", "split", ("split the text into words",),
         "the words of {x}", lambda v, p: v.split(), "{dst} = {src}.split()", "words"),
  ]


def _swap(e: str) -> str:
  low, up = "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
  if e in low:
    return up[low.index(e)]
  return low[up.index(e)] if e in up else e


def _upper(e: str) -> str:
  return "".join(_swap(ch) if ch.islower() else ch for ch in e)


def _lower(e: str) -> str:
  return "".join(_swap(ch) if ch.isupper() else ch for ch in e)


def _word_ops() -> list[Op]:
  f, m, w = "filter", "map", "words"
  return [
      Op("longer", f, w, w, "wlen", ("keep only the words longer than {k} letters",),
         "the words longer than {k} letters in {x}", lambda e, p: len(e) > p["k"],
         "len({e}) > {k}", "long", params=_k(2, 4)),
      Op("shorter", f, w, w, "wlen", ("keep only the words shorter than {k} letters",),
         "the words shorter than {k} letters in {x}", lambda e, p: len(e) < p["k"],
         "len({e}) < {k}", "short", params=_k(3, 5)),
      Op("starts", f, w, w, "wstart", ("keep only the words that start with '{c}'",),
         "the words starting with '{c}' in {x}", lambda e, p: e[:1] == p["c"],
         "{e}[0] == '{c}'", "chosen", params=_char("abcdst")),
      Op("has_char", f, w, w, "wchar", ("keep only the words containing '{c}'",),
         "the words containing '{c}' in {x}", lambda e, p: p["c"] in e, "'{c}' in {e}",
         "chosen", params=_char("aeiont")),
      Op("palindromes", f, w, w, "wpal", ("keep only the palindromes (words that read the same "
         "backwards)",), "the palindromes in {x}", lambda e, p: list(e) == list(reversed(e)),
         "{e} == {e}[::-1]", "pals"),
      Op("wupper", m, w, w, "wcase", ("write each word in upper case",),
         "the upper-case forms of {x}", lambda e, p: _upper(e), "{e}.upper()", "loud"),
      Op("wcap", m, w, w, "wcase", ("capitalize each word",), "the capitalized forms of {x}",
         lambda e, p: _upper(e[:1]) + _lower(e[1:]), "{e}.capitalize()", "caps"),
      Op("wrev", m, w, w, "wrev", ("reverse each word",), "the backwards spellings of {x}",
         lambda e, p: "".join(reversed(e)), "{e}[::-1]", "flipped"),
      Op("wfirst", m, w, w, "wfirst", ("replace each word by its first letter",),
         "the first letters of {x}", lambda e, p: e[:1], "{e}[0]", "initials"),
      Op("wlen", m, w, "ints", "wlenmap", ("replace each word by its length",),
         "the lengths of {x}", lambda e, p: len(e), "len({e})", "lengths"),
      Op("sort_words", "struct", w, w, "order", ("sort the words alphabetically",),
         "the alphabetical ordering of {x}", lambda v, p: sorted(v), "{dst} = sorted({src})",
         "ordered"),
      Op("sort_len", "struct", w, w, "order", ("sort the words by length, keeping the original "
         "order of equally long words",), "the ordering of {x} by length",
         lambda v, p: sorted(v, key=lambda e: len(e)), "{dst} = sorted({src}, key=len)",
         "ordered"),
      Op("concat", "struct", w, "str", "join", ("join the words together without spaces",),
         "the concatenation of {x}", lambda v, p: "".join(v), "{dst} = ''.join({src})",
         "joined"),
  ]


def _int_source_ops() -> list[Op]:
  s = "struct"
  return [
      Op("digits", s, "int", "ints", "source", ("take the digits of n",), "the digits of {x}",
         lambda n, p: [int(ch) for ch in str(n)], "{dst} = [int(d) for d in str({src})]",
         "digits"),
      Op("divisors", s, "int", "ints", "source", ("list the divisors of n",),
         "the divisors of {x}", lambda n, p: [d for d in range(1, n + 1) if n % d == 0],
         "{dst} = [d for d in range(1, {src} + 1) if {src} % d == 0]", "divs"),
      Op("upto", s, "int", "ints", "source", ("list the numbers from 1 to n",),
         "the numbers from 1 to {x}", lambda n, p: list(range(1, n + 1)),
         "{dst} = list(range(1, {src} + 1))", "nums"),
  ]


def build_ops() -> dict[str, Op]:
  """Every op by name (a fresh dict; the catalogue itself is immutable)."""
  ops = _int_ops() + _str_ops() + _word_ops() + _int_source_ops()
  for t in SEQ_TYPES:
    ops += _generic_ops(t)
  table = {op.name: op for op in ops}
  if len(table) != len(ops):
    raise ValueError("duplicate op names in the synthetic catalogue")
  return table
