"""Table 2 / budget-curve experiment: exact best-of-k, curve aggregation, ranking stats, resume."""
import dataclasses
import itertools
import json
import math

import numpy as np
import pytest

from restrl_jax.experiments import budget_curve as bc
from restrl_jax.experiments import table2


def brute_best_of_k(scores, rewards, k):
  """Every ordered draw of k distinct programs; the answer is the first best-scored one drawn
  (what `search.decode.best_of_n` does with its samples in sampling order)."""
  strict_sum, tca_sum, count = 0.0, 0.0, 0
  for draw in itertools.permutations(range(len(scores)), k):
    best = max(draw, key=lambda i: (scores[i], -draw.index(i)))
    strict_sum += rewards[best] > 0.999
    tca_sum += rewards[best]
    count += 1
  return strict_sum / count, tca_sum / count


@pytest.mark.parametrize("scores,rewards", [
    ([0.9, 0.1, 0.5, 0.3, 0.7, 0.2], [0.0, 1.0, 1.0, 0.5, 0.25, 1.0]),    # distinct scores
    ([0.5, 0.5, 0.2, 0.5, 0.9, 0.2], [1.0, 0.0, 1.0, 0.5, 0.0, 0.75]),    # ties at two levels
    ([0.3, 0.3, 0.3, 0.3, 0.3], [1.0, 0.0, 0.0, 1.0, 0.5]),               # all tied
])
def test_best_of_k_equals_brute_force_enumeration(scores, rewards):
  for k in range(1, len(scores) + 1):
    got = bc.best_of_k(scores, rewards, k)
    want = brute_best_of_k(scores, rewards, k)
    np.testing.assert_allclose(got, want, atol=1e-12, err_msg=f"k={k}")


def test_selection_probabilities_sum_to_one_and_edge_cases():
  rng = np.random.default_rng(0)
  scores = rng.integers(0, 5, size=40) / 4.0  # many ties
  for k in (1, 7, 40):
    p = bc.selection_probabilities(scores, k)
    assert p.sum() == pytest.approx(1.0, abs=1e-9)
  # k = N: the best-scored program(s) always win; k = 1: uniform
  np.testing.assert_allclose(bc.selection_probabilities([0.1, 0.8, 0.3], 3), [0, 1, 0])
  np.testing.assert_allclose(bc.selection_probabilities([0.1, 0.8, 0.3], 1), [1 / 3] * 3)
  with pytest.raises(ValueError, match="budget k=4"):
    bc.selection_probabilities([0.1, 0.2, 0.3], 4)
  with pytest.raises(ValueError, match="rewards shape"):
    bc.best_of_k([0.1, 0.2], [1.0], 1)


def test_pool_curves_sampling_is_flat_pass_at_1_and_best_of_n_at_pool_size_is_argmax():
  scores = [[0.2, 0.9, 0.4, 0.1], [0.5, 0.3, 0.6, 0.7]]
  rewards = [[1.0, 0.0, 1.0, 0.5], [0.0, 0.0, 1.0, 0.25]]
  out = bc.pool_curves(scores, rewards, (1, 2, 4))
  strict, tca = out["strict_accuracy"], out["test_case_average"]
  assert strict["sampling"] == {1: 0.375, 2: 0.375, 4: 0.375}
  assert tca["sampling"][4] == pytest.approx((2.5 / 4 + 1.25 / 4) / 2)
  assert strict["best_of_n"][1] == pytest.approx(strict["sampling"][1])  # k=1: one sample
  assert strict["best_of_n"][4] == 0.0           # argmax: rewards 0.0 and 0.25
  assert tca["best_of_n"][4] == pytest.approx((0.0 + 0.25) / 2)
  from restrl_jax.evaluation.metrics import pass_at_k
  for k in (1, 2, 4):  # the perfect verifier is pass@k
    want = np.mean([pass_at_k(4, sum(x > 0.999 for x in r), k) for r in rewards])
    assert strict["oracle"][k] == pytest.approx(want)
  assert tca["oracle"][4] == pytest.approx((1.0 + 1.0) / 2)
  with pytest.raises(ValueError, match="budget k=5"):
    bc.pool_curves(scores, rewards, (5,))


