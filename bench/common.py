"""Shared conventions of the benchmark scripts.

Every comparison prints one JSON line `{"bench", "ours", "peer", "unit", "ratio", ...}` (ratio > 1
means we are faster) and is saved in `bench/results/<script>.json`, which git ignores: a bench run
changes no tracked file. With `--update-docs` (`add_update_docs_flag`) it also puts a row with the
command that produced it into the table at the top of `docs/benchmarks.md`, replacing that bench's
earlier row, with the machine it ran on (cores, Python, the CPU's widest matmul instructions: this
workplace's machines differ in them from one session to the next, e.g. AMX or not, which moves
bf16 matmuls several-fold).

Comparisons whose sides disturb each other through the shared heap and thread pools run each side
alone in a child process (`run_child`, `emit_result`), the children in turn over rounds
(`in_rounds`).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from restrl_jax import io_utils

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "benchmarks.md"


def timeit(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
  """Median seconds of `fn()` over `repeats` runs after `warmup` runs."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  times.sort()
  return times[len(times) // 2]


def median(xs):
  """The upper median (of an even count, the larger middle value)."""
  return sorted(xs)[len(xs) // 2]


RESULT_PREFIX = "RESULT "

# /proc/cpuinfo flags, widest first, and the name a results row gives them
_ISA_FLAGS = (("amx_bf16", "AMX"), ("avx512_bf16", "AVX-512 BF16"), ("avx512f", "AVX-512"),
              ("avx2", "AVX2"))


def cpu_isa(cpuinfo: str | None = None) -> str:
  """The widest matmul instruction set the CPU reports ("AMX", "AVX-512 BF16", ...; "?" when
  /proc/cpuinfo is unreadable, e.g. not Linux)."""
  if cpuinfo is None:
    try:
      cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
      return "?"
  flags = set()
  for line in cpuinfo.splitlines():
    if line.startswith("flags"):
      flags.update(line.split(":", 1)[1].split())
  return next((name for flag, name in _ISA_FLAGS if flag in flags), "?")


def machine() -> str:
  return (f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}, "
          f"{cpu_isa()}")


def emit_result(result: dict) -> None:
  """A child's answer to `run_child`: one line on stdout."""
  print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_child(command: list[str], what: str, env: dict | None = None,
              timeout: float = 3600) -> dict:
  """Run `command` (a bench script in child mode) in a fresh process and return the dict of its
  last `emit_result` line; a failure raises with `what` and the child's stderr."""
  done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
  lines = [l for l in done.stdout.splitlines() if l.startswith(RESULT_PREFIX)]
  if done.returncode != 0 or not lines:
    raise RuntimeError(f"{what} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
  return json.loads(lines[-1].removeprefix(RESULT_PREFIX))


def in_rounds(tasks: dict[str, Callable[[], dict]], rounds: int) -> dict[str, list[dict]]:
  """Every task once per round, in turn (a slow stretch of the machine reaches all of them):
  {name: [one result per round]}."""
  results: dict[str, list[dict]] = {name: [] for name in tasks}
  for _ in range(rounds):
    for name, task in tasks.items():
      results[name].append(task())
  return results


def field_medians(results: list[dict], skip: tuple[str, ...] = ()) -> dict:
  """Each field's median (`median`) over `results` (one dict per round), fields in `skip` left out."""
  return {k: median([r[k] for r in results]) for k in results[0] if k not in skip}


UPDATE_DOCS = "--update-docs"


def add_update_docs_flag(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(UPDATE_DOCS, dest="update_docs", action="store_true",
                      help="also put the results into docs/benchmarks.md (default: only the "
                           "git-ignored bench/results/)")


def _bench_name(row: str) -> str | None:
  """The bench column of a results-table row ("| date | bench | ..."), None for another line."""
  cells = row.split("|")
  return cells[2].strip() if row.startswith("|") and len(cells) > 3 else None


def results_table(lines: list[str]) -> tuple[int, int] | None:
  """(first row, end) of the rows of the first table whose header starts with "| date | bench"
  (the results table at the top of docs/benchmarks.md), None when there is none."""
  header = next((i for i, l in enumerate(lines) if l.startswith("| date | bench")), None)
  if header is None:
    return None
  end = header + 2   # past the header and its |---| line
  while end < len(lines) and lines[end].startswith("|"):
    end += 1
  return header + 2, end


def results_rows(doc: str) -> list[str]:
  """The rows of `doc`'s results table (see `results_table`)."""
  lines = doc.splitlines()
  span = results_table(lines)
  return lines[span[0]:span[1]] if span else []


def _insert_rows(doc: str, rows: list[str]) -> str:
  """`doc` with `rows` in its results table (`results_table`): a row replaces the row of the
  same bench there, the others go to the table's end; at the end of `doc` when it has none."""
  lines = doc.splitlines(keepends=True)
  span = results_table(lines)
  if span is None:
    return doc + "".join(rows)
  first, end = span
  table = lines[first:end]
  new = {_bench_name(r): r for r in rows}
  kept = [new.pop(_bench_name(l), l) for l in table]
  return "".join(lines[:first] + kept + list(new.values()) + lines[end:])


class Report:
  """Collects comparisons of one script; `save()` writes the JSON file and the docs rows."""

  def __init__(self, script: str, results_name: str | None = None):
    self.script = script
    self.results_name = results_name or script  # bench/results/<results_name>.json
    self.rows: list[dict] = []
    self.blocks: list[tuple[str, str, str]] = []   # (begin marker, end marker, body) for docs
    args = [a for a in sys.argv[1:] if a != UPDATE_DOCS]
    self.command = "python " + " ".join([f"bench/{script}.py"] + args)

  def add(self, bench: str, ours: float, peer: float, unit: str, higher_is_better: bool = True,
          **extra) -> dict:
    ratio = ours / peer if higher_is_better else peer / ours
    row = {"bench": bench, "ours": round(ours, 4), "peer": round(peer, 4), "unit": unit,
           "ratio": round(ratio, 3), **extra}
    print(json.dumps(row), flush=True)
    self.rows.append(row)
    return row

  def add_block(self, begin: str, end: str, body: str) -> None:
    """A generated block of docs/benchmarks.md (between its marker lines) that `save` writes
    beside the rows with `update_docs`."""
    self.blocks.append((begin, end, body))

  def save(self, update_docs: bool = False, machine_name: str | None = None,
           date: str | None = None) -> None:
    """Writes bench/results/<results_name>.json; with `update_docs` also the rows of
    docs/benchmarks.md (the only tracked file a bench run changes, and only when asked).
    `machine_name` / `date`: those of a run made elsewhere (default: this machine, now)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"script": self.script, "command": self.command,
              "machine": machine_name or machine(),
              "date": date or time.strftime("%Y-%m-%d %H:%M"), "rows": self.rows}
    (RESULTS / f"{self.results_name}.json").write_text(json.dumps(record, indent=2) + "\n")
    if not update_docs:
      return
    DOC.parent.mkdir(parents=True, exist_ok=True)
    if not DOC.exists():
      DOC.write_text("# Benchmarks\n\nRatios > 1 mean restrl_jax is faster than the peer, measured "
                     "in the same run on the same machine.\n\n| date | bench | ours | peer | unit "
                     "| ratio | machine | command |\n|---|---|---|---|---|---|---|---|\n")
    rows = [f"| {record['date']} | {r['bench']} | {r['ours']} | {r['peer']} | {r['unit']} | "
            f"{r['ratio']} | {record['machine']} | `{self.command}` |\n" for r in self.rows]
    from bench import targets  # pylint: disable=import-outside-toplevel
    doc = _insert_rows(DOC.read_text(encoding="utf-8"), rows)
    for begin, end, body in self.blocks:
      doc = io_utils.replace_marked_block(doc, begin, end, body, append=True)
    DOC.write_text(targets.update(doc), encoding="utf-8")
