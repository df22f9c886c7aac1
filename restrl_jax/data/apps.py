"""APPS (Hendrycks et al. 2021): codeparrot/apps rows or the original per-problem folders.

Row schema (codeparrot/apps): `problem_id`, `question`, `solutions` (JSON text of a list of
programs), `input_output` (JSON text `{"inputs", "outputs"[, "fn_name"]}`), `starter_code`,
`difficulty`, `url`. Folder layout: `<root>/<split>/<id>/question.txt, input_output.json,
solutions.json, starter_code.py, metadata.json`; each folder becomes the same row dict.

Problems with `fn_name` are call-based (`TestSuite(kind="call")`), the rest stdin/stdout.
"""
from __future__ import annotations

import json
import pathlib
from typing import Any, Iterator, Sequence

from restrl_jax.data import io
from restrl_jax.data.problem import Problem
from restrl_jax.execution.spec import TestSuite

DEFAULT_SOURCE = "codeparrot/apps"
REQUIRED = ("problem_id", "question", "input_output")
TIMEOUT_S = 4.0  # per test case, as in APPS' run_test


def load_apps(path: str | None = None, *, split: str = "test", limit: int | None = None,
              max_tests: int | None = None, difficulties: Sequence[str] | None = None,
              require_solutions: bool = True, timeout_s: float = TIMEOUT_S) -> list[Problem]:
  """APPS problems from a JSON-lines file, a folder tree, or a Hugging Face name; `timeout_s`
  limits each test case."""
  source = str(path or DEFAULT_SOURCE)
  rows = read_rows(source, split)
  if difficulties is not None:
    wanted = set(difficulties)
    rows = (r for r in rows if r.row.get("difficulty") in wanted)
  return io.convert_rows(
      rows, lambda r: _to_problem(r, max_tests, require_solutions, timeout_s), f"APPS {source}",
      limit)


def read_rows(source: str, split: str) -> Iterator[io.Located]:
  """Rows of a JSON-lines file, a folder tree (`<root>/<split>/<id>/...`) or a hub name."""
  path = pathlib.Path(source)
  if path.is_dir():
    root = path / split if (path / split).is_dir() else path
    return _folder_rows(root)
  if path.is_file() or not io.looks_like_hub_name(source):
    return io.read_file_rows(path)
  return io.read_hub_rows(source, split)


def _folder_rows(root: pathlib.Path) -> Iterator[io.Located]:
  folders = sorted(p for p in root.iterdir() if p.is_dir())
  if not folders:
    raise io.SchemaError(f"{root}: no problem folders (<split>/<id>/question.txt ...)")
  for folder in folders:
    yield io.Located(_folder_row(folder), f"{folder}")


def _read_optional(path: pathlib.Path, default: str = "") -> str:
  return path.read_text(encoding="utf-8") if path.is_file() else default


def _folder_row(folder: pathlib.Path) -> dict[str, Any]:
  if not (folder / "question.txt").is_file():
    raise io.SchemaError(f"{folder}: missing question.txt (not an APPS problem folder)")
  meta_text = _read_optional(folder / "metadata.json", "{}")
  try:
    meta = json.loads(meta_text)
  except json.JSONDecodeError as e:
    raise io.SchemaError(f"{folder}/metadata.json: not valid JSON ({e.msg})") from e
  name = folder.name
  return {
      "problem_id": int(name) if name.isdigit() else name,
      "question": (folder / "question.txt").read_text(encoding="utf-8"),
      "input_output": _read_optional(folder / "input_output.json"),
      "solutions": _read_optional(folder / "solutions.json", "[]"),
      "starter_code": _read_optional(folder / "starter_code.py"),
      "difficulty": meta.get("difficulty", ""),
      "url": meta.get("url", ""),
  }


def _tests(located: io.Located, max_tests: int | None, timeout_s: float) -> TestSuite:
  spec = io.decode_json_field(located, "input_output")
  if not isinstance(spec, dict) or "inputs" not in spec or "outputs" not in spec:
    raise io.MalformedRow("input_output has no 'inputs'/'outputs'")
  inputs, outputs = list(spec["inputs"]), list(spec["outputs"])
  if not inputs or len(inputs) != len(outputs):
    raise io.MalformedRow(f"input_output has {len(inputs)} inputs and {len(outputs)} outputs")
  inputs, outputs = inputs[:max_tests], outputs[:max_tests]
  fn_name = spec.get("fn_name")
  kind = "call" if fn_name else "stdio"
  return TestSuite(kind=kind, inputs=tuple(inputs), outputs=tuple(outputs), fn_name=fn_name,
                   timeout_s=timeout_s)


def _solutions(located: io.Located, required: bool) -> tuple[str, ...]:
  raw = located.row.get("solutions") or "[]"
  solutions = io.decode_json_field(io.Located({"solutions": raw}, located.file, located.number), "solutions")
  if not isinstance(solutions, list) or not all(isinstance(s, str) for s in solutions):
    raise io.MalformedRow("solutions is not a list of programs")
  if required and not solutions:
    raise io.MalformedRow("empty solution list")
  return tuple(solutions)


def _to_problem(located: io.Located, max_tests: int | None, require_solutions: bool,
                timeout_s: float) -> Problem:
  io.require(located, REQUIRED)
  row = located.row
  tests = _tests(located, max_tests, timeout_s)
  return Problem(
      id=f"apps/{row['problem_id']}",
      source="apps",
      prompt=row["question"],
      starter_code=row.get("starter_code") or "",
      tests=tests,
      entry_point=tests.fn_name,
      metadata={
          "problem_id": row["problem_id"],
          "difficulty": row.get("difficulty") or "",
          "url": row.get("url") or "",
          "solutions": list(_solutions(located, require_solutions)),
      },
  )
