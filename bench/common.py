"""Shared conventions of the benchmark scripts.

Every comparison prints one JSON line `{"bench", "ours", "peer", "unit", "ratio", ...}` (ratio > 1
means we are faster), is saved in `bench/results/<script>.json`, and appends a row with the
command that produced it to `docs/benchmarks.md`.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

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


def timeit_alternating(fns: dict[str, Callable[[], object]], repeats: int = 5,
                       warmup: int = 1) -> dict[str, float]:
  """Median seconds of each of `fns` over `repeats` rounds after `warmup` rounds; a round runs
  every function once, in turn, so a change of the machine's speed during the run (other
  tenants, clocks) reaches all of them alike instead of whichever ran in that stretch."""
  return {name: u.seconds for name, u in measure_alternating(fns, repeats, warmup).items()}


def median(xs):
  """The upper median (of an even count, the larger middle value)."""
  return sorted(xs)[len(xs) // 2]


class Usage(NamedTuple):
  """Medians per call: wall seconds, minor page faults, system CPU seconds (whole process)."""
  seconds: float
  minor_faults: int
  system_seconds: float


def measure_alternating(fns: dict[str, Callable[[], object]], repeats: int = 5,
                        warmup: int = 1) -> dict[str, Usage]:
  """`timeit_alternating` that also counts each call's minor page faults (memory the kernel
  maps and zeroes on first touch) and system CPU time, from `getrusage` around the call."""
  for _ in range(warmup):
    for fn in fns.values():
      fn()
  samples: dict[str, list[tuple[float, int, float]]] = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
      fn()
      seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
      samples[name].append((seconds, after.ru_minflt - before.ru_minflt,
                            after.ru_stime - before.ru_stime))
  return {name: Usage(*(median([x[i] for x in s]) for i in range(3)))
          for name, s in samples.items()}


def machine() -> str:
  return f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}"


class Report:
  """Collects comparisons of one script; `save()` writes the JSON file and the docs rows."""

  def __init__(self, script: str, results_name: str | None = None):
    self.script = script
    self.results_name = results_name or script  # bench/results/<results_name>.json
    self.rows: list[dict] = []
    self.command = "python " + " ".join([f"bench/{script}.py"] + sys.argv[1:])

  def add(self, bench: str, ours: float, peer: float, unit: str, higher_is_better: bool = True,
          **extra) -> dict:
    ratio = ours / peer if higher_is_better else peer / ours
    row = {"bench": bench, "ours": round(ours, 4), "peer": round(peer, 4), "unit": unit,
           "ratio": round(ratio, 3), **extra}
    print(json.dumps(row), flush=True)
    self.rows.append(row)
    return row

  def save(self) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"script": self.script, "command": self.command, "machine": machine(),
              "date": time.strftime("%Y-%m-%d %H:%M"), "rows": self.rows}
    (RESULTS / f"{self.results_name}.json").write_text(json.dumps(record, indent=2) + "\n")
    DOC.parent.mkdir(parents=True, exist_ok=True)
    if not DOC.exists():
      DOC.write_text("# Benchmarks\n\nRatios > 1 mean restrl_jax is faster than the peer, measured "
                     "in the same run on the same machine.\n\n| date | bench | ours | peer | unit "
                     "| ratio | machine | command |\n|---|---|---|---|---|---|---|---|\n")
    with open(DOC, "a", encoding="utf-8") as f:
      for r in self.rows:
        f.write(f"| {record['date']} | {r['bench']} | {r['ours']} | {r['peer']} | {r['unit']} | "
                f"{r['ratio']} | {record['machine']} | `{self.command}` |\n")
