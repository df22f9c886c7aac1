"""MBPP+ (EvalPlus, Liu et al. 2023): `task_id` ("Mbpp/<n>"), `prompt` (a docstring),
`entry_point`, `canonical_solution`, `base_input`, `plus_input`, `atol`, `assertion`.

Expected outputs are not in the file: as evalplus does, they come from running the canonical
solution (`prompt + canonical_solution`) on `base_input + plus_input`, here in child processes
(`reference_outputs`, cached on disk under `$RESTRL_CACHE`). Each test is one `assert` that calls
the candidate's function and compares with evalplus' rules (`mbppplus_oracle`, embedded in the
suite's `setup_code`, so types such as tuples and sets and the special oracles survive the trip
into the sandbox). `metadata["num_base_tests"]` tells how many leading tests are MBPP's own.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
from typing import Any, Sequence

from restrl_jax.data import io, json_codec, mbppplus_oracle, mbppplus_types, reference_outputs
from restrl_jax.data.problem import Problem
from restrl_jax.execution.spec import TestSuite

REQUIRED = ("task_id", "prompt", "entry_point", "canonical_solution", "base_input", "plus_input")
TIMEOUT_S = 4.0
TIME_FACTOR = 3.0  # a test's limit: max(TIMEOUT_S, TIME_FACTOR x the reference's slowest call)
# evalplus' special oracles by entry point, plus set-valued outputs compared without order.
ORACLE_MODES = {"check_str": "not_none", "text_match_three": "not_none",
                "text_starta_endb": "not_none", "are_equivalent": "always", "sum_div": "or_zero",
                "similar_elements": "unordered", "intersection_array": "unordered",
                "find_dissimilar": "unordered", "Diff": "unordered"}


def default_path() -> str:
  return str(io.shared_data_dir() / "mbppplus_evalplus_767efcc.jsonl")


@dataclasses.dataclass(frozen=True)
class _Parsed:
  where: str
  row: dict[str, Any]
  task: reference_outputs.ReferenceTask
  num_base: int


def load_mbppplus(path: str | None = None, *, split: str = "test", limit: int | None = None,
                  max_tests: int | None = None, reference_timeout_s: float = 60.0,
                  max_output_chars: int = 1_000_000) -> list[Problem]:
  """MBPP+ tasks with computed expected outputs; `max_tests` caps the tests per task. A test
  whose reference call overruns `reference_timeout_s` or returns more than `max_output_chars`
  (encoded) is dropped with a warning (Mbpp/255 and Mbpp/630 have outputs of 2-120 MB)."""
  source = str(path or default_path())
  rows = (io.read_hub_rows(source, split) if io.looks_like_hub_name(source)
          else io.read_file_rows(source))
  label = f"MBPP+ {source}"
  parsed = io.convert_rows(rows, lambda r: _parse(r, max_tests), label, limit)
  outcomes = reference_outputs.cached_outputs(
      "mbppplus", [p.task for p in parsed], timeout_s=reference_timeout_s,
      max_output_chars=max_output_chars)
  located = [io.Located({"parsed": p, "outcomes": o}, p.where) for p, o in zip(parsed, outcomes)]
  return io.convert_rows(located, _build, label)


def task_number(task_id: str) -> int:
  return int(str(task_id).rsplit("/", 1)[-1])


def _parse(located: io.Located, max_tests: int | None) -> _Parsed:
  io.require(located, REQUIRED)
  row = located.row
  number = task_number(row["task_id"])
  base = [mbppplus_types.restore_args(number, a) for a in input_list(located, "base_input")]
  plus = [mbppplus_types.restore_args(number, a) for a in input_list(located, "plus_input")]
  inputs = (base + plus)[:max_tests]
  if not inputs:
    raise io.MalformedRow("no test inputs")
  task = reference_outputs.ReferenceTask(
      program=row["prompt"] + row["canonical_solution"], fn_name=row["entry_point"],
      inputs=tuple(inputs), not_none=ORACLE_MODES.get(row["entry_point"]) == "not_none")
  return _Parsed(located.where, row, task, min(len(base), len(inputs)))


def input_list(located: io.Located, field: str) -> list[Any]:
  value = located.row[field]
  if not value:                # None, [] or {} (Mbpp/793 has `"plus_input": {}`)
    return []
  if not isinstance(value, list) or not all(isinstance(a, list) for a in value):
    raise io.MalformedRow(f"{field} is not a list of argument lists")
  return value


def task_text(prompt: str, assertion: str) -> str:
  """The docstring's text plus the first example assertion (which names the function)."""
  text = prompt.strip().strip("'\"").strip()
  first = next((l for l in assertion.splitlines() if l.strip().startswith("assert")), "")
  return f"{text}\n{first.strip()}" if first else text


