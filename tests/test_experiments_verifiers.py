"""The verifier experiment: pairs, step choice on validation, the summary and the docs it writes,
and a DPO verifier that learns the one pair it is trained on (the demo policy, a few steps)."""
import json

import numpy as np
import pytest

from docs_check import REPO, assert_report_regenerates_docs  # tests/ is on sys.path
from experiments import verifiers



def test_pairs_are_distinct_correct_wrong_texts_of_one_problem_capped_and_seeded():
  pool = {"problem_ids": ["a", "b", "c"],
          "completions": [["x", "x", "y", "z"], ["p", "q"], ["u", "v"]],
          "rewards": [[1.0, 1.0, 0.5, 0.0], [0.9, 0.2], [1.0, 1.0]],
          "clean": [[1, 1, 1, 1], [1, 1], [1, 1]]}
  # "a": one distinct correct text x, wrong y and z -> 2 pairs; "b" has no correct program
  # (0.9 < 1); "c" has no wrong one
  assert sorted(verifiers.correct_wrong_pairs(pool, 4, 0)) == [("a", "x", "y"), ("a", "x", "z")]
  one = verifiers.correct_wrong_pairs(pool, 1, 0)
  assert len(one) == 1 and one[0][:2] == ("a", "x")
  assert verifiers.correct_wrong_pairs(pool, 1, 0) == one   # a function of the seed


def _ranking(auc):
  return {"auc": auc, "pairs": 10, "auc_clean": auc / 2, "pairs_clean": 4}


def _eval(step, val, test):
  return {"step": step, **{split: {name: _ranking(auc) for name in verifiers.SCORERS}
                           for split, auc in (("val", val), ("test", test))}}


def _record(seed, shift=0.0):
  return {"seed": seed, "evals": [_eval(0, 0.9, 0.9), _eval(100, 0.6 + shift, 0.7 + shift),
                                  _eval(200, 0.8 + shift, 0.5 + shift),
                                  _eval(300, 0.8 + shift, 0.6 + shift)]}


def test_the_step_is_chosen_on_validation_never_on_test_nor_before_training():
  # step 0 has the best validation AUC but is no trained verifier; 200 and 300 tie on
  # validation: the earlier one; step 100's better test AUC does not count
  assert verifiers.chosen_eval(_record(0))["step"] == 200


def test_summary_is_the_chosen_steps_test_auc_over_seeds_and_the_table_shows_it():
  s = verifiers.summarize([_record(0), _record(1, 0.1)])
  row = s["scorers"]["dpo_implicit_reward"]
  assert s["steps"] == [200, 200] and s["seeds"] == [0, 1]
  assert row["auc"]["per_seed"] == [0.5, 0.6]
  assert row["auc"]["mean"] == pytest.approx(0.55)
  assert row["auc"]["std"] == pytest.approx(np.std([0.5, 0.6], ddof=1))
  assert row["auc_clean"]["per_seed"] == [0.25, 0.3] and row["pairs"] == [10, 10]
  text = verifiers.table(s)
  assert "| DPO verifier's implicit reward" in text and "0.550 ± 0.071 (0.500, 0.600)" in text
  assert "seed 0: step 200, seed 1: step 200" in text
  assert len(text.strip().split("\n")) == 4 + len(verifiers.SCORERS)
  one = verifiers.table(verifiers.summarize([_record(0)]))
  assert "0.500 (one seed)" in one and "±" not in one


def test_report_writes_between_markers_and_keeps_other_keys(tmp_path):
  record, docs = tmp_path / "rec", tmp_path / "docs"
  record.mkdir()
  docs.mkdir()
  for seed in (0, 1):
    (record / f"seed{seed}.json").write_text(json.dumps(_record(seed)))
  (docs / "results.md").write_text(f"# R\n\n{verifiers.BEGIN}\nold\n{verifiers.END}\ntail\n")
  (docs / "results.json").write_text(json.dumps({"rl_gain_strict_in_dist": {"mean": 0.1}}))
  verifiers.main(["report", "--record", str(record), "--docs", str(docs)])
  md = (docs / "results.md").read_text()
  assert "old" not in md and md.endswith(f"{verifiers.END}\ntail\n")
  res = json.loads((docs / "results.json").read_text())
  assert res["rl_gain_strict_in_dist"] == {"mean": 0.1}
  assert res["verifiers"]["scorers"]["likelihood"]["auc"]["mean"] == pytest.approx(0.5)
  with pytest.raises(FileNotFoundError, match="no seed records"):
    verifiers.main(["report", "--record", str(tmp_path / "none"), "--docs", str(docs)])


def test_kept_records_regenerate_the_docs(tmp_path):
  """docs/results.md's verifier block and results.json's `verifiers` equal what `report` writes
  from the records kept in docs/runs/verifiers."""
  assert_report_regenerates_docs(tmp_path, REPO / "docs" / "runs" / "verifiers",
                                 verifiers.BEGIN, verifiers.main)


def test_settings_checks():
  with pytest.raises(ValueError, match="steps"):
    verifiers.Settings(steps=0)


def test_a_dpo_verifier_learns_its_pair_and_starts_at_zero_implicit_reward():
  """The real trainer on the demo policy: before training the implicit reward is 0 for every
  program; a few DPO steps on one (correct, wrong) pair put the correct program above the wrong
  one, so the within-problem AUC of the implicit reward on that problem goes to 1."""
  from restrl_jax.data.registry import load_problems
  problem = load_problems("synthetic", None, split="train", limit=1)[0]
  right, wrong = problem.solutions[0], "print(0)\n"
  policy = REPO / "restrl_jax" / "assets" / "demo_policy"
  settings = verifiers.Settings(steps=6, pairs_per_step=2, learning_rate=2e-3)
  verifier = verifiers.Verifier(policy, {problem.id: problem}, settings)
  pool = {"problem_ids": [problem.id], "completions": [[right, wrong]],
          "rewards": [[1.0, 0.0]], "clean": [[1, 1]]}
  ref = verifier.logps(verifier.ref, pool, batch=2)                                # [1, 2]
  before = verifier.logps(verifier.state.params, pool, batch=2)
  np.testing.assert_allclose(before, ref, atol=1e-5)
  for _ in range(settings.steps):
    metrics = verifier.step([(problem.id, right, wrong)] * 2)
  after = verifier.logps(verifier.state.params, pool, batch=2)
  reward = settings.beta * (after - ref)
  assert reward[0, 0] > reward[0, 1] and metrics["rewards/accuracies"] == 1.0
  ranked = verifiers.rankings({"dpo_implicit_reward": reward}, pool)["dpo_implicit_reward"]
  assert ranked["auc"] == 1.0 and ranked["pairs"] == 1
