"""The synthetic coding suite: determinism, splits, executed outputs, graded signal, export."""
import collections
import dataclasses
import json
import random

import pytest

from restrl_jax.data import synthetic as S
from restrl_jax.data import synthetic_exec as X
from restrl_jax.data import synthetic_inputs as I
from restrl_jax.data.synthetic_ops import build_ops
from restrl_jax.data.synthetic_render import (Composition, Step, params_tuple, render_program,
                                              render_statement)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("RESTRL_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def problems():
  """A few executed problems of every split (cache-free: built directly)."""
  out = {}
  for split, n in (("train", 80), ("validation", 40), ("test", 60)):
    out[split] = S.build_problems(S.generate_specs(split, n, seed=3), split, 3)
  return out


def _pairs(problem):
  names = problem.metadata["composition"]
  return list(zip(names, names[1:]))


def test_generation_is_deterministic_and_prefix_stable():
  a = S.generate_specs("train", 30, seed=1)
  b = S.generate_specs("train", 30, seed=1)
  assert a == b
  assert S.generate_specs("train", 10, seed=1) == a[:10]
  c = S.generate_specs("train", 30, seed=2)
  assert [s.statement for s in a] != [s.statement for s in c]
  assert len({s.statement for s in a}) == 30   # no duplicate problems


def test_splits_hold_out_whole_compositions(problems):
  for p in problems["train"]:
    assert all(S.pair_split(*pair) == "train" for pair in _pairs(p)), p.metadata["composition"]
  for p in problems["validation"]:
    kinds = {S.pair_split(*pair) for pair in _pairs(p)}
    assert "validation" in kinds and "test" not in kinds
  for p in problems["test"]:
    assert "test" in {S.pair_split(*pair) for pair in _pairs(p)}
  seen = {tuple(p.metadata["composition"]) for p in problems["train"]}
  held = {tuple(p.metadata["composition"]) for s in ("validation", "test") for p in problems[s]}
  assert not seen & held
  # the held-out pairs are a real share of all pairs, not a handful
  names = sorted(build_ops())
  shares = collections.Counter(S.pair_split(a, b) for a in names for b in names)
  total = sum(shares.values())
  assert 0.10 < shares["test"] / total < 0.20 and 0.05 < shares["validation"] / total < 0.15


def test_problem_shape(problems):
  for split, items in problems.items():
    for p in items:
      meta, tests = p.metadata, p.tests
      assert p.source == "synthetic" and p.id.startswith(f"synthetic/{split}/mixed-3/")
      assert len(p.prompt.split()) <= S.MAX_WORDS
      lines = meta["solution"].rstrip("\n").split("\n")
      assert S.MIN_LINES <= len(lines) <= S.MAX_LINES
      assert meta["solution"].startswith(p.starter_code)
      assert 6 <= len(tests.inputs) <= 10 and len(tests.inputs) == len(tests.outputs)
      assert len({json.dumps(x) for x in tests.inputs}) == len(tests.inputs)
      assert len({json.dumps(y) for y in tests.outputs}) >= 2
      if tests.kind == "call":
        assert tests.fn_name == "solve" == p.entry_point
        assert p.starter_code.startswith("def solve(") and all(len(x) == 1 for x in tests.inputs)
      else:
        assert tests.kind == "stdio" and p.starter_code == "" and p.entry_point is None
        assert all(isinstance(x, str) and x.endswith("\n") for x in tests.inputs)
      assert meta["split"] == split and meta["family"] in ("ints", "str", "words", "int")
      json.dumps(S.problem_to_json(p))   # JSON-able


def test_both_styles_and_phrasings_occur(problems):
  every = [p for items in problems.values() for p in items]
  assert {p.metadata["style"] for p in every} == {"pipeline", "loop"}
  assert {p.metadata["phrasing"] for p in every} == {"steps", "nested"}
  assert {p.tests.kind for p in every} == {"stdio", "call"}
  assert set(collections.Counter(p.metadata["family"] for p in every)) == {
      "ints", "str", "words", "int"}


def test_nested_phrasing_reverses_the_code_order():
  ops = build_ops()
  comp = Composition("call", "ints", "args", (
      Step(ops["keep_even"]), Step(ops["square"]), Step(ops["sum"])))
  assert render_statement(comp, "nested").endswith(
      "Return the sum of the squares of the even numbers in xs.")
  steps = render_statement(comp, "steps")
  assert steps.index("even") < steps.index("Square") < steps.index("sum")
  _, fused = render_program(comp, "loop")
  assert fused == ("def solve(xs):\n    total = 0\n    for x in xs:\n        if x % 2 == 0:\n"
                   "            y = x * x\n            total += y\n    return total\n")


def test_outputs_come_from_executing_the_reference(problems):
  for items in problems.values():
    for p in items:
      comp = S.composition_of(p)
      raw = p.metadata["raw_inputs"]
      expected = [comp.evaluate(x) for x in raw]
      if p.tests.kind == "stdio":
        expected = [I.stdout_text(comp.out_type, v) for v in expected]
      assert list(p.tests.outputs) == expected
  # a reference that disagrees with the evaluator is caught
  spec = S.generate_specs("train", 1, seed=3)[0]
  wrap = "_solve = solve\ndef solve(*args):\n    return [_solve(*args)]\n"
  broken = spec.solution + (wrap if spec.comp.io == "call" else "print(1)\n")
  with pytest.raises(RuntimeError, match="disagrees"):
    S.build_problems([dataclasses.replace(spec, solution=broken)], "train", 3)


def _minimal_composition(op, io_kind, rng):
  ops = build_ops()
  params = params_tuple(op.params(rng))
  if op.in_type == "words":
    return Composition(io_kind, "str", "sentence", (Step(ops["split"]), Step(op, params)))
  fmt = {"ints": "line" if io_kind == "stdio" else "args", "str": "text", "int": "int"}
  fmt = "sentence" if op.name == "split" else fmt[op.in_type]
  return Composition(io_kind, op.in_type if op.in_type != "words" else "str", fmt,
                     (Step(op, params),))


def test_every_op_code_matches_its_semantics():
  """Each op's code template, in both styles and both I/O kinds, against its pure semantics."""
  rng = random.Random(0)
  programs, kinds, inputs, expected = [], [], [], []
  for i, op in enumerate(build_ops().values()):
    for style, io_kind in (("pipeline", "call"), ("loop", "stdio"), ("loop", "call")):
      comp = _minimal_composition(op, io_kind, rng)
      profile = I.sample_profile(comp, rng)
      values = I.edge_inputs(comp) + [I.sample_input(comp, profile, rng) for _ in range(5)]
      programs.append(render_program(comp, style)[1])
      kinds.append(io_kind)
      if io_kind == "call":
        inputs.append([[v] for v in values])
        expected.append([comp.evaluate(v) for v in values])
      else:
        inputs.append([I.stdin_text(comp, v) for v in values])
        expected.append([I.stdout_text(comp.out_type, comp.evaluate(v)) for v in values])
  outcomes = X.execute(programs, kinds, inputs)
  for program, outs, want in zip(programs, outcomes, expected):
    assert [o.get("ok", o.get("error")) for o in outs] == want, program


def test_one_step_dropped_gets_graded_reward(problems):
  items = problems["train"] + problems["test"]
  programs, owners = [], []
  for p in items:
    for m in S.drop_one_programs(p):
      programs.append(m)
      owners.append(p)
  rewards = X.local_rewards(programs, owners)
  assert len(programs) > len(items)
  assert max(rewards) < 1.0                     # every partial program fails some test
  graded = sum(0 < r < 1 for r in rewards) / len(rewards)
  assert graded > 0.85, graded                  # and most pass some (measured: ~0.96)
  refs = X.local_rewards([p.metadata["solution"] for p in items], items)
  assert refs == [1.0] * len(items)


def test_difficulty_knob_grows_depth_and_length():
  def stats(level):
    specs = S.generate_specs("train", 40, seed=5, difficulty=level)
    depth = sum(len(s.comp.steps) for s in specs) / len(specs)
    lines = sum(len(s.solution.split("\n")) for s in specs) / len(specs)
    return depth, lines
  d1, l1 = stats(1)
  d4, l4 = stats(4)
  assert d1 < 2.0 < 3.5 < d4 and l1 < l4


def test_load_synthetic_caches_on_disk(monkeypatch):
  first = S.load_synthetic("validation", 12, seed=4, verify=False)
  assert [p.id for p in first] == [f"synthetic/validation/mixed-4/{i}" for i in range(12)]
  monkeypatch.setattr(S, "build_problems", lambda *a, **k: pytest.fail("not from the cache"))
  again = S.load_synthetic("validation", 12, seed=4, verify=False)
  assert again == first


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="split"):
    S.load_synthetic("dev", 3)
  with pytest.raises(ValueError, match="difficulty"):
    S.load_synthetic("train", 3, difficulty=9)
  with pytest.raises(ValueError, match="num_problems"):
    S.load_synthetic("train", -1)