def test_aggregate_mean_and_sample_std_over_seeds():
  curves = [{"vm": {5: 0.2, 10: 0.4}, "s": {5: 0.1}},
            {"vm": {5: 0.4, 10: 0.5}, "s": {5: 0.3}},
            {"vm": {5: 0.3, 10: 0.6}}]
  agg = bc.aggregate(curves)
  assert agg["vm"][5] == pytest.approx((0.3, 0.1))
  assert agg["vm"][10] == pytest.approx((0.5, 0.1))
  assert agg["s"][5] == pytest.approx((0.2, math.sqrt(0.02)))  # over the 2 seeds that have it
  assert bc.aggregate([{"m": {1: 0.7}}])["m"][1] == (0.7, 0.0)
  with pytest.raises(ValueError, match="no curves"):
    bc.aggregate([])


def test_pool_ranking_perfect_reversed_and_constant_scorers():
  rewards = [[1.0, 0.0, 0.5, 1.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
  perfect = bc.pool_ranking(rewards, rewards)
  assert perfect["within_auc"] == 1.0 and perfect["problems_with_both"] == 2
  assert perfect["spearman_all"] == pytest.approx(1.0)
  reversed_ = bc.pool_ranking([[-x for x in r] for r in rewards], rewards)
  assert reversed_["within_auc"] == 0.0
  const = bc.pool_ranking([[0.5] * 4] * 3, rewards)
  assert const["within_auc"] == 0.5 and const["spearman_all"] == 0.0


def test_cached_cell_is_computed_once_and_a_failed_cell_leaves_nothing(tmp_path):
  calls = []

  def compute():
    calls.append(1)
    return {"rewards": [1.0, 0.0]}

  path = tmp_path / "cells" / table2.cell_name("base", "vm_mcts", 20)
  assert path.name == "base_vm_mcts_b20.json"
  assert table2.cached(path, compute) == {"rewards": [1.0, 0.0]}
  assert table2.cached(path, compute) == {"rewards": [1.0, 0.0]}
  assert len(calls) == 1 and json.loads(path.read_text()) == {"rewards": [1.0, 0.0]}

  def crash():
    raise RuntimeError("killed mid-cell")

  other = tmp_path / "cells" / "base_orm_mcts_b20.json"
  with pytest.raises(RuntimeError):
    table2.cached(other, crash)
  assert not other.exists()  # the re-run computes it again
  assert table2.cached(other, compute) == {"rewards": [1.0, 0.0]} and len(calls) == 2


def _seed_results(settings, shift):
  pool = {"scores": [[0.1, 0.9, 0.5], [0.4, 0.2, 0.3]],
          "rewards": [[0.0, 1.0, 0.5], [1.0, 0.0, 0.0]]}
  cells = {("base", "vm_mcts", 2): {"rewards": [1.0, shift]},
           ("base", "orm_mcts", 2): {"rewards": [0.5, 0.0]},
           ("rest", "vm_mcts", 2): {"rewards": [1.0, 1.0]}}
  return table2.seed_results(settings, pool, cells)


def test_seed_results_and_table_markdown():
  settings = table2.Settings(seeds=(0, 1), budget=2, pool_size=3, mcts_budgets=(2,))
  assert settings.curve_budgets == (1, 2)
  per_seed = [_seed_results(settings, 0.0), _seed_results(settings, 1.0)]
  r = per_seed[0]
  assert r["strict_accuracy"]["vm_mcts"] == {2: 0.5}
  assert r["strict_accuracy"]["rest_vm_mcts"] == {2: 1.0}
  assert r["test_case_average"]["orm_mcts"] == {2: 0.25}
  assert r["strict_accuracy"]["sampling"][2] == pytest.approx(1 / 3)
  # best-of-2 of problem 0: P(answer=1 (0.9)) = 2/3, P(answer=2) = 1/3 * ...; exact by brute force
  want = np.mean([brute_best_of_k([0.1, 0.9, 0.5], [0.0, 1.0, 0.5], 2)[0],
                  brute_best_of_k([0.4, 0.2, 0.3], [1.0, 0.0, 0.0], 2)[0]])
  assert r["strict_accuracy"]["best_of_n"][2] == pytest.approx(want)
  table = table2.table_markdown(per_seed, settings)
  assert "| VM-MCTS | 0.750 +- 0.354 | 0.750 +- 0.354 |" in table
  assert "| ReST-RL (ReST-GRPO policy + VM-MCTS) | 1.000 +- 0.000 |" in table
  agg = table2.curve_points(per_seed, "strict_accuracy")
  assert set(agg) == {"sampling", "best_of_n", "orm_mcts", "vm_mcts", "oracle"}  # no rest row
  assert agg["vm_mcts"][2] == pytest.approx((0.75, math.sqrt(0.125)))


def test_plot_curves_writes_a_png(tmp_path):
  pytest.importorskip("matplotlib")
  path = bc.plot_curves({"vm": {1: (0.2, 0.01), 10: (0.4, 0.05)}}, tmp_path / "c.png", "acc")
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_settings_and_command_line_checks():
  out, s, only = table2.parse_args(["--out", "x", "--seeds", "3,4", "--budget", "10",
                              "--mcts_budgets", "5,10", "--no_rest"])
  assert str(out) == "x" and s.seeds == (3, 4) and s.budget == 10 and not s.rest and not only
  assert s.all_mcts_budgets == (5, 10)
  with pytest.raises(ValueError, match="budget=200 exceeds pool_size=100"):
    table2.Settings(budget=200)
  with pytest.raises(ValueError, match="num_test must be >= 1"):
    table2.Settings(num_test=0)


def test_plan_runs_table2_cells_for_every_seed_before_the_curve():
  s = table2.Settings(seeds=(0, 1), budget=20, mcts_budgets=(5, 20, 50), pool_size=100)
  cells = table2.plan(s)
  assert cells[:6] == [(0, "base", "pool", 100), (0, "base", "orm_mcts", 20),
                       (0, "base", "vm_mcts", 20), (1, "base", "pool", 100),
                       (1, "base", "orm_mcts", 20), (1, "base", "vm_mcts", 20)]
  assert cells[6:8] == [(0, "rest", "vm_mcts", 20), (1, "rest", "vm_mcts", 20)]
  assert [c[3] for c in cells[8:]] == [5] * 4 + [50] * 4 and len(cells) == 16
  assert len(set(cells)) == len(cells)
  assert all(c[1] == "base" for c in table2.plan(dataclasses.replace(s, rest=False)))


def test_collect_results_reads_finished_cells_only(tmp_path):
  s = table2.Settings(seeds=(0, 1), budget=2, pool_size=3, mcts_budgets=(2,), rest=False)
  pool = {"scores": [[0.1, 0.9, 0.5]], "rewards": [[0.0, 1.0, 0.5]]}
  table2.cached(table2.cell_path(tmp_path, 0, "base", "pool", 3), lambda: pool)
  table2.cached(table2.cell_path(tmp_path, 0, "base", "vm_mcts", 2), lambda: {"rewards": [1.0]})
  table2.cached(table2.cell_path(tmp_path, 1, "base", "orm_mcts", 2), lambda: {"rewards": [0.0]})
  per_seed = table2.collect_results(tmp_path, s)
  assert [r["seed"] for r in per_seed] == [0, 1]
  assert per_seed[0]["strict_accuracy"]["vm_mcts"] == {2: 1.0}
  assert "ranking" in per_seed[0] and "ranking" not in per_seed[1]
  assert per_seed[1]["strict_accuracy"] == {"orm_mcts": {2: 0.0}}
  table = table2.write_outputs(tmp_path, s, per_seed)
  assert "| VM-MCTS | 1.000 +- 0.000 | 1.000 +- 0.000 | 1 |" in table
  assert (tmp_path / "table2.md").read_text() == table
  assert json.loads((tmp_path / "ranking.json").read_text())[0]["seed"] == 0


def test_search_prompts_continue_states_without_their_trailing_newline():
  from restrl_jax.search.lines import continuation, sampling_state
  root = "def solve(xs):\n"
  assert sampling_state(root, root) == root  # the root keeps the trained prompt boundary
  assert sampling_state(root + "  s = 0\n", root) == root + "  s = 0"
  assert sampling_state("a = 1\n\n", "") == "a = 1"
  state = "s = input()\nfor c in s:\n"
  assert continuation(state + "    print(c)", state) == "    print(c)"
  assert continuation(state[:-1], state) == ""           # stopped at the boundary
  assert continuation(state[:-1] + " pass", state) is None  # rewrote the state's last line


def test_dedupe_examples_averages_duplicates_per_problem():
  from restrl_jax.value.data import ValueExample, dedupe_examples
  ex = [ValueExample("a", 1.0, "p"), ValueExample("b", 0.0, "p"), ValueExample("a", 0.0, "p"),
        ValueExample("a", 1.0, "q")]
  assert dedupe_examples(ex) == [ValueExample("a", 0.5, "p"), ValueExample("b", 0.0, "p"),
                                 ValueExample("a", 1.0, "q")]
