"""A procedural suite of small APPS-format coding problems, for real learning on a CPU.

Each problem composes 1-5 typed ops (`synthetic_ops`) over a list of integers, a text, a list of
words or an integer: filter then map then reduce, parse (split) then count, and so on. The
statement lists the steps in code order or nests them in reverse order; the reference program
either writes one statement per step or fuses element-wise steps into one loop
(`synthetic_render`). Tests (6-10) are chosen so that partly correct programs score between 0
and 1 (`synthetic_inputs`); expected outputs come from running the reference program in a child
process (checked against the pure evaluator, and every reference against the sandbox).

Two kinds of held-out splits:
- Compositional (`validation`, `test`): whole compositions are held out. Each adjacent pair of ops
  (e.g. keep_even -> square) is assigned by a fixed hash to train (75%), validation (10%) or test
  (15%). The test split contains only compositions with at least one test pair; validation those
  with a validation pair and no test pair; train those with neither (so single-op problems are
  train only). They measure generalisation to unseen combinations; none of their compositions is
  ever seen in training.
- In-distribution (`id_validation`, `id_test`): train's compositions, drawn from their own
  generator streams, as problems never seen in training. A problem's normalised statement is
  hashed into a bucket (`statement_bucket`: 5% id_validation, 5% id_test, 90% train) and each of
  these three splits keeps only statements of its own bucket, so no (normalised statement, tests)
  pair occurs in two splits, whatever their sizes and seeds. `difficulty` (1-4, or "mixed" = 1-3) sets the number of
ops, how often the loop style and the nested phrasing are used.

`python -m restrl_jax.data.synthetic --split train --num 1000 --out FILE.jsonl` writes the suite
as APPS rows (`problem_id`, `question`, `solutions`, `input_output`, `starter_code`, `difficulty`).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import random
from typing import Any, Iterable, Sequence

from restrl_jax.data import io
from restrl_jax.data.problem import Problem
from restrl_jax.data.synthetic_exec import execute, verify_in_sandbox
from restrl_jax.data.synthetic_inputs import choose_tests, stdin_text, stdout_text
from restrl_jax.data.synthetic_ops import Op, build_ops
from restrl_jax.data.synthetic_render import (Composition, Step, params_tuple, render_program,
                                              render_statement)
from restrl_jax.execution.spec import TestSuite

GENERATOR_VERSION = "2"
# Outputs are compared exactly (whitespace-separated tokens, in order): APPS' tolerant rules
# (token sets) would give full credit to programs that get the order wrong, e.g. a dropped sort.
MATCH = "exact"
IN_DISTRIBUTION = ("id_validation", "id_test")
SPLITS = ("train", "validation", "test", *IN_DISTRIBUTION)
DEFAULT_SIZES = {"train": 2000, "validation": 200, "test": 200, "id_validation": 200,
                 "id_test": 200}
BUCKETS = 20   # statement hash buckets: 0 -> id_validation, 1 -> id_test, else train
TIMEOUT_S = 4.0
MAX_LINES, MIN_LINES, MAX_WORDS = 10, 4, 60
MAX_DUPLICATES = 100
SOURCES = {"line": "ints", "counted": "ints", "text": "str", "sentence": "str", "int": "int"}
KIND_WEIGHT = {"filter": 3.0, "map": 2.0, "struct": 1.0, "reduce": 1.0}


@dataclasses.dataclass(frozen=True)
class Level:
  depth: tuple[int, int]     # number of ops, inclusive range
  p_loop: float              # probability of the fused-loop code style
  p_nested: float            # probability of the nested (reverse-order) phrasing


LEVELS = {1: Level((1, 2), 0.2, 0.2), 2: Level((2, 3), 0.5, 0.5), 3: Level((3, 4), 0.7, 0.6),
          4: Level((4, 5), 0.8, 0.7)}
MIXED = (1, 2, 3)


@dataclasses.dataclass(frozen=True)
class Spec:
  """A generated problem before execution: everything but the expected outputs."""
  comp: Composition
  level: int
  style: str
  phrasing: str
  statement: str
  starter: str
  solution: str
  inputs: tuple[Any, ...]    # one value of the source type per test


def pair_split(a: str, b: str) -> str:
  """The split an adjacent pair of composition elements belongs to (fixed by a hash)."""
  bucket = int(hashlib.sha256(f"{a}>{b}".encode()).hexdigest(), 16) % 100
  return "test" if bucket < 15 else "validation" if bucket < 25 else "train"


def composition_split(comp: Composition) -> str:
  """test if any adjacent op pair is a test pair, else validation if any is one, else train."""
  names = comp.op_names
  found = {pair_split(a, b) for a, b in zip(names, names[1:])}
  return "test" if "test" in found else "validation" if "validation" in found else "train"


def normalise_statement(statement: str) -> str:
  return " ".join(statement.lower().split())


def statement_bucket(statement: str) -> str:
  """The split a statement belongs to among train and the in-distribution splits."""
  digest = hashlib.sha256(normalise_statement(statement).encode("utf-8")).digest()
  bucket = int.from_bytes(digest[:4], "big") % BUCKETS
  return IN_DISTRIBUTION[bucket] if bucket < len(IN_DISTRIBUTION) else "train"


def composition_family(split: str) -> str:
  """The compositional split whose compositions `split` draws (train's for in-distribution)."""
  return "train" if split in IN_DISTRIBUTION else split


def _admissible(spec: "Spec", split: str) -> bool:
  """Whether `spec` may be a problem of `split`: its statement's bucket is the split's own."""
  return split not in ("train", *IN_DISTRIBUTION) or statement_bucket(spec.statement) == split


def _weighted(ops: Sequence[Op], rng: random.Random) -> Op:
  weights = [KIND_WEIGHT[op.kind] for op in ops]
  return rng.choices(ops, weights=weights)[0]


def sample_composition(ops: dict[str, Op], depth: int, rng: random.Random) -> Composition | None:
  """A random type-correct chain of `depth` ops (a sentence input always starts with split)."""
  fmt = rng.choices(tuple(SOURCES), weights=(3, 2, 3, 3, 2))[0]
  source, io_kind = SOURCES[fmt], rng.choice(("stdio", "call"))
  depth = max(depth, 2) if fmt == "sentence" else depth
  cur, steps, groups = source, [], set()
  for i in range(depth):
    last = i == depth - 1
    must_split = fmt == "sentence" and i == 0
    cands = [op for op in ops.values() if op.in_type == cur and op.group not in groups
             and (last or op.kind != "reduce") and (op.name == "split") == must_split]
    reduces = [op for op in cands if op.kind == "reduce"]
    if not cands:
      return None
    op = rng.choice(reduces) if last and reduces and rng.random() < 0.5 else _weighted(cands, rng)
    params = {**op.params(rng), "variant": rng.randrange(len(op.steps))}
    steps.append(Step(op, params_tuple(params)))
    groups.add(op.group)
    cur = op.out_type
  if io_kind == "call" and source == "ints":
    fmt = "args"
  return Composition(io_kind, source, fmt, tuple(steps))


def _level(difficulty: int | str, rng: random.Random) -> int:
  return rng.choice(MIXED) if difficulty == "mixed" else int(difficulty)


def check_difficulty(difficulty: int | str) -> int | str:
  """The difficulty as 1-4 or "mixed" (numeric strings accepted); ValueError otherwise."""
  if isinstance(difficulty, str) and difficulty.strip().isdigit():
    difficulty = int(difficulty)
  if difficulty != "mixed" and difficulty not in LEVELS:
    raise ValueError(f"difficulty must be one of {sorted(LEVELS)} or 'mixed', got {difficulty!r}")
  return difficulty


def _render(comp: Composition, level: Level, rng: random.Random):
  style = "loop" if rng.random() < level.p_loop else "pipeline"
  phrasing = "nested" if rng.random() < level.p_nested else "steps"
  for style_try in (style, "loop" if style == "pipeline" else "pipeline"):
    starter, program = render_program(comp, style_try)
    statement = render_statement(comp, phrasing)
    lines = len(program.rstrip("\n").split("\n"))
    if MIN_LINES <= lines <= MAX_LINES and len(statement.split()) <= MAX_WORDS:
      return style_try, phrasing, statement, starter, program
  return None


def sample_spec(ops: dict[str, Op], split: str, difficulty: int | str,
                rng: random.Random, max_tries: int = 1000) -> Spec:
  """One problem of `split` (rejection sampling over compositions of a fixed depth).

  Level and depth are drawn first, so every split has the same mix of depths, except that
  held-out splits have no single-op problems (a single op has no pair to hold out).
  """
  family = composition_family(split)
  level = _level(difficulty, rng)
  depth = rng.randint(*LEVELS[level].depth)
  depth = depth if family == "train" else max(depth, 2)
  for _ in range(max_tries):
    comp = sample_composition(ops, depth, rng)
    if comp is None or composition_split(comp) != family:
      continue
    rendered = _render(comp, LEVELS[level], rng)
    inputs = choose_tests(comp, rng) if rendered else None
    if inputs is None:
      continue
    style, phrasing, statement, starter, program = rendered
    return Spec(comp, level, style, phrasing, statement, starter, program, tuple(inputs))
  raise RuntimeError(f"no valid synthetic problem for split {split!r} in {max_tries} tries")


def generate_specs(split: str, num_problems: int, seed: int = 0,
                   difficulty: int | str = "mixed") -> list[Spec]:
  """Deterministic for (split, seed, difficulty); the first k of n are the problems of k."""
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  difficulty = check_difficulty(difficulty)
  ops, specs, seen = build_ops(), [], set()
  for index in range(num_problems):
    rng = random.Random(f"synthetic-v{GENERATOR_VERSION}/{seed}/{split}/{difficulty}/{index}")
    for _ in range(MAX_DUPLICATES * (BUCKETS if split in IN_DISTRIBUTION else 1)):
      spec = sample_spec(ops, split, difficulty, rng)
      if spec.statement not in seen and _admissible(spec, split):
        break
    else:
      raise RuntimeError(f"synthetic {split} (difficulty {difficulty}): only {index} distinct "
                         f"problems found; ask for fewer than {num_problems}")
    seen.add(spec.statement)
    specs.append(spec)
  return specs


# ---- expected outputs -------------------------------------------------------------------------

def expected_from_evaluator(spec: Spec) -> list[Any]:
  """Expected outputs computed by the pure evaluator (a cross-check of the executed ones)."""
  answers = [spec.comp.evaluate(x) for x in spec.inputs]
  if spec.comp.io == "call":
    return answers
  return [stdout_text(spec.comp.out_type, a) for a in answers]


def test_inputs(spec: Spec) -> list[Any]:
  """Inputs in TestSuite form: stdin text, or the argument list of `solve`."""
  if spec.comp.io == "call":
    return [[x] for x in spec.inputs]
  return [stdin_text(spec.comp, x) for x in spec.inputs]


def run_references(specs: Sequence[Spec]) -> list[list[Any]]:
  """Expected outputs: each reference program executed on its inputs in a child process."""
  outcomes = execute([s.solution for s in specs], [s.comp.io for s in specs],
                     [test_inputs(s) for s in specs], timeout_s=TIMEOUT_S)
  results = []
  for spec, outs in zip(specs, outcomes):
    errors = [o["error"] for o in outs if "error" in o]
    if errors:
      raise RuntimeError(f"synthetic reference failed ({errors[0]}):\n{spec.solution}")
    results.append([o["ok"] for o in outs])
  return results


def to_problem(spec: Spec, outputs: Sequence[Any], split: str, tag: str, index: int) -> Problem:
  """`tag` names the generation run in the id, e.g. "mixed-0" (difficulty-seed)."""
  comp = spec.comp
  suite = TestSuite(kind=comp.io, inputs=tuple(test_inputs(spec)), outputs=tuple(outputs),
                    fn_name="solve" if comp.io == "call" else None, timeout_s=TIMEOUT_S,
                    match=MATCH)
  family = "words" if "split" in comp.op_names else comp.source
  metadata = {
      "composition": comp.op_names, "params": [dict(s.params) for s in comp.steps],
      "family": family, "difficulty": spec.level, "split": split, "solution": spec.solution,
      "style": spec.style, "phrasing": spec.phrasing, "io": comp.io, "source_type": comp.source,
      "input_format": comp.input_format, "raw_inputs": list(spec.inputs),
      "generator_version": GENERATOR_VERSION,
  }
  return Problem(id=f"synthetic/{split}/{tag}/{index}", source="synthetic",
                 prompt=spec.statement, starter_code=spec.starter, tests=suite,
                 entry_point=suite.fn_name, metadata=metadata)


def build_problems(specs: Sequence[Spec], split: str, seed: int,
                   difficulty: int | str = "mixed") -> list[Problem]:
  """Problems with outputs from executing each reference; they must match the evaluator."""
  executed = run_references(specs)
  problems = []
  for index, (spec, outputs) in enumerate(zip(specs, executed)):
    expected = expected_from_evaluator(spec)
    if outputs != expected:
      raise RuntimeError(f"synthetic reference disagrees with the evaluator: {spec.comp.op_names}"
                         f"\n{spec.solution}\nexecuted {outputs}\nexpected {expected}")
    problems.append(to_problem(spec, outputs, split, f"{difficulty}-{seed}", index))
  return problems


def composition_of(problem: Problem) -> Composition:
  """The composition a synthetic problem was generated from (rebuilt from its metadata)."""
  meta, ops = problem.metadata, build_ops()
  steps = tuple(Step(ops[name], params_tuple(p))
                for name, p in zip(meta["composition"], meta["params"]))
  return Composition(meta["io"], meta["source_type"], meta["input_format"], steps)


def drop_one_programs(problem: Problem) -> list[str]:
  """The reference with one type-preserving step left out (one program per droppable step)."""
  comp, out = composition_of(problem), []
  for i, step in enumerate(comp.steps):
    if step.op.in_type == step.op.out_type:
      out.append(render_program(comp.without(i), problem.metadata["style"])[1])
  return out


# ---- cache and public entry point --------------------------------------------------------------

def _cache_path(split: str, num: int, seed: int, difficulty: int | str) -> os.PathLike:
  key = json.dumps([GENERATOR_VERSION, MATCH, split, num, seed, str(difficulty)])
  folder = io.cache_dir() / "synthetic"
  folder.mkdir(parents=True, exist_ok=True)
  return folder / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.jsonl"


def problem_to_json(p: Problem) -> dict[str, Any]:
  return {"id": p.id, "source": p.source, "prompt": p.prompt, "starter_code": p.starter_code,
          "tests": p.tests.to_json(), "entry_point": p.entry_point, "metadata": dict(p.metadata)}


def problem_from_json(d: dict[str, Any]) -> Problem:
  return Problem(id=d["id"], source=d["source"], prompt=d["prompt"],
                 starter_code=d["starter_code"], tests=TestSuite.from_json(d["tests"]),
                 entry_point=d["entry_point"], metadata=d["metadata"])


def _write_jsonl(path, rows: Iterable[dict[str, Any]]) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")
  os.replace(tmp, path)


def load_synthetic(split: str, num_problems: int | None = None, seed: int = 0,
                   difficulty: int | str = "mixed", *, use_cache: bool = True,
                   verify: bool = True) -> list[Problem]:
  """The synthetic suite's `split` ("train" | "validation" | "test") as `Problem`s.

  `num_problems` defaults to DEFAULT_SIZES[split]. Generated problems are cached under
  `$RESTRL_CACHE/synthetic/` keyed by the generator version and the arguments. `verify`: also run
  every reference through the sandbox (`restrl_jax.execution`) and require full marks.
  """
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  difficulty = check_difficulty(difficulty)
  num = DEFAULT_SIZES[split] if num_problems is None else int(num_problems)
  if num < 0:
    raise ValueError(f"num_problems must be >= 0, got {num_problems}")
  path = _cache_path(split, num, seed, difficulty)
  if use_cache and os.path.isfile(path):
    with open(path, encoding="utf-8") as f:
      return [problem_from_json(json.loads(line)) for line in f if line.strip()]
  problems = build_problems(generate_specs(split, num, seed, difficulty), split, seed, difficulty)
  verify_in_sandbox(problems, required=verify)
  if use_cache:
    _write_jsonl(path, (problem_to_json(p) for p in problems))
  return problems


# ---- APPS export, tokenizer corpus, CLI --------------------------------------------------------

def to_apps_row(p: Problem) -> dict[str, Any]:
  spec: dict[str, Any] = {"inputs": list(p.tests.inputs), "outputs": list(p.tests.outputs)}
  if p.tests.kind == "call":
    spec["fn_name"] = p.tests.fn_name
  return {"problem_id": p.id, "question": p.prompt,
          "solutions": json.dumps([p.metadata["solution"]]), "input_output": json.dumps(spec),
          "starter_code": p.starter_code, "difficulty": "introductory", "url": "",
          "synthetic": {k: v for k, v in p.metadata.items() if k != "solution"}}


APPS_USER = ("Please provide a self-contained Python script using {fmt} format that solves the "
             "following problem in a markdown code block.\nProblem: ")
APPS_ASSISTANT = ("Below is a self-contained Python script that solves the problem and realizes "
                  "requested functionalities:\n```python\n")


def corpus_texts(io_kind: str, statement: str, solution: str) -> list[str]:
  """One problem as tokenizer training text: the prompt in the paper's wording, the answer."""
  fmt = "Call-Based" if io_kind == "call" else "Standard Input"
  return [APPS_USER.format(fmt=fmt) + statement, APPS_ASSISTANT + solution + "```\n"]


def tokenizer_corpus(problems: Iterable[Problem]) -> list[str]:
  """Texts to train the embedded tokenizer on, from problems."""
  return [t for p in problems
          for t in corpus_texts(p.tests.kind, p.prompt, p.metadata["solution"])]


def spec_corpus(split: str = "train", num_problems: int = 2000, seed: int = 0) -> list[str]:
  """Tokenizer training texts straight from generated specs (no execution needed)."""
  return [t for s in generate_specs(split, num_problems, seed)
          for t in corpus_texts(s.comp.io, s.statement, s.solution)]


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--split", default="train", choices=SPLITS)
  parser.add_argument("--num", type=int, default=None)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--difficulty", default="mixed")
  parser.add_argument("--verify", default="yes", choices=("yes", "no"),
                      help="also check every reference in the sandbox")
  parser.add_argument("--out", required=True, help="output .jsonl file (APPS schema)")
  args = parser.parse_args(argv)
  difficulty = check_difficulty(args.difficulty)
  verify = args.verify == "yes"
  problems = load_synthetic(args.split, args.num, args.seed, difficulty, verify=verify)
  _write_jsonl(args.out, (to_apps_row(p) for p in problems))
  print(f"wrote {len(problems)} {args.split} problems to {args.out}")


if __name__ == "__main__":
  main()