def test_apps_export_loads_with_the_apps_loader(tmp_path):
  from restrl_jax.data import apps   # the loader real APPS data goes through
  out = tmp_path / "synthetic.jsonl"
  S.main(["--split", "test", "--num", "8", "--seed", "2", "--verify", "no", "--out", str(out)])
  ours = S.load_synthetic("test", 8, seed=2, verify=False)
  loaded = apps.load_apps(str(out))
  assert len(loaded) == 8
  for a, b in zip(loaded, ours):
    assert a.prompt == b.prompt and a.starter_code == b.starter_code
    assert a.tests.kind == b.tests.kind and a.tests.fn_name == b.tests.fn_name
    assert list(a.tests.inputs) == list(b.tests.inputs)
    assert list(a.tests.outputs) == list(b.tests.outputs)
    assert list(a.metadata["solutions"]) == [b.metadata["solution"]]


def test_registry_loads_synthetic_by_name():
  from restrl_jax.data import registry
  got = registry.load_problems("synthetic", split="validation", limit=5, seed=4, verify=False)
  assert [p.id for p in got] == [f"synthetic/validation/mixed-4/{i}" for i in range(5)]


def test_references_and_mutants_in_the_sandbox(problems):
  items = problems["test"][:12]
  results = X.run_in_sandbox([p.metadata["solution"] for p in items], items)
  assert all(r.strict for r in results), [r.statuses for r in results if not r.strict][:3]
  programs, owners = [], []
  for p in items:
    for m in S.drop_one_programs(p):
      programs.append(m)
      owners.append(p)
  sandboxed = [r.reward for r in X.run_in_sandbox(programs, owners)]
  assert sandboxed == pytest.approx(X.local_rewards(programs, owners))


