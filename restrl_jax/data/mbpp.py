"""MBPP (Austin et al. 2021): `text`, `code`, `task_id`, `test_setup_code`, `test_list`,
`challenge_test_list`. Each assert statement is one test; the reference `code` (with `\\r\\n`
line breaks in the distributed file) is normalised to `\\n`.

The task text shown to the model is the MBPP prompt of the paper that introduced it: the
description followed by the tests the code should pass (`prompt_tests` of them).
"""
from __future__ import annotations

import re

from restrl_jax.data import io
from restrl_jax.data.problem import Problem
from restrl_jax.execution.spec import TestSuite

REQUIRED = ("task_id", "text", "code", "test_list")
TIMEOUT_S = 4.0
_DEF = re.compile(r"^def\s+(\w+)\s*\(", re.MULTILINE)


def default_path() -> str:
  return str(io.shared_data_dir() / "mbpp.jsonl")


def load_mbpp(path: str | None = None, *, split: str = "test", limit: int | None = None,
              include_challenge: bool = False, prompt_tests: int = 3,
              timeout_s: float = TIMEOUT_S) -> list[Problem]:
  """MBPP problems from a JSON-lines file (default: the shared copy) or a Hugging Face name;
  `timeout_s` limits each assert."""
  source = str(path or default_path())
  rows = (io.read_hub_rows(source, split) if io.looks_like_hub_name(source)
          else io.read_file_rows(source))
  return io.convert_rows(
      rows, lambda r: _to_problem(r, include_challenge, prompt_tests, timeout_s), f"MBPP {source}",
      limit)


def task_text(description: str, asserts: tuple[str, ...], prompt_tests: int) -> str:
  shown = asserts[:prompt_tests]
  if not shown:
    return description
  return description + "\nYour code should pass these tests:\n" + "\n".join(shown)


def entry_point_of(code: str, tests: str) -> str | None:
  """The first function defined by the reference that the tests call."""
  for name in _DEF.findall(code):
    if re.search(rf"\b{re.escape(name)}\s*\(", tests):
      return name
  return None


def _to_problem(located: io.Located, include_challenge: bool, prompt_tests: int,
                timeout_s: float) -> Problem:
  io.require(located, REQUIRED)
  row = located.row
  asserts = tuple(row["test_list"] or ())
  if include_challenge:
    asserts += tuple(row.get("challenge_test_list") or ())
  if not asserts:
    raise io.MalformedRow("no tests in test_list")
  code = row["code"].replace("\r\n", "\n")
  return Problem(
      id=f"mbpp/{row['task_id']}",
      source="mbpp",
      prompt=task_text(row["text"], tuple(row["test_list"] or ()), prompt_tests),
      starter_code="",
      tests=TestSuite(kind="assert", asserts=asserts, setup_code=row.get("test_setup_code") or "",
                      timeout_s=timeout_s),
      entry_point=entry_point_of(code, "\n".join(asserts)),
      metadata={"task_id": row["task_id"], "solutions": [code]},
  )
