"""ReST-GRPO data assembly (restrl_jax/rl/rest_data.py) against docs/method.md §4.2."""
import math

import numpy as np
import pytest
from scipy import stats

from restrl_jax.rl import rest_data as rd

BEST = "a = 1\nb = 2\nc = 3\nprint(a + b + c)\n\n"      # 4 lines after rstrip


def _problem(rewards, samples=None, pid="p", init="# init\n"):
  samples = samples or tuple(f"x = {i}\n" for i in range(len(rewards)))
  return rd.ProblemSamples(pid, init, tuple(samples), tuple(rewards))


def test_pmf_matches_geometric_formula():
  q = rd.prefix_pmf(4, 0.95)
  expected = np.array([1, 0.95, 0.95**2, 0.95**3]) / (1 + 0.95 + 0.95**2 + 0.95**3)
  np.testing.assert_allclose(q, expected, rtol=1e-12)
  assert q.sum() == pytest.approx(1.0)
  np.testing.assert_allclose(rd.prefix_pmf(3, 1.0), [1 / 3] * 3)
  np.testing.assert_allclose(rd.prefix_pmf(1, 0.5), [1.0])


def test_number_of_draws():
  assert rd.num_partial_draws(4, 0.5) == 2
  assert rd.num_partial_draws(5, 0.5) == 3        # ceil(2.5)
  assert rd.num_partial_draws(1, 0.5) == 1
  assert rd.num_partial_draws(7, 1.0) == 7        # float 1.0 is a ratio
  assert rd.num_partial_draws(7, 1) == 1          # int 1 is a count
  assert rd.num_partial_draws(2, 3) == 3          # a count may exceed L (with replacement)
  for bad in (0, -1, 1.5, 0.0, True, "0.5"):
    with pytest.raises(ValueError, match="beta"):
      rd.num_partial_draws(4, bad)


def test_prefix_states_are_init_plus_whole_lines():
  states = rd.prefix_states("# init\n", BEST, "newline")      # the paper's P_k
  assert states == ["# init\na = 1\n", "# init\na = 1\nb = 2\n", "# init\na = 1\nb = 2\nc = 3\n",
                    "# init\na = 1\nb = 2\nc = 3\nprint(a + b + c)\n"]
  # default: the state stops before the newline, which the completion's first token carries
  assert rd.prefix_states("# init\n", BEST) == [s[:-1] for s in states]
  with pytest.raises(ValueError, match="state_end"):
    rd.prefix_states("# init\n", BEST, "line")
  with pytest.raises(ValueError, match="state_end"):
    rd.RestDataConfig(state_end="line")


def test_std_filter_edges():
  assert np.std([0.0, 0.1]) == 0.05                      # exactly σ0 in float64
  assert rd.passes_filter([0.0, 0.1], 0.05)               # σ == σ0 is kept (drop iff σ < σ0)
  assert not rd.passes_filter([0.0, 0.09], 0.05)
  assert rd.passes_filter([0.0, 0.5], 0.25) and not rd.passes_filter([0.0, 0.5], 0.2500001)
  assert not rd.passes_filter([0.7] * 5, 0.05)            # all equal -> dropped
  assert not rd.passes_filter([], 0.05)
  assert rd.passes_filter([0.0, 1.0, 1.0, 1.0], 0.05)     # population std (ddof=0) = 0.433


def test_all_equal_rewards_drop_the_problem_entirely():
  rows = rd.assemble([_problem([1.0] * 5)], rd.RestDataConfig())
  assert rows == []


def test_weak_best_keeps_only_the_original():
  rows = rd.assemble([_problem([0.0, 0.5, 0.2])], rd.RestDataConfig())
  assert rows == [rd.RestRow("p", "# init\n", "original", 0)]


def test_ties_for_best_take_the_first_sample():
  samples = ("first = 1\n", "zero = 0\n", "second = 2\nmore = 3\n")
  assert rd.best_sample([1.0, 0.0, 1.0]) == 0
  cfg = rd.RestDataConfig(mode="all")
  rows = rd.assemble([_problem([1.0, 0.0, 1.0], samples)], cfg)
  assert [r.state for r in rows] == ["# init\n", "# init\nfirst = 1"]
  assert [(r.kind, r.prefix_lines) for r in rows] == [("original", 0), ("partial", 1)]