def test_in_distribution_splits_draw_train_compositions_and_share_no_problem():
  """No (normalised statement, tests) pair occurs in two splits, nor a statement."""
  train = S.generate_specs("train", 400, seed=0)
  splits = {"train": train, **{name: S.generate_specs(name, 60, seed=0)
                               for name in ("validation", "test", *S.IN_DISTRIBUTION)}}
  keys = {name: {(S.normalise_statement(s.statement), repr(s.inputs)) for s in specs}
          for name, specs in splits.items()}
  statements = {name: {k for k, _ in pairs} for name, pairs in keys.items()}
  names = sorted(keys)
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      assert not keys[a] & keys[b], (a, b)
      assert not statements[a] & statements[b], (a, b)
  for name in S.IN_DISTRIBUTION:   # the same compositions as train, not held-out ones
    assert all(S.composition_split(s.comp) == "train" for s in splits[name])
    assert all(S.statement_bucket(s.statement) == name for s in splits[name])
  assert all(S.statement_bucket(s.statement) == "train" for s in train)
  assert {S.composition_split(s.comp) for s in splits["test"]} == {"test"}


def test_in_distribution_problems_load_and_pass_in_the_sandbox(tmp_path, monkeypatch):
  monkeypatch.setenv("RESTRL_CACHE", str(tmp_path))
  problems = S.load_synthetic("id_test", 6, seed=0)        # verify=True: references pass
  assert [p.id for p in problems] == [f"synthetic/id_test/mixed-0/{i}" for i in range(6)]
  assert all(p.metadata["split"] == "id_test" for p in problems)
