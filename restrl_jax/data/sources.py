"""Rows of a benchmark as its public source publishes it, for `restrl_jax.data.prepare`.

A source is one of:

  * a file: JSON lines or a JSON list (`.jsonl`, `.json`, either `.gz`; `io.read_file_rows`),
    or a parquet file (the Hugging Face data set viewer's conversion);
  * a folder downloaded from the Hugging Face hub: the files of the wanted split, named
    `<split>.jsonl` / `<split>-00000-of-00002.parquet` ... (codeparrot/apps has `train.jsonl`
    and `test.jsonl`), or the folder's only data file;
  * a folder written by `datasets.save_to_disk` (a `DatasetDict` holding the split, or one
    `Dataset`);
  * for APPS, the original per-problem tree `<root>/<split>/<id>/question.txt ...`;
  * a Hugging Face data set name (`owner/name`; needs `datasets` and a network connection).

Every row comes with where it was read (`io.Located`), so later errors name file and row.
"""
from __future__ import annotations

import pathlib
from typing import Iterator, Sequence

from restrl_jax.data import apps, io
from restrl_jax.errors import DataError

DATA_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".parquet")
SAVED_DATASET_MARKERS = ("dataset_dict.json", "state.json")


def _data_files(folder: pathlib.Path) -> list[pathlib.Path]:
  """Data files anywhere under `folder`, hidden ones (`.cache/`, `.gitattributes`) left out."""
  return sorted(p for p in folder.rglob("*")
                if p.is_file() and p.name.endswith(DATA_SUFFIXES)
                and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _stem(path: pathlib.Path) -> str:
  name = path.name
  for suffix in sorted(DATA_SUFFIXES, key=len, reverse=True):
    if name.endswith(suffix):
      return name[:-len(suffix)]
  return name


def _of_split(path: pathlib.Path, split: str) -> bool:
  """`test.jsonl`, `test-00000-of-00001.parquet`, `test_0.json` ... hold split `test`."""
  stem = _stem(path)
  return stem == split or stem.startswith((split + "-", split + "_"))


def read_rows(source: str, split: str, benchmark: str) -> Iterator[io.Located]:
  """The rows of split `split` of `source` (see the module docstring)."""
  path = pathlib.Path(source).expanduser()
  if path.is_file():
    return file_rows(path)
  if path.is_dir():
    return folder_rows(path, split, benchmark)
  if io.looks_like_hub_name(source):
    return io.read_hub_rows(source, split)
  raise io.SchemaError("no such file or folder", path)


def file_rows(path: pathlib.Path) -> Iterator[io.Located]:
  if path.name.endswith(".parquet"):
    return parquet_rows(path)
  return io.read_file_rows(path)


def parquet_rows(path: pathlib.Path) -> Iterator[io.Located]:
  try:
    import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError(f"{path}: reading parquet needs pyarrow (pip install pyarrow, or "
                      "datasets which brings it); or pass the JSON-lines file") from e
  number = 0
  for batch in pq.ParquetFile(path).iter_batches():
    for row in batch.to_pylist():
      number += 1
      yield io.Located(row, str(path), number)


def saved_dataset_rows(folder: pathlib.Path, split: str) -> Iterator[io.Located]:
  """Rows of a `datasets.save_to_disk` folder (a DatasetDict's `split`, or a single Dataset)."""
  try:
    import datasets  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError(f"{folder} was written by datasets.save_to_disk; reading it needs the "
                      "`datasets` package (pip install datasets)") from e
  data = datasets.load_from_disk(str(folder))
  if isinstance(data, datasets.DatasetDict):
    if split not in data:
      raise io.SchemaError(f"the saved DatasetDict has splits {sorted(data)}, not {split!r}",
                           folder)
    data = data[split]
  where = f"{folder}[{split}]"
  return (io.Located(dict(row), where, i) for i, row in enumerate(data, start=1))


def _is_apps_tree(folder: pathlib.Path, split: str) -> bool:
  root = folder / split if (folder / split).is_dir() else folder
  return any((child / "question.txt").is_file() for child in root.iterdir() if child.is_dir())


def _chain(files: Sequence[pathlib.Path]) -> Iterator[io.Located]:
  for file in files:
    yield from file_rows(file)


def folder_rows(folder: pathlib.Path, split: str, benchmark: str) -> Iterator[io.Located]:
  """Rows of a hub snapshot, a `save_to_disk` folder or (APPS) the per-problem tree."""
  if any((folder / marker).is_file() for marker in SAVED_DATASET_MARKERS):
    return saved_dataset_rows(folder, split)
  if benchmark == "apps" and _is_apps_tree(folder, split):
    return apps.read_rows(str(folder), split)
  files = _data_files(folder)
  chosen = [p for p in files if _of_split(p, split)] or (files if len(files) == 1 else [])
  if not chosen:
    found = ", ".join(str(p.relative_to(folder)) for p in files[:8]) or "no data files"
    raise DataError(f"no file of split {split!r} ({split}.jsonl, {split}-*.parquet, ...) in "
                    f"this folder (found: {found}); pass the file itself", folder)
  parents = sorted({str(p.parent.relative_to(folder)) for p in chosen})
  if len(parents) > 1:
    raise DataError(f"split {split!r} has files in several subfolders ({', '.join(parents)}); "
                    "pass the one you mean", folder)
  return _chain(chosen)
