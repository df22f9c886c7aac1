"""Table 2 / budget-curve experiment: exact best-of-k, curve aggregation, ranking stats, resume."""
import dataclasses
import itertools
import json
import math

import numpy as np
import pytest

from docs_check import REPO, assert_report_regenerates_docs  # tests/ is on sys.path
from experiments import budget_curve as bc
from experiments import table2
from restrl_jax.evaluation.metrics import within_problem_auc


def brute_best_of_k(scores, rewards, k):
  """Every ordered draw of k distinct programs; the answer is the first best-scored one drawn
  (what `search.answer_selection.best_of_n` does with its samples in sampling order)."""
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

  path = tmp_path / "cells" / "vm_mcts_b20.json"
  assert table2.cached(path, compute) == {"rewards": [1.0, 0.0]}
  assert table2.cached(path, compute) == {"rewards": [1.0, 0.0]}
  assert len(calls) == 1 and json.loads(path.read_text()) == {"rewards": [1.0, 0.0]}

  def crash():
    raise RuntimeError("killed mid-cell")

  other = tmp_path / "cells" / "orm_mcts_b20.json"
  with pytest.raises(RuntimeError):
    table2.cached(other, crash)
  assert not other.exists()  # the re-run computes it again
  assert table2.cached(other, compute) == {"rewards": [1.0, 0.0]} and len(calls) == 2


def test_within_problem_auc_counts_pairs_ties_and_the_no_exception_subset():
  scores = [[0.9, 0.2, 0.5, 0.5], [0.1, 0.3, 0.2]]
  rewards = [[1.0, 0.0, 1.0, 0.5], [0.0, 0.0, 0.25]]
  # problem 0: correct {0.9, 0.5} vs wrong {0.2, 0.5}: 0.9>0.2, 0.9>0.5, 0.5>0.2, 0.5=0.5 -> 3.5/4
  # problem 1: no correct program -> no pair
  assert within_problem_auc(scores, rewards) == (3.5 / 4, 4)
  # without program 3 (it crashed): 2 pairs, both won
  assert within_problem_auc(scores, rewards, [[1, 1, 1, 0], [1, 1, 1]]) == (1.0, 2)
  assert within_problem_auc([[0.5]], [[1.0]]) == (None, 0)


def _record(seed, shift):
  return {"seed": seed, "settings": dataclasses.asdict(table2.Settings()),
          "training_ranking": {"num_problems": 2, "auc": 0.9, "pairs": 10},
          "pool": {"problem_ids": ["a", "b"], "scores": [[0.1, 0.9, 0.5], [0.4, 0.2, 0.3]],
                   "rewards": [[0.0, 1.0, 0.5], [1.0, 0.0, 0.0]],
                   "clean": [[1, 1, 1], [1, 0, 1]]},
          "mcts": {"vm_mcts": {"2": {"rewards": [1.0, shift], "samples": [2, 1]}},
                   "orm_mcts": {"2": {"rewards": [0.5, 0.0], "samples": [2, 2]}}}}


def test_matched_differences_compare_with_best_of_n_over_the_programs_each_tree_drew():
  records = [_record(0, 0.0), _record(1, 1.0)]
  bo2 = brute_best_of_k([0.1, 0.9, 0.5], [0.0, 1.0, 0.5], 2)[0]
  d = table2.matched_differences(records[0], "vm_mcts", 2)
  # problem a: its tree drew 2 programs -> best-of-2; problem b drew 1 -> pass@1 = 1/3
  np.testing.assert_allclose(d["best_of_n"], [1.0 - bo2, 0.0 - 1 / 3])
  np.testing.assert_allclose(d["sampling"], [1.0 - 1 / 3, 0.0 - 1 / 3])
  rows = table2.matched_rows(records)["vm_mcts"][2]
  assert rows["drawn"] == (1.5, 0.0)
  assert rows["minus_best_of_n"][0] == pytest.approx(np.mean([1.0 - bo2, 0.5 - 1 / 3]))
  assert rows["minus_best_of_n"][1] == pytest.approx(math.sqrt(0.125))
  text = "\n".join(table2.matched_markdown(table2.matched_rows(records), 2))
  assert "| VM-MCTS: programs drawn / problem | 1.5 |" in text
  too_many = _record(0, 0.0)
  too_many["mcts"]["vm_mcts"]["2"]["samples"] = [4, 1]        # more than the pool's 3
  assert table2.matched_differences(too_many, "vm_mcts", 2) is None
  assert 2 not in table2.matched_rows([too_many]).get("vm_mcts", {})