def reference_cases(located: io.Located, task: reference_outputs.ReferenceTask,
                    outcomes: Sequence[dict[str, Any]], atol: float, mode: str
                    ) -> tuple[dict[str, Any], list[int]]:
  """(the oracle's cases, the indices of the inputs kept): the inputs on which the reference
  returned, with its outputs; the others are dropped with a warning naming the row."""
  keep = [i for i, o in enumerate(outcomes) if "ok" in o]
  if not keep:
    raise io.MalformedRow(f"reference solution fails on every input: {outcomes[0]['error']}")
  if len(keep) < len(outcomes):
    reasons = list(dict.fromkeys(o["error"] for o in outcomes if "error" in o))[:2]
    io.warn_row(located, f"dropped {len(outcomes) - len(keep)} test(s) where the reference "
                f"fails ({'; '.join(reasons)})")
  cases = {"inputs": [json_codec.encode(list(task.inputs[i])) for i in keep],
           "expected": [outcomes[i]["ok"] for i in keep], "atol": atol or 0, "mode": mode}
  return cases, keep


def _build(located: io.Located) -> Problem:
  parsed, outcomes = located.row["parsed"], located.row["outcomes"]
  row, task = parsed.row, parsed.task
  cases, keep = reference_cases(located, task, outcomes, row.get("atol") or 0,
                                ORACLE_MODES.get(row["entry_point"], ""))
  return Problem(
      id=row["task_id"],
      source="mbppplus",
      prompt=task_text(row["prompt"], row.get("assertion") or ""),
      starter_code="",
      tests=oracle_suite(row["entry_point"], cases, time_limit(outcomes)),
      entry_point=row["entry_point"],
      metadata={"solutions": [task.program],
                "num_base_tests": sum(1 for i in keep if i < parsed.num_base),
                "program_timeout_s": program_time_limit(outcomes)},
  )


def time_limit(outcomes: Sequence[dict[str, Any]]) -> float:
  slowest = max((o.get("seconds", 0.0) for o in outcomes if "ok" in o), default=0.0)
  return max(TIMEOUT_S, round(TIME_FACTOR * slowest, 1))


def program_time_limit(outcomes: Sequence[dict[str, Any]]) -> float:
  """evalplus' whole-run budget: the sum of per-test limits (at least 0.1 s each), plus 5 s."""
  return round(sum(max(0.1, TIME_FACTOR * o.get("seconds", 0.0)) for o in outcomes) + 5.0, 1)


def oracle_suite(entry_point: str, cases: dict[str, Any],
                 timeout_s: float = TIMEOUT_S) -> TestSuite:
  """An `assert` suite whose i-th statement checks `entry_point` on case i."""
  setup = "\n".join((
      "_restrl_values, _restrl_oracle_ns = {}, {}",
      f"exec({inspect.getsource(json_codec)!r}, _restrl_values)",
      f"exec({inspect.getsource(mbppplus_oracle)!r}, _restrl_oracle_ns)",
      f"_restrl_oracle = _restrl_oracle_ns['Oracle']({json.dumps(cases)!r}, "
      "_restrl_values['decode'])",
  ))
  asserts = tuple(f"assert _restrl_oracle.check({entry_point}, {i})"
                  for i in range(len(cases["inputs"])))
  return TestSuite(kind="assert", asserts=asserts, setup_code=setup, timeout_s=timeout_s)


def base_statuses(problem: Problem, statuses: Sequence[str]) -> Sequence[str]:
  """The statuses of the MBPP (base) tests of an MBPP+ problem."""
  return statuses[:problem.metadata.get("num_base_tests", len(statuses))]