def test_best_at_exactly_r0_gets_partials():
  rows = rd.assemble([_problem([0.9, 0.0], (BEST, "pass\n"))], rd.RestDataConfig(), rng=1)
  assert [r.kind for r in rows] == ["original", "partial", "partial"]     # m = ceil(0.5*4) = 2
  assert all(r.state == rd.prefix_states("# init\n", BEST)[r.prefix_lines - 1]
             for r in rows[1:])


def test_modes_all_basic_and_fixed_count():
  problems = [_problem([1.0, 0.0], (BEST, "pass\n"), pid="a"), _problem([0.3] * 2, pid="b")]
  all_rows = rd.assemble(problems, rd.RestDataConfig(mode="all"))
  assert [(r.problem_id, r.prefix_lines) for r in all_rows] == [("a", 0), ("a", 1), ("a", 2),
                                                                ("a", 3), ("a", 4)]
  basic = rd.assemble(problems, rd.RestDataConfig(mode="basic"))
  assert [(r.problem_id, r.kind) for r in basic] == [("a", "original"), ("b", "original")]
  fixed = rd.assemble(problems, rd.RestDataConfig(beta=3), rng=0)
  assert sum(r.kind == "partial" for r in fixed) == 3
  assert rd.mode_from_flags(0.5, True) == "all"
  assert rd.mode_from_flags(0, False) == "basic" and rd.mode_from_flags(-1.0, False) == "basic"
  assert rd.mode_from_flags(0.5, False) == "sample"


def test_dedup_removes_repeated_prefixes():
  problem = _problem([1.0, 0.0], (BEST, "pass\n"))
  cfg = rd.RestDataConfig(beta=50, alpha=0.5)
  plain = rd.assemble([problem], cfg, rng=3)
  dedup = rd.assemble([problem], rd.RestDataConfig(beta=50, alpha=0.5, dedup=True), rng=3)
  assert len(plain) == 51 and len({r.prefix_lines for r in plain[1:]}) < 50
  assert [r.prefix_lines for r in dedup[1:]] == list(dict.fromkeys(r.prefix_lines
                                                                   for r in plain[1:]))


def test_seeded_draws_are_deterministic():
  problems = [_problem([1.0, 0.2, 0.0], (BEST * 3, "x\n", "y\n"), pid=str(i)) for i in range(5)]
  cfg = rd.RestDataConfig()
  assert rd.assemble(problems, cfg, rng=7) == rd.assemble(problems, cfg, rng=7)
  runs = {tuple(r.prefix_lines for r in rd.assemble(problems, cfg, rng=s)) for s in range(6)}
  assert len(runs) > 1


def test_drawn_prefix_lengths_follow_q():
  program = "\n".join(f"line{i}" for i in range(10))
  problem = _problem([1.0, 0.0], (program, "pass\n"))
  rows = rd.assemble([problem], rd.RestDataConfig(beta=20000, alpha=0.8), rng=11)
  ks = np.array([r.prefix_lines for r in rows if r.kind == "partial"])
  counts = np.bincount(ks, minlength=11)[1:]
  q = rd.prefix_pmf(10, 0.8)
  assert stats.chisquare(counts, q * counts.sum()).pvalue > 1e-3
  np.testing.assert_allclose(counts / counts.sum(), q, atol=0.015)


def test_bad_inputs_are_named():
  with pytest.raises(ValueError, match="2 samples but 1 rewards"):
    rd.ProblemSamples("p", "", ("a", "b"), (1.0,))
  with pytest.raises(ValueError, match="finite"):
    rd.ProblemSamples("p", "", ("a",), (math.nan,))
  with pytest.raises(ValueError, match="mode"):
    rd.RestDataConfig(mode="greedy")
  with pytest.raises(ValueError, match="alpha"):
    rd.RestDataConfig(alpha=0.0)


def test_summary_counts():
  rows = rd.assemble([_problem([1.0, 0.0], (BEST, "pass\n"))], rd.RestDataConfig(mode="all"))
  assert rd.summarize(rows) == {"rows": 5, "original": 1, "partial": 4, "problems": 1,
                                "mean_prefix_lines": 2.5}
