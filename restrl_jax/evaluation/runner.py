"""Runs samples against their problems' tests and summarises the benchmark.

`run_samples` sends every program through an `ExecutionPool` (in chunks, so a progress bar can
follow long runs) and returns one `SampleResult` per sample, in order. `summarize` turns them into
pass@k (unbiased, over the problems that have samples), the APPS test-case average and strict
accuracy; for MBPP+ it adds the same for the MBPP base tests.
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
from collections import defaultdict
from typing import Any, Mapping, Sequence

from restrl_jax.data.problem import Problem
from restrl_jax.evaluation import metrics
from restrl_jax.evaluation.samples import Sample, program_of
from restrl_jax.execution.spec import ExecResult


@dataclasses.dataclass(frozen=True)
class SampleResult:
  task_id: str
  passed: bool                  # every test passed (strict)
  pass_fraction: float          # graded reward
  statuses: tuple[str, ...]
  isolation: str
  detail: str = ""

  @classmethod
  def of(cls, task_id: str, result: ExecResult) -> "SampleResult":
    return cls(task_id, result.strict, result.reward, result.statuses, result.isolation,
               result.detail)

  def to_json(self) -> dict[str, Any]:
    return {"passed": self.passed, "pass_fraction": self.pass_fraction,
            "statuses": list(self.statuses), "isolation": self.isolation, "detail": self.detail}


def _progress(total: int, enabled: bool):
  if not enabled:
    return None
  import tqdm  # pylint: disable=import-outside-toplevel
  return tqdm.tqdm(total=total, desc="evaluating", unit="sample")


def run_samples(pool: Any, problems: Mapping[str, Problem], samples: Sequence[Sample],
                progress: bool = True, extract: bool = False,
                chunk_size: int = 16) -> list[SampleResult]:
  """Execute every sample; results in sample order."""
  programs = [program_of(s, problems[s.task_id], extract) for s in samples]
  suites = [problems[s.task_id].tests for s in samples]
  starts = range(0, len(samples), chunk_size)
  futures = {pool.submit(programs[i:i + chunk_size], suites[i:i + chunk_size]): i for i in starts}
  results: list[ExecResult | None] = [None] * len(samples)
  bar = _progress(len(samples), progress and len(samples) > 1)
  for future in cf.as_completed(futures):
    start, chunk = futures[future], future.result()
    results[start:start + len(chunk)] = chunk
    if bar is not None:
      bar.update(len(chunk))
  if bar is not None:
    bar.close()
  return [SampleResult.of(s.task_id, r) for s, r in zip(samples, results)]


def _rewards(results: Sequence[SampleResult]) -> dict[str, list[float]]:
  rewards: dict[str, list[float]] = defaultdict(list)
  for r in results:
    rewards[r.task_id].append(r.pass_fraction)
  return dict(rewards)


def _scores(rewards: Mapping[str, Sequence[float]], ks: Sequence[int]) -> dict[str, float]:
  counts = [(len(r), sum(x > metrics.STRICT_THRESHOLD for x in r)) for r in rewards.values()]
  return {**metrics.mean_pass_at_k(counts, ks),
          "test_case_average": metrics.test_case_average(rewards),
          "strict_accuracy": metrics.strict_accuracy(rewards)}


def _base_results(problems: Mapping[str, Problem],
                  results: Sequence[SampleResult]) -> list[SampleResult]:
  """MBPP+ results restricted to the leading MBPP (base) tests."""
  out = []
  for r in results:
    base = r.statuses[:problems[r.task_id].metadata["num_base_tests"]]
    fraction = sum(s == "pass" for s in base) / len(base) if base else 0.0
    out.append(dataclasses.replace(r, statuses=base, pass_fraction=fraction,
                                   passed=bool(base) and fraction == 1.0))
  return out


def summarize(benchmark: str, problems: Mapping[str, Problem], results: Sequence[SampleResult],
              ks: Sequence[int] = (1, 10, 100)) -> dict[str, Any]:
  """The JSON summary printed by the CLI."""
  rewards = _rewards(results)
  summary: dict[str, Any] = {
      "benchmark": benchmark, "num_problems": len(problems),
      "num_problems_evaluated": len(rewards), "num_samples": len(results),
      **_scores(rewards, ks),
      "isolation": sorted({r.isolation for r in results}),
  }
  if results and all("num_base_tests" in problems[r.task_id].metadata for r in results):
    summary["base"] = _scores(_rewards(_base_results(problems, results)), ks)
  return summary
