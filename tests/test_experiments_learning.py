"""The learning experiment's report: paired gains per seed, their mean and spread over seeds,
and the docs regenerated from the kept per-seed records."""
import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from experiments import learning

REPO = Path(__file__).resolve().parents[1]
KEPT = REPO / "docs" / "runs" / "learning"
TAGS = "main,steps450"   # the settings docs/results.md reports (`learning report --tags`)


def record(method, seed, scores, curve=()):
  return {"method": method, "seed": seed, "scores": scores, "curve": list(curve)}


def test_gains_are_paired_per_seed_then_averaged_over_seeds():
  base = {"method": "base", "scores": {"id_test": {"a": [0, 0, 1, 1], "b": [0, 0, 0, 0],
                                                    "c": [0.5, 0.5, 1, 1]}}}
  cells = {"grpo": [
      record("grpo", 0, {"id_test": {"a": [1, 1, 1, 1], "b": [0, 0, 0, 0], "c": [1, 1, 1, 1]}}),
      record("grpo", 1, {"id_test": {"a": [0, 0, 1, 1], "b": [1, 0, 0, 0], "c": [1, 1, 1, 1]}})]}
  out = learning.summarize(base, cells)
  # strict per problem: base a .5 b 0 c .5; seed 0: 1 0 1 -> +1/3; seed 1: .5 .25 1 -> +0.25
  assert out["base"]["id_test"]["strict_accuracy"] == pytest.approx(1 / 3)
  g = out["grpo"]["id_test"]["gain_strict_accuracy"]
  assert g["per_seed"] == pytest.approx([1 / 3, 0.25])
  assert g["mean"] == pytest.approx(7 / 24) and g["std"] == pytest.approx(
      np.std([1 / 3, 0.25], ddof=1))
  assert out["grpo"]["id_test"]["strict_accuracy"] == pytest.approx(1 / 3 + 7 / 24)
  # test-case average per problem: base .5 0 .75; seed 0: 1 0 1 -> +0.25
  tca = out["grpo"]["id_test"]["gain_test_case_average"]["per_seed"]
  assert tca[0] == pytest.approx(0.25)
  head = learning.headline({"main": out})["rl_gain_strict_in_dist"]
  assert head["method"] == "grpo" and head["seeds"] == 2 and head["mean"] == pytest.approx(7 / 24)


def _cell_summary(test_gain, validation_gain):
  row = lambda g: {"gain_strict_accuracy": {"mean": g, "std": 0.01, "per_seed": [g] * 3}}
  return {"id_test": row(test_gain), "id_validation": row(validation_gain)}


def test_the_headline_setting_is_chosen_on_validation_not_on_the_reported_split():
  summaries = {"main": {"grpo": _cell_summary(0.09, 0.05), "rest_grpo": _cell_summary(0.05, 0.04)},
               "longer": {"grpo": _cell_summary(0.07, 0.06), "sft": _cell_summary(0.2, 0.2)}}
  settings = {"main": {"steps": 300, "problems": 600, "lr": 1e-4},
              "longer": {"steps": 450, "problems": 900, "lr": 1e-4}}
  head = learning.headline(summaries, settings)["rl_gain_strict_in_dist"]
  # longer/grpo has the best validation gain among RL cells (SFT is not RL): its TEST gain is
  # reported, although main/grpo's test gain is larger
  assert (head["setting"], head["method"], head["chosen_on"]) == ("longer", "grpo", "id_validation")
  assert head["mean"] == pytest.approx(0.07) and head["setting_detail"].startswith("450 steps")


def test_curve_panels_average_the_seeds_at_shared_steps():
  curve = lambda *v: [{"step": s, "strict_accuracy": x, "test_case_average": x}
                      for s, x in zip((0, 50, 100), v)]
  cells = {"grpo": [record("grpo", 0, {}, curve(0.2, 0.3, 0.4)),
                    record("grpo", 1, {}, curve(0.2, 0.5, 0.6))]}
  panels = learning.curve_panels(cells, base={})
  (points,) = list(panels.values())[0].values()
  assert [p[0] for p in points] == [0, 50, 100]
  assert points[1][1] == pytest.approx(0.4) and points[1][2] == pytest.approx(np.std([.3, .5],
                                                                                     ddof=1))


def test_docs_are_regenerated_from_the_kept_records(tmp_path):
  """docs/results.json's table1, headline and reward_std, and the learning and reward-std
  tables in docs/results.md are what `learning report` writes from docs/runs/learning (nothing
  typed by hand)."""
  for name in ("results.md", "results.json"):
    shutil.copy(REPO / "docs" / name, tmp_path / name)
  learning.report(argparse.Namespace(record=str(KEPT), tags=TAGS, docs=str(tmp_path)))
  for name in ("results.md", "results.json"):
    assert (tmp_path / name).read_text() == (REPO / "docs" / name).read_text(), name
  assert (tmp_path / "learning_curve.png").is_file() and (tmp_path / "reward_std.png").is_file()
  results = json.loads((tmp_path / "results.json").read_text())
  assert set(results["reward_std"]) >= {"grpo", "rest_grpo"}
  text = (tmp_path / "results.md").read_text()
  assert text.index(learning.END) < text.index(learning.REWARD_STD_BEGIN)
  assert "| naive GRPO: GRPO groups trained on |" in text.split(learning.REWARD_STD_BEGIN)[1]
