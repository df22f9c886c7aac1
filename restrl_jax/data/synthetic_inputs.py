"""Test inputs for synthetic problems: random candidates, then a discriminating selection.

Tests must give graded rewards: a program that gets part of the composition right (a step left
out, two steps swapped, a constant off by one) should pass some tests and fail others. So tests are
picked from random candidates with the pure evaluator: each such "mutant" program must fail at
least one chosen test and, where some candidate allows it, pass at least one.
"""
from __future__ import annotations

import dataclasses
import random
from typing import Any, Sequence

from restrl_jax.data.synthetic_render import Composition, Step

WORDS = ("a", "an", "ant", "cat", "dog", "sun", "sea", "ice", "oat", "eye", "dad", "top", "tin",
         "noon", "deed", "moon", "tree", "bird", "book", "idea", "nest", "star", "boat", "time",
         "sand", "level", "radar", "apple", "stone", "tenet", "banana", "desk")
LOWER = "aeiostnrdlcbmp"
OTHER = "AEISTN0123456789"
NUM_CANDIDATES = 24
MIN_TESTS, MAX_TESTS = 6, 10


@dataclasses.dataclass(frozen=True)
class Profile:
  """Per-problem input distribution."""
  lo: int
  hi: int
  max_len: int


def sample_profile(comp: Composition, rng: random.Random) -> Profile:
  names = comp.op_names
  if "product" in names:
    return Profile(-4, 6, 6)
  lo, hi = rng.choice([(-9, 20), (0, 30), (-20, 20), (0, 12)])
  return Profile(lo, hi, 8)


def sample_input(comp: Composition, profile: Profile, rng: random.Random) -> Any:
  if comp.source == "ints":
    return [rng.randint(profile.lo, profile.hi) for _ in range(rng.randint(1, profile.max_len))]
  if comp.source == "int":
    first = comp.steps[0].op.name
    if first == "digits":
      return rng.randint(0, 10 ** rng.randint(1, 6))
    return rng.randint(1, 60) if first == "divisors" else rng.randint(1, 12)
  if comp.input_format == "sentence":
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))
  chars = [rng.choice(LOWER) if rng.random() < 0.7 else rng.choice(OTHER + " ")
           for _ in range(rng.randint(1, 12))]
  return " ".join("".join(chars).split())


def edge_inputs(comp: Composition) -> list[Any]:
  if comp.source == "ints":
    return [[], [0]]
  if comp.source == "int":
    return [0] if comp.steps[0].op.name == "digits" else [1]
  return [""]


def mutants(comp: Composition) -> list[Composition]:
  """Partly correct variants: one step dropped, two neighbours swapped, a constant off by one."""
  out = []
  for i, step in enumerate(comp.steps):
    if step.op.in_type == step.op.out_type:
      out.append(comp.without(i))
    p = dict(step.params)
    if "k" in p:
      bumped = Step(step.op, tuple(sorted({**p, "k": p["k"] + 1}.items())))
      out.append(dataclasses.replace(comp, steps=comp.steps[:i] + (bumped,) + comp.steps[i + 1:]))
  for i in range(len(comp.steps) - 1):
    a, b = comp.steps[i].op, comp.steps[i + 1].op
    if a.in_type == a.out_type == b.in_type == b.out_type:
      swapped = comp.steps[:i] + (comp.steps[i + 1], comp.steps[i]) + comp.steps[i + 2:]
      out.append(dataclasses.replace(comp, steps=swapped))
  return out


def stdin_text(comp: Composition, value: Any) -> str:
  """The stdin of a stdio test whose source value is `value`."""
  if comp.input_format == "line":
    return " ".join(map(str, value)) + "\n"
  if comp.input_format == "counted":
    return f"{len(value)}\n" + " ".join(map(str, value)) + "\n"
  return f"{value}\n"


def stdout_text(out_type: str, value: Any) -> str:
  """What the reference prints for an answer `value`."""
  if out_type in ("ints", "words"):
    return " ".join(map(str, value)) + "\n"
  return f"{value}\n"


def observe(comp: Composition, value: Any) -> Any:
  """What a test can tell apart: the value (call), or the printed tokens (stdio, as APPS)."""
  answer = comp.evaluate(value)
  if comp.io == "call":
    return answer
  return tuple(stdout_text(comp.out_type, answer).split())


def _dropped(comp: Composition) -> list[Composition]:
  return [comp.without(i) for i, s in enumerate(comp.steps) if s.op.in_type == s.op.out_type]


def choose_tests(comp: Composition, rng: random.Random) -> list[Any] | None:
  """The test inputs of a problem, or None when the composition is degenerate.

  Degenerate: fewer than 3 distinct answers over the candidates, or a step whose removal never
  changes the answer (e.g. squaring before counting).
  """
  profile = sample_profile(comp, rng)
  cands = _unique(edge_inputs(comp) + [sample_input(comp, profile, rng)
                                       for _ in range(NUM_CANDIDATES)])
  ref = [observe(comp, x) for x in cands]
  if len({repr(r) for r in ref}) < 3:
    return None
  for dropped in _dropped(comp):
    if all(observe(dropped, x) == r for x, r in zip(cands, ref)):
      return None
  agree = [[observe(m, x) == r for x, r in zip(cands, ref)] for m in mutants(comp)]
  chosen = _select(agree, ref, rng)
  if len({repr(ref[i]) for i in chosen}) < 2:
    return None
  return [cands[i] for i in chosen]


def _unique(values: Sequence[Any]) -> list[Any]:
  seen, out = set(), []
  for v in values:
    if repr(v) not in seen:
      seen.add(repr(v))
      out.append(v)
  return out


def _select(agree: list[list[bool]], ref: list[Any], rng: random.Random) -> list[int]:
  """Indices of chosen candidates: kill every mutant, let each pass somewhere, then diversify."""
  n_tests = rng.randint(MIN_TESTS, MAX_TESTS)
  chosen: list[int] = [0] if rng.random() < 0.6 else []
  order = list(range(len(agree)))
  rng.shuffle(order)
  for want in (False, True):   # first make each mutant fail a test, then pass one
    for m in order:
      if any(agree[m][i] == want for i in chosen):
        continue
      options = [i for i in range(len(ref)) if agree[m][i] == want and i not in chosen]
      if options and len(chosen) < MAX_TESTS:
        chosen.append(rng.choice(options))
  rest = [i for i in range(len(ref)) if i not in chosen]
  rng.shuffle(rest)
  seen = {repr(ref[i]) for i in chosen}
  rest.sort(key=lambda i: repr(ref[i]) in seen)   # new answers first (stable: still random)
  chosen += rest[:max(0, n_tests - len(chosen))]
  rng.shuffle(chosen)
  return chosen
