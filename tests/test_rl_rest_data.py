"""ReST-GRPO data assembly (restrl_jax/rl/rest_data.py) against docs/method.md §4.2."""
import math

import numpy as np
import pytest
from scipy import stats

from restrl_jax.data.prompts import first_token_end_at_or_after
from restrl_jax.rl import rest_data as rd

BEST = "a = 1\nb = 2\nc = 3\nprint(a + b + c)\n\n"      # 4 lines after rstrip


def every_character(problem_id, text):
  """Token ends of a tokenizer with one token per character: a "token" cut at a line's text end."""
  return range(1, len(text) + 1)


def _assemble(problems, cfg=rd.RestDataConfig(), rng=0):
  return rd.assemble(problems, cfg, rng, token_ends_of=every_character)


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
  assert rd.complete_state("# init\n", BEST) == states[-1]
  assert rd.line_text_ends("# init\n", BEST) == [len(s) - 1 for s in states]
  with pytest.raises(ValueError, match="state_end"):
    rd.prefix_states("# init\n", BEST, "line")
  with pytest.raises(ValueError, match="state_end"):
    rd.RestDataConfig(state_end="line")


PROGRAM = "def f(xs):\n    ys = []\n    return ys"     # 3 lines, no initial state
# token ends of its complete state (PROGRAM + "\n") for two kinds of BPE tokenizer:
LINE_END_MERGED = [3, 5, 8, 11, 14, 16, 17, 19, 23, 26, 33, 35, 36, 37]   # "):\n", " []\n", "\n"
INDENT_MERGED = [3, 5, 8, 10, 15, 17, 19, 22, 27, 33, 36, 37]             # "\n    " one token


def test_token_cut_includes_a_newline_merged_with_the_line_end():
  assert rd.prefix_states("", PROGRAM, "token", LINE_END_MERGED) == [
      "def f(xs):\n", "def f(xs):\n    ys = []\n", "def f(xs):\n    ys = []\n    return ys"]


def test_token_cut_excludes_a_newline_merged_with_the_next_indentation():
  assert rd.prefix_states("", PROGRAM, "token", INDENT_MERGED) == [
      "def f(xs):", "def f(xs):\n    ys = []", "def f(xs):\n    ys = []\n    return ys"]


def test_token_cut_needs_token_ends_that_reach_the_line():
  assert first_token_end_at_or_after([3, 5, 8], 5) == 5
  assert first_token_end_at_or_after([3, 5, 8], 6) == 8
  with pytest.raises(ValueError, match="no token ends at or after offset 9"):
    first_token_end_at_or_after([3, 5, 8], 9)
  with pytest.raises(ValueError, match="needs the token ends"):
    rd.prefix_states("", PROGRAM, "token")
  with pytest.raises(ValueError, match="needs token_ends_of"):
    rd.assemble([_problem([1.0, 0.0], (BEST, "pass\n"))], rd.RestDataConfig())
  # the paper's cut and problems without partial states need no token ends
  assert len(rd.assemble([_problem([1.0, 0.0], (BEST, "pass\n"))],
                         rd.RestDataConfig(state_end="newline"))) == 3
  assert rd.assemble([_problem([0.0, 0.5])], rd.RestDataConfig()) == [
      rd.RestRow("p", "# init\n", "original", 0)]


def test_token_ends_are_asked_for_the_complete_state_of_the_best_program():
  asked = []

  def token_ends_of(problem_id, text):
    asked.append((problem_id, text))
    return every_character(problem_id, text)

  rows = rd.assemble([_problem([0.0, 1.0], ("pass\n", BEST))], rd.RestDataConfig(mode="all"),
                     token_ends_of=token_ends_of)
  assert asked == [("p", rd.complete_state("# init\n", BEST))]
  assert [r.state for r in rows[1:]] == [s[:-1] for s in rd.prefix_states("# init\n", BEST,
                                                                           "newline")]


def test_std_filter_edges():
  assert np.std([0.0, 0.1]) == 0.05                      # exactly σ0 in float64
  assert rd.passes_filter([0.0, 0.1], 0.05)               # σ == σ0 is kept (drop iff σ < σ0)
  assert not rd.passes_filter([0.0, 0.09], 0.05)
  assert rd.passes_filter([0.0, 0.5], 0.25) and not rd.passes_filter([0.0, 0.5], 0.2500001)
  assert not rd.passes_filter([0.7] * 5, 0.05)            # all equal -> dropped
  assert not rd.passes_filter([], 0.05)
  assert rd.passes_filter([0.0, 1.0, 1.0, 1.0], 0.05)     # population std (ddof=0) = 0.433


