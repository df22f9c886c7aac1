"""HumanEval+ (EvalPlus, Liu et al. 2023): evalplus' `HumanEvalPlus.jsonl` rows, `task_id`
("HumanEval/<n>"), `prompt` (signature + docstring), `entry_point`, `canonical_solution` (the
body), `base_input`, `plus_input`, `atol`.

As for HumanEval, the prompt is both the task text and the initial program state, so a completion
is appended to it. As for MBPP+ (`mbppplus`, whose machinery this reuses), expected outputs come
from running `prompt + canonical_solution` on `base_input + plus_input` in child processes
(cached under `$RESTRL_CACHE`), and each test is one `assert` comparing the candidate's result
with evalplus' rules (exact, or numeric closeness for floats and a task `atol`).
`metadata["num_base_tests"]` tells how many leading tests are HumanEval's own. Not reproduced:
evalplus' special oracle of HumanEval/32 (`find_zero`, checked by |poly(x)| <= 1e-6), scored here
by closeness to the reference root, and its per-task input restorations (JSON inputs are used as
decoded).
"""
from __future__ import annotations

from typing import Any

from restrl_jax.data import io, mbppplus, reference_outputs
from restrl_jax.data.problem import Problem

REQUIRED = mbppplus.REQUIRED


def load_humanevalplus(path: str | None = None, *, split: str = "test",
                       limit: int | None = None, max_tests: int | None = None,
                       reference_timeout_s: float = 60.0,
                       max_output_chars: int = 1_000_000) -> list[Problem]:
  """HumanEval+ tasks with computed expected outputs from a local JSON(-lines) file or a Hugging
  Face name (`evalplus/humanevalplus`); `max_tests` caps the tests per task."""
  if path is None:
    raise ValueError("HumanEval+ has no bundled copy: pass the path of HumanEvalPlus.jsonl(.gz) "
                     "(or a data root's humanevalplus/test.jsonl)")
  source = str(path)
  rows = (io.read_hub_rows(source, split) if io.looks_like_hub_name(source)
          else io.read_file_rows(source))
  label = f"HumanEval+ {source}"
  parsed = io.convert_rows(rows, lambda r: _parse(r, max_tests), label, limit)
  outcomes = reference_outputs.cached_outputs(
      "humanevalplus", [task for _, task, _ in parsed], timeout_s=reference_timeout_s,
      max_output_chars=max_output_chars)
  located = [io.Located({"parsed": p, "outcomes": o}, p[0].where)
             for p, o in zip(parsed, outcomes)]
  return io.convert_rows(located, _build, label)


def _parse(located: io.Located, max_tests: int | None
           ) -> tuple[io.Located, reference_outputs.ReferenceTask, int]:
  io.require(located, REQUIRED)
  row = located.row
  base = mbppplus.input_list(located, "base_input")
  inputs = (base + mbppplus.input_list(located, "plus_input"))[:max_tests]
  if not inputs:
    raise io.MalformedRow("no test inputs")
  task = reference_outputs.ReferenceTask(
      program=row["prompt"] + row["canonical_solution"], fn_name=row["entry_point"],
      inputs=tuple(inputs))
  return located, task, min(len(base), len(inputs))


def _build(located: io.Located) -> Problem:
  (source, task, num_base), outcomes = located.row["parsed"], located.row["outcomes"]
  row: dict[str, Any] = source.row
  cases, keep = mbppplus.reference_cases(source, task, outcomes, row.get("atol") or 0, "")
  return Problem(
      id=row["task_id"],
      source="humanevalplus",
      prompt=row["prompt"],
      starter_code=row["prompt"],
      tests=mbppplus.oracle_suite(row["entry_point"], cases, mbppplus.time_limit(outcomes)),
      entry_point=row["entry_point"],
      metadata={"solutions": [task.program],
                "num_base_tests": sum(1 for i in keep if i < num_base),
                "program_timeout_s": mbppplus.program_time_limit(outcomes)},
  )
