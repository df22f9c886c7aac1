"""Crash-safe file writes: write to a temporary file in the same folder, then rename."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
  atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


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