def test_all_equal_rewards_drop_the_problem_entirely():
  rows = _assemble([_problem([1.0] * 5)])
  assert rows == []


def test_weak_best_keeps_only_the_original():
  rows = _assemble([_problem([0.0, 0.5, 0.2])])
  assert rows == [rd.RestRow("p", "# init\n", "original", 0)]


def test_ties_for_best_take_the_first_sample():
  samples = ("first = 1\n", "zero = 0\n", "second = 2\nmore = 3\n")
  assert rd.best_sample([1.0, 0.0, 1.0]) == 0
  cfg = rd.RestDataConfig(mode="all")
  rows = _assemble([_problem([1.0, 0.0, 1.0], samples)], cfg)
  assert [r.state for r in rows] == ["# init\n", "# init\nfirst = 1"]
  assert [(r.kind, r.prefix_lines) for r in rows] == [("original", 0), ("partial", 1)]


def test_best_at_exactly_r0_gets_partials():
  rows = _assemble([_problem([0.9, 0.0], (BEST, "pass\n"))], rng=1)
  assert [r.kind for r in rows] == ["original", "partial", "partial"]     # m = ceil(0.5*4) = 2
  assert all(r.state == rd.prefix_states("# init\n", BEST, "newline")[r.prefix_lines - 1][:-1]
             for r in rows[1:])


def test_modes_all_basic_and_fixed_count():
  problems = [_problem([1.0, 0.0], (BEST, "pass\n"), pid="a"), _problem([0.3] * 2, pid="b")]
  all_rows = _assemble(problems, rd.RestDataConfig(mode="all"))
  assert [(r.problem_id, r.prefix_lines) for r in all_rows] == [("a", 0), ("a", 1), ("a", 2),
                                                                ("a", 3), ("a", 4)]
  basic = _assemble(problems, rd.RestDataConfig(mode="basic"))
  assert [(r.problem_id, r.kind) for r in basic] == [("a", "original"), ("b", "original")]
  fixed = _assemble(problems, rd.RestDataConfig(beta=3), rng=0)
  assert sum(r.kind == "partial" for r in fixed) == 3
  assert rd.mode_from_flags(0.5, True) == "all"
  assert rd.mode_from_flags(0, False) == "basic" and rd.mode_from_flags(-1.0, False) == "basic"
  assert rd.mode_from_flags(0.5, False) == "sample"


def test_dedup_removes_repeated_prefixes():
  problem = _problem([1.0, 0.0], (BEST, "pass\n"))
  cfg = rd.RestDataConfig(beta=50, alpha=0.5)
  plain = _assemble([problem], cfg, rng=3)
  dedup = _assemble([problem], rd.RestDataConfig(beta=50, alpha=0.5, dedup=True), rng=3)
  assert len(plain) == 51 and len({r.prefix_lines for r in plain[1:]}) < 50
  assert [r.prefix_lines for r in dedup[1:]] == list(dict.fromkeys(r.prefix_lines
                                                                   for r in plain[1:]))


def test_seeded_draws_are_deterministic():
  problems = [_problem([1.0, 0.2, 0.0], (BEST * 3, "x\n", "y\n"), pid=str(i)) for i in range(5)]
  cfg = rd.RestDataConfig()
  assert _assemble(problems, cfg, rng=7) == _assemble(problems, cfg, rng=7)
  runs = {tuple(r.prefix_lines for r in _assemble(problems, cfg, rng=s)) for s in range(6)}
  assert len(runs) > 1


def test_drawn_prefix_lengths_follow_q():
  program = "\n".join(f"line{i}" for i in range(10))
  problem = _problem([1.0, 0.0], (program, "pass\n"))
  rows = _assemble([problem], rd.RestDataConfig(beta=20000, alpha=0.8), rng=11)
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
  rows = _assemble([_problem([1.0, 0.0], (BEST, "pass\n"))], rd.RestDataConfig(mode="all"))
  assert rd.summarize(rows) == {"rows": 5, "original": 1, "partial": 4, "problems": 1,
                                "mean_prefix_lines": 2.5}
