"""Reading benchmark files: the helpers every loader shares.

A loader turns *rows* (dicts) into `Problem`s. This module finds the rows (local JSON lines, a JSON
list, gzip of either, or a Hugging Face data set name) and applies the two error rules of the
project:

  * a missing file, a row that is not JSON, or a file that is not the expected schema (a
    required field missing) stops with `SchemaError` (a `restrl_jax.errors.DataError`), naming
    the file, the row and the field; with a `bad_rows` list, `read_file_rows` collects the
    errors of undecodable rows there and goes on with the others;
  * a malformed row (no tests, an undecodable field, an empty solution list) is skipped: the
    converter raises `MalformedRow`, `convert_rows` emits a `SkippedRowWarning` naming the row and
    a final summary warning with the count.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import pathlib
import warnings
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from restrl_jax.errors import DataError

T = TypeVar("T")
Row = dict[str, Any]


class SchemaError(DataError):
  """The input is not the schema the loader expects (or not there, or not JSON)."""


class MalformedRow(ValueError):
  """One row cannot be used; the loader skips it with a warning."""


class SkippedRowWarning(UserWarning):
  """Emitted once per skipped row, and once more with the total count."""


@dataclasses.dataclass(frozen=True)
class Located:
  """A row plus where it came from, for error messages."""
  row: Row
  file: str                  # the file as given (or a folder, a data set name)
  number: int | None = None  # 1-based row (line of a JSON-lines file, item of a JSON list)

  @property
  def where(self) -> str:    # e.g. "data/apps_sample.jsonl row 17"
    return f"{self.file} row {self.number}" if self.number is not None else self.file

  def error(self, what: str) -> "SchemaError":
    return SchemaError(what, self.file, self.number)


def shared_data_dir() -> pathlib.Path:
  """`$RESTRL_SHARED_DATA`, else `<repo>/../shared/data`."""
  env = os.environ.get("RESTRL_SHARED_DATA")
  if env:
    return pathlib.Path(env)
  return pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"


def cache_dir() -> pathlib.Path:
  """`$RESTRL_CACHE`, else `~/.cache/restrl_jax` (created on demand)."""
  default = pathlib.Path.home() / ".cache" / "restrl_jax"
  path = pathlib.Path(os.environ.get("RESTRL_CACHE") or default)
  path.mkdir(parents=True, exist_ok=True)
  return path


def file_digest(path: str | os.PathLike) -> str:
  """SHA-256 of a file's bytes (cache key)."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def _open_text(path: pathlib.Path):
  if path.suffix == ".gz":
    return gzip.open(path, "rt", encoding="utf-8")
  return open(path, encoding="utf-8")


def _json_lines(path: pathlib.Path, bad_rows: list[DataError] | None) -> Iterator[Located]:
  with _open_text(path) as f:
    for number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError as e:
        yield from _bad(SchemaError(f"not valid JSON ({e.msg})", path, number), bad_rows)
        continue
      if not isinstance(row, dict):
        yield from _bad(SchemaError(f"expected a JSON object, got {type(row).__name__}", path,
                                    number), bad_rows)
        continue
      yield Located(row, str(path), number)


def _bad(error: DataError, bad_rows: list[DataError] | None) -> Iterator[Located]:
  """Raise `error`, or (with a `bad_rows` list) record it and yield nothing."""
  if bad_rows is None:
    raise error
  bad_rows.append(error)
  yield from ()


def _json_document(path: pathlib.Path, bad_rows: list[DataError] | None) -> Iterator[Located]:
  with _open_text(path) as f:
    try:
      data = json.load(f)
    except json.JSONDecodeError as e:
      raise SchemaError(f"not valid JSON ({e.msg})", path) from e
  if isinstance(data, dict):   # {task_id: row} mapping
    data = list(data.values())
  if not isinstance(data, list):
    raise SchemaError(f"expected a JSON list of objects, got {type(data).__name__}", path)
  for number, row in enumerate(data, start=1):
    if not isinstance(row, dict):
      yield from _bad(SchemaError("expected a JSON object", path, number), bad_rows)
      continue
    yield Located(row, str(path), number)


def read_file_rows(path: str | os.PathLike,
                   bad_rows: list[DataError] | None = None) -> Iterator[Located]:
  """Rows of a `.jsonl`/`.json` file (optionally `.gz`). A row that is not a JSON object raises
  `SchemaError`, or, given a `bad_rows` list, is recorded there and skipped."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise SchemaError("no such data file", path)
  stem = path.name[:-3] if path.name.endswith(".gz") else path.name
  if stem.endswith(".json"):
    return _json_document(path, bad_rows)
  return _json_lines(path, bad_rows)


def read_hub_rows(name: str, split: str, **kwargs) -> Iterator[Located]:
  """Rows of a Hugging Face data set (needs `datasets` and a network connection)."""
  try:
    import datasets  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError(
        f"{name!r} is not a local file, so it is read as a Hugging Face data set, which needs "
        "the `datasets` package (pip install datasets); or pass a local file path") from e
  try:
    data = datasets.load_dataset(name, split=split, **kwargs)
  except (ConnectionError, OSError) as e:
    raise ConnectionError(
        f"could not load Hugging Face data set {name!r} (split {split!r}); the machine may be "
        f"offline. Download it elsewhere and pass the local file. Cause: {e}") from e
  return (Located(dict(row), f"{name}[{split}]", i) for i, row in enumerate(data, start=1))


def looks_like_hub_name(name: str) -> bool:
  """`owner/name` with no local file of that name."""
  parts = str(name).split("/")
  return len(parts) == 2 and all(parts) and not os.path.exists(name)


def require(located: Located, fields: Sequence[str]) -> None:
  """Raise `SchemaError` naming the first missing field."""
  for field in fields:
    if field not in located.row:
      raise located.error(f"missing field {field!r} (has {sorted(located.row)}); "
                          "is this the right file for this loader?")


def decode_json_field(located: Located, field: str) -> Any:
  """A field that holds JSON text (APPS `input_output`, `solutions`); `MalformedRow` if not."""
  value = located.row[field]
  if not isinstance(value, str):
    return value
  if not value.strip():
    raise MalformedRow(f"field {field!r} is empty")
  try:
    return json.loads(value)
  except json.JSONDecodeError as e:
    raise MalformedRow(f"field {field!r} is not valid JSON ({e.msg})") from e


def convert_rows(rows: Iterable[Located], convert: Callable[[Located], T], label: str,
                 limit: int | None = None) -> list[T]:
  """Apply `convert` to each row, skipping `MalformedRow`s with warnings; stop after `limit`."""
  out: list[T] = []
  skipped = seen = 0
  for located in rows:
    if limit is not None and len(out) >= limit:
      break
    seen += 1
    try:
      out.append(convert(located))
    except MalformedRow as e:
      skipped += 1
      warnings.warn(f"{located.where}: skipped ({e})", SkippedRowWarning, stacklevel=2)
  if skipped:
    warnings.warn(f"{label}: skipped {skipped} malformed row(s) of {seen}", SkippedRowWarning,
                  stacklevel=2)
  return out


def warn_row(located: Located, message: str) -> None:
  """A warning about a row that is kept (e.g. some of its tests dropped)."""
  warnings.warn(f"{located.where}: {message}", SkippedRowWarning, stacklevel=2)
