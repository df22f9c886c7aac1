"""Crash-safe writes: a file goes to a temporary file in the same folder, then is renamed over
the target; a folder is filled under a temporary name, then swapped in (`atomic_dir`). Appended
JSON-lines files (metrics, records) may end in a torn line after a crash: `read_jsonl` ignores
it and `trim_jsonl` rewrites the file whole.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from restrl_jax import crash_points


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
  atomic_write_lines(path, (text,))


def atomic_write_lines(path: str | os.PathLike, chunks: Iterable[str]) -> None:
  """Write the concatenated `chunks` (streamed, e.g. the lines of a large JSON-lines file)."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):  # left by a crash
    stale.unlink(missing_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      for chunk in chunks:
        f.write(chunk)
      f.flush()
      os.fsync(f.fileno())
    crash_points.reached("atomic_write", path)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
  atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def replace_marked_block(text: str, begin: str, end: str, body: str,
                         append: bool = False) -> str:
  """`text` with what lies between its marker lines `begin` and `end` replaced by `body` (a
  newline-terminated block, e.g. a generated table); a text without both markers gets the block
  appended with `append`, else ValueError."""
  if begin not in text or end not in text:
    if not append:
      raise ValueError(f"no {begin} ... {end} block")
    return text.rstrip("\n") + f"\n\n{begin}\n{body}{end}\n"
  head, rest = text.split(begin, 1)
  return head + begin + "\n" + body + end + rest.split(end, 1)[1]


def read_jsonl(path: str | os.PathLike) -> list[dict]:
  """All complete records of a JSON-lines file; a torn last line (crash mid-write) is ignored."""
  records = []
  with open(path, encoding="utf-8") as f:
    lines = f.read().split("\n")
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      if i == len(lines) - 1:  # torn final line: written partially before a crash
        break
      raise ValueError(f"{path}: line {i + 1} is not valid JSON")
  return records


def append_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> None:
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "a", encoding="utf-8") as f:
    for record in records:
      f.write(json.dumps(record, default=str) + "\n")
    f.flush()
    os.fsync(f.fileno())


def trim_jsonl(path: str | os.PathLike, last_step: int) -> None:
  """Keep the records with `step` <= `last_step` (a resumed run writes the later ones again),
  dropping a torn last line."""
  path = Path(path)
  if path.exists():
    kept = [r for r in read_jsonl(path) if r.get("step", 0) <= last_step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def _aside(path: Path) -> Path:
  return path.with_name(path.name + ".old")


def staging_dir(path: str | os.PathLike) -> Path:
  """The temporary folder `atomic_dir` fills before it replaces `path`."""
  path = Path(path)
  return path.with_name(path.name + ".tmp")


def recover_dir(path: str | os.PathLike) -> None:
  """Put back the previous folder that `atomic_dir` moved aside, when a crash came before the
  new one was in place."""
  path = Path(path)
  if not path.exists() and _aside(path).exists():
    _aside(path).rename(path)


def begin_atomic_dir(path: str | os.PathLike) -> Path:
  """The first half of `atomic_dir`: an empty `staging_dir(path)` (leftovers of an earlier
  attempt removed, a folder moved aside put back) -> that folder."""
  path = Path(path)
  recover_dir(path)
  tmp = staging_dir(path)
  shutil.rmtree(tmp, ignore_errors=True)
  shutil.rmtree(_aside(path), ignore_errors=True)
  tmp.mkdir(parents=True)
  return tmp


def commit_atomic_dir(path: str | os.PathLike) -> None:
  """The second half of `atomic_dir`: the filled temporary folder replaces `path`."""
  path = Path(path)
  crash_points.reached("atomic_dir", path)
  if path.exists():
    path.rename(_aside(path))
  staging_dir(path).rename(path)
  shutil.rmtree(_aside(path), ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
  """Yields an empty temporary folder to fill; on success it replaces `path` (the old folder is
  moved aside, the new one renamed in, the old one removed), so a crash leaves the old folder
  (back in place after `recover_dir`) or the new one, never a part. (Its two halves,
  `begin_atomic_dir` and `commit_atomic_dir`, let several processes fill one folder.)"""
  tmp = begin_atomic_dir(path)
  yield tmp
  commit_atomic_dir(path)
