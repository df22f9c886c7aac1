"""Acceptance: reference solutions pass (and broken ones fail) through the real sandbox pool."""
import collections

import pytest

from restrl_jax.data import io, registry
from restrl_jax.evaluation import runner
from restrl_jax.evaluation.samples import Sample, reference_samples
from restrl_jax.execution import ExecutionPool

DATA = io.shared_data_dir()
needs_data = pytest.mark.skipif(not (DATA / "mbpp.jsonl").is_file(),
                                reason=f"shared data not found at {DATA}")
# Wraps the reference so every return value is wrong but of the same kind.
BUG = """

_restrl_reference = {name}
def {name}(*args, **kwargs):
  out = _restrl_reference(*args, **kwargs)
  if isinstance(out, bool):
    return not out
  if isinstance(out, (int, float)):
    return out + 1
  if isinstance(out, str):
    return out + "x"
  if isinstance(out, (list, tuple)):
    return out + type(out)([None])
  return [out]
"""


@pytest.fixture(scope="module")
def pool():
  with ExecutionPool() as p:
    yield p


def _run(pool, problems, samples):
  return runner.run_samples(pool, {p.id: p for p in problems}, samples, progress=False)


def test_humaneval_canonical_pass_and_injected_bugs_fail(pool):
  problems = registry.load_problems("humaneval")
  assert len(problems) == 164
  results = _run(pool, problems, reference_samples(problems))
  assert [r.task_id for r in results if not r.passed] == []
  buggy = [Sample(p.id, p.solutions[0] + BUG.format(name=p.entry_point), True, {}, p.id)
           for p in problems]
  results = _run(pool, problems, buggy)
  assert [r.task_id for r in results if r.passed] == []
  summary = runner.summarize("humaneval", {p.id: p for p in problems}, results, (1,))
  assert summary["pass@1"] == 0.0 and summary["num_samples"] == 164


# Every MBPP reference passes in the sandbox (973/974 at the default 4 s per assert; mbpp/123
# needs more under load, hence the 20 s limit below).
MBPP_KNOWN: set[str] = set()


@needs_data
def test_mbpp_reference_solutions_pass(pool):
  problems = registry.load_problems("mbpp", timeout_s=20.0)
  assert len(problems) == 974
  results = _run(pool, problems, reference_samples(problems))
  failed = {r.task_id: collections.Counter(r.statuses) for r in results if not r.passed}
  unexpected = {k: v for k, v in failed.items() if k not in MBPP_KNOWN}
  assert unexpected == {}
  assert sum(r.passed for r in results) >= 974 - len(MBPP_KNOWN)


@needs_data
def test_apps_reference_solutions_pass_rate(pool):
  problems = registry.load_problems("apps", str(DATA / "apps_sample.jsonl"))
  results = _run(pool, problems, reference_samples(problems, 1))
  summary = runner.summarize("apps", {p.id: p for p in problems}, results, (1,))
  # With APPS' code() wrapper, 1553/1567 of all reference solutions pass; the misses are wrong
  # or outdated references (see docs/execution.md).
  assert summary["strict_accuracy"] >= 0.96
  assert summary["test_case_average"] >= summary["strict_accuracy"]


MBPPPLUS_KNOWN: set[str] = set()  # 399/399 references pass (full run, see docs/execution.md)


@needs_data
def test_mbppplus_reference_solutions_pass(pool, tmp_path, monkeypatch):
  monkeypatch.setenv("RESTRL_CACHE", str(tmp_path))
  problems = registry.load_problems("mbppplus", limit=40, max_tests=8)
  results = _run(pool, problems, reference_samples(problems))
  failed = {r.task_id for r in results if not r.passed} - MBPPPLUS_KNOWN
  assert failed == set()
  first = problems[0]
  wrong = Sample(first.id, "def similar_elements(a, b):\n  return tuple(set(a) | set(b))\n",
                 True, {}, "wrong")
  [result] = _run(pool, [first], [wrong])
  assert not result.passed and result.statuses.count("fail") >= 3