def test_merge_pools_puts_each_problems_parts_side_by_side():
  part = lambda r, ids=("a", "b"): {"problem_ids": list(ids), "rewards": [[r], [r]],
                                   "scores": [[r], [r]], "clean": [[1], [0]], "seconds": 1.0}
  merged = table2.merge_pools([part(0.0), part(1.0)])
  assert merged["rewards"] == [[0.0, 1.0], [0.0, 1.0]] and merged["clean"] == [[1, 1], [0, 0]]
  assert "likelihood" not in merged and merged["seconds"] == 2.0
  with pytest.raises(ValueError, match="different problems"):
    table2.merge_pools([part(0.0), part(1.0, ids=("a", "c"))])
  assert table2.pool_part_seed(3, 0) == 3 and table2.pool_part_seed(3, 2) != 3
  with pytest.raises(ValueError, match="multiple of 20"):
    table2.Settings(pool_size=30)


def test_summarize_table_paired_differences_and_curve():
  records = [_record(0, 0.0), _record(1, 1.0)]
  s = table2.summarize(records, budget=2)
  bon = np.mean([brute_best_of_k([0.1, 0.9, 0.5], [0.0, 1.0, 0.5], 2)[0],
                 brute_best_of_k([0.4, 0.2, 0.3], [1.0, 0.0, 0.0], 2)[0]])
  t = s["table"]
  assert t["sampling"]["strict_accuracy"] == pytest.approx((1 / 3, 0.0))
  assert t["best_of_n"]["strict_accuracy"] == pytest.approx((bon, 0.0))
  assert t["vm_mcts"]["strict_accuracy"] == pytest.approx((0.75, math.sqrt(0.125)))
  assert t["vm_mcts"]["samples_per_problem"] == (1.5, 0.0)
  assert t["orm_mcts"]["strict_accuracy"] == (0.0, 0.0)  # 0.5 is not strictly correct
  assert t["vm_mcts"]["minus_best_of_n"] == pytest.approx((0.75 - bon, math.sqrt(0.125)))
  assert t["vm_mcts"]["minus_sampling"][0] == pytest.approx(0.75 - 1 / 3)
  assert "minus_best_of_n" not in t["sampling"] and "minus_best_of_n" not in t["best_of_n"]
  assert t["best_of_n"]["minus_sampling"][0] == pytest.approx(bon - 1 / 3)
  # problem 0: 0.9 (correct) beats 0.1 and 0.5; problem 1: 0.4 (correct) beats 0.2 and 0.3
  assert s["auc"] == (1.0, 0.0) and s["ranking"][0]["pairs"] == 4
  assert s["ranking"][0]["pairs_clean"] == 3
  assert s["curve"]["oracle"][3][0] == pytest.approx(1.0)
  assert set(s["curve"]["vm_mcts"]) == {2}
  text = table2.markdown(s, records)
  assert "| VM-MCTS | 0.750 ± 0.354 | 1.5 |" in text and "1.000 (4 pairs)" in text
  assert s["ranking"][1]["training_auc"] == 0.9 and "0.900 (10 pairs)" in text
  one = table2.markdown(table2.summarize(records[:1], budget=2), records[:1])
  se = float(np.std([1.0 - 1 / 3, 0.0 - 1 / 3], ddof=1) / np.sqrt(2))  # VM - sampling per problem
  assert f"| VM-MCTS | 0.500 | 1.5 | " in one and f"+0.167 ± {se:.3f} (SE) |" in one


