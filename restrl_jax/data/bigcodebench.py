"""BigCodeBench (Zhuo et al. 2024): `task_id`, `instruct_prompt`, `code_prompt`, `test`
(`unittest.TestCase` classes), `entry_point`; optional `canonical_solution` (the body that follows
`code_prompt`), `complete_prompt`, `libs`. Accepts the JSON list of the original ReST-RL repo, JSON
lines, or a Hugging Face name (`bigcode/bigcodebench`, split = version such as "v0.1.4").

As in the paper, the task text is `instruct_prompt` and the initial state is `code_prompt`.
"""
from __future__ import annotations

from restrl_jax.data import io
from restrl_jax.data.problem import Problem
from restrl_jax.execution.spec import TestSuite

DEFAULT_SOURCE = "bigcode/bigcodebench"
REQUIRED = ("task_id", "instruct_prompt", "code_prompt", "test", "entry_point")
TIMEOUT_S = 60.0  # BigCodeBench's whole-program limit


def load_bigcodebench(path: str | None = None, *, split: str = "v0.1.4",
                      limit: int | None = None) -> list[Problem]:
  """BigCodeBench tasks from a local JSON/JSON-lines file or a Hugging Face name."""
  source = str(path or DEFAULT_SOURCE)
  rows = (io.read_hub_rows(source, split) if io.looks_like_hub_name(source)
          else io.read_file_rows(source))
  return io.convert_rows(rows, _to_problem, f"BigCodeBench {source}", limit)


def _to_problem(located: io.Located) -> Problem:
  io.require(located, REQUIRED)
  row = located.row
  if not (row["test"] or "").strip():
    raise io.MalformedRow("empty test")
  body = row.get("canonical_solution")
  libs = row.get("libs") or ()
  return Problem(
      id=row["task_id"],
      source="bigcodebench",
      prompt=row["instruct_prompt"],
      starter_code=row["code_prompt"],
      tests=TestSuite(kind="unittest", source=row["test"], entry_point=row["entry_point"],
                      timeout_s=TIMEOUT_S),
      entry_point=row["entry_point"],
      metadata={"libs": list(libs) if isinstance(libs, (list, tuple)) else libs,
                "solutions": [row["code_prompt"] + body] if body else []},
  )