def test_the_likelihood_reference_ranks_and_selects_from_the_pool_it_scores():
  """A record's `likelihood` scores (the policy's log-likelihood of each pool program) give the
  reference ranking and its best-of-N row, computed like the value model's."""
  records = [_record(0, 0.0), _record(1, 1.0)]
  # seed 0: the likelihood prefers the wrong programs; seed 1: the right ones
  records[0]["pool"]["likelihood"] = [[-1.0, -9.0, -2.0], [-8.0, -1.0, -1.0]]
  records[1]["pool"]["likelihood"] = [[-9.0, -1.0, -2.0], [-1.0, -8.0, -9.0]]
  s = table2.summarize(records, budget=2)
  assert [r["likelihood_auc"] for r in s["ranking"]] == [0.0, 1.0]
  # seed 0, problem 1: program 1 crashed, so the clean pairs are (0 vs 2) only, lost
  assert s["ranking"][0]["likelihood_auc_clean"] == 0.0
  assert s["likelihood_auc"] == pytest.approx((0.5, math.sqrt(0.5)))
  per = [np.mean([brute_best_of_k(l, r, 2)[0] for l, r in zip(
      rec["pool"]["likelihood"], rec["pool"]["rewards"])]) for rec in records]
  row = s["table"]["best_of_n_likelihood"]
  assert row["strict_accuracy"] == pytest.approx((np.mean(per), np.std(per, ddof=1)))
  assert row["minus_sampling"][0] == pytest.approx(np.mean(per) - 1 / 3)
  text = table2.markdown(s, records)
  assert "the policy's own log-likelihood" in text and "0.000, 1.000 (mean 0.500" in text
  # records without it (older runs) report no reference
  plain = table2.summarize([_record(0, 0.0)], budget=2)
  assert plain["likelihood_auc"] is None and "best_of_n_likelihood" not in plain["table"]


def test_pool_cell_keeps_the_sampled_log_prob_sums_beside_the_value_scores(monkeypatch):
  from types import SimpleNamespace as NS
  ok = ("pass",)
  groups = [[NS(reward=1.0, logprobs=np.array([-0.5, -0.25]), program="a", statuses=ok),
             NS(reward=0.0, logprobs=np.array([-3.0]), program="b", statuses=("error",))],
            [NS(reward=0.5, logprobs=np.array([-1.0, -1.0, -1.0]), program="c", statuses=ok),
             NS(reward=1.0, logprobs=np.array([-0.125]), program="d", statuses=ok)]]
  monkeypatch.setattr(table2, "sample_pool", lambda *args: groups)
  vm = NS(score_states=lambda problems, states: [float(ord(x)) for x in states])
  problems = [NS(id="p0"), NS(id="p1")]
  cell = table2.pool_cell(None, vm, None, problems, 2, 0, None)
  assert cell["likelihood"] == [[-0.75, -3.0], [-3.0, -0.125]]
  assert cell["scores"] == [[97.0, 98.0], [99.0, 100.0]] and cell["clean"] == [[1, 0], [1, 1]]
  assert cell["rewards"] == [[1.0, 0.0], [0.5, 1.0]] and cell["problem_ids"] == ["p0", "p1"]


def test_report_writes_docs_between_markers_and_keeps_other_keys(tmp_path):
  pytest.importorskip("matplotlib")
  record, docs = tmp_path / "rec", tmp_path / "docs"
  record.mkdir()
  docs.mkdir()
  for seed in (0, 1):
    (record / f"seed{seed}.json").write_text(json.dumps(_record(seed, float(seed))))
  (docs / "results.md").write_text("# R\n\n<!-- table2:begin -->\nold\n<!-- table2:end -->\ntail\n")
  (docs / "results.json").write_text(json.dumps({"rl_gain_strict_in_dist": {"mean": 0.1}}))
  table2.main(["report", "--record", str(record), "--docs", str(docs), "--budget", "2"])
  md = (docs / "results.md").read_text()
  assert "old" not in md and md.endswith("<!-- table2:end -->\ntail\n") and "| VM-MCTS |" in md
  res = json.loads((docs / "results.json").read_text())
  assert res["rl_gain_strict_in_dist"] == {"mean": 0.1}
  assert res["value_auc_within_problem_heldout_mse"]["mean"] == 1.0
  assert res["value_auc_within_problem_heldout_mse"]["pairs"] == [4, 4]
  assert res["value_auc_within_problem_heldout"] == res["value_auc_within_problem_heldout_mse"]
  assert res["value_auc_within_problem_heldout"]["kind"] == "mse"
  assert (docs / "budget_curve.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("kind", ["mse", "implicit_prm"])
def test_kept_records_regenerate_the_docs(tmp_path, kind):
  """docs/results.md's Table 2 blocks and results.json's table2 keys equal what `report` writes
  from the records kept in docs/runs/table2 (the MSE value model) and
  docs/runs/table2_implicit_prm."""
  assert_report_regenerates_docs(
      tmp_path, REPO / "docs" / "runs" / f"table2{table2.suffix(kind)}",
      f"<!-- table2{table2.suffix(kind)}:begin -->", table2.main)


def test_plot_curves_writes_a_png(tmp_path):
  pytest.importorskip("matplotlib")
  path = bc.plot_curves({"vm": {1: (0.2, 0.01), 10: (0.4, 0.05)}}, tmp_path / "c.png", "acc")
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_settings_checks():
  assert table2.Settings().mcts_budgets == (5, 10, 20)
  with pytest.raises(ValueError, match="num_test must be >= 1"):
    table2.Settings(num_test=0)
  with pytest.raises(ValueError, match="budgets >= 5"):
    table2.Settings(mcts_budgets=(2,))


def test_report_writes_implicit_prm_records_to_their_own_block_and_keys(tmp_path):
  record, docs = tmp_path / "rec", tmp_path / "docs"
  record.mkdir()
  docs.mkdir()
  for seed in (0, 1):
    rec = _record(seed, 0.1 * seed)
    rec["settings"] = dataclasses.asdict(table2.Settings(value_kind="implicit_prm"))
    (record / f"seed{seed}.json").write_text(json.dumps(rec))
  (docs / "results.md").write_text("# R\n\n<!-- table2:begin -->\nmse\n<!-- table2:end -->\n")
  mse_entry = {"mean": 0.9, "kind": "mse"}
  (docs / "results.json").write_text(json.dumps({"value_auc_within_problem_heldout": mse_entry,
                                                 "value_auc_within_problem_heldout_mse": mse_entry}))
  table2.main(["report", "--record", str(record), "--docs", str(docs), "--budget", "2"])
  md = (docs / "results.md").read_text()
  assert "<!-- table2:begin -->\nmse\n<!-- table2:end -->" in md          # left as it was
  block = md.split("<!-- table2_implicit_prm:begin -->")[1]
  assert "the implicit PRM (DPO, 750 steps of 32 pairs at LR 0.0001" in block
  res = json.loads((docs / "results.json").read_text())
  assert res["value_auc_within_problem_heldout_mse"] == mse_entry            # left as it was
  assert res["value_auc_within_problem_heldout_implicit_prm"]["pairs"] == [4, 4]
  # the headline is the implicit PRM's once reported, whichever kind ranks higher
  headline = res["value_auc_within_problem_heldout"]
  assert headline == res["value_auc_within_problem_heldout_implicit_prm"]
  assert headline["kind"] == "implicit_prm"
  assert "table2_implicit_prm" in res and "table2" not in res
  assert (docs / "budget_curve_implicit_prm.png").is_file()
  mixed = _record(2, 0.0)
  (record / "seed2.json").write_text(json.dumps(mixed))
  with pytest.raises(ValueError, match="mix value-model kinds"):
    table2.main(["report", "--record", str(record), "--docs", str(docs), "--budget", "2"])
