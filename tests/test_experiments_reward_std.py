"""The reward-std statistics: per GRPO group and per collection problem, hand-computed on a toy
training round; their combination over seeds; the learning experiment's `record-stats` and
table."""
import argparse
import json
import math
import statistics

import pytest

from experiments import learning, reward_std
from restrl_jax import io_utils


def samples(step, group, problem, state, rewards):
  return [{"step": step, "group": group, "problem_id": problem, "state": state,
           "exec_reward": r, "reward": r + 0.001} for r in rewards]


# four groups of G = 4: two of the original prompt of p, two of a partial state of q
TOY_SAMPLES = (samples(1, 0, "p", "", [0.0, 1.0, 1.0, 0.0])             # std 0.5
               + samples(1, 1, "q", "a\n", [1.0, 1.0, 1.0, 1.0])        # std 0
               + samples(2, 0, "p", "", [0.5, 0.25, 0.25, 0.25])        # std 0.10825
               + samples(3, 0, "q", "a\n", [0.0, 0.0, 0.0, 0.1]))       # std 0.04330
TOY_ROWS = [{"problem_id": "p", "state": "", "kind": "original", "prefix_lines": 0},
            {"problem_id": "q", "state": "a\n", "kind": "partial", "prefix_lines": 1}]
# per-problem collection stds 0.5, 0 and 0 (0.2 three times: zero up to rounding)
TOY_COLLECT = [{"problem_id": "p", "init_state": "", "rewards": [0.0, 1.0, 0.0, 1.0]},
               {"problem_id": "q", "init_state": "", "rewards": [1.0, 1.0, 1.0, 1.0]},
               {"problem_id": "r", "init_state": "", "rewards": [0.2, 0.2, 0.2]}]
STD_3 = math.sqrt((0.1875 ** 2 + 3 * 0.0625 ** 2) / 4)     # [0.5, .25, .25, .25]: mean 0.3125
STD_4 = math.sqrt((3 * 0.025 ** 2 + 0.075 ** 2) / 4)       # [0, 0, 0, 0.1]: mean 0.025


def write_round(round_dir):
  io_utils.append_jsonl(round_dir / "train_samples.jsonl", TOY_SAMPLES)
  io_utils.append_jsonl(round_dir / "rows.jsonl", TOY_ROWS)
  io_utils.append_jsonl(round_dir / "collect.jsonl", TOY_COLLECT)


TOY_GROUPS = [[0.0, 1.0, 1.0, 0.0], [1.0] * 4, [0.5, 0.25, 0.25, 0.25], [0.0, 0.0, 0.0, 0.1]]


def test_groups_are_keyed_by_step_and_group():
  assert STD_3 == pytest.approx(statistics.pstdev([0.5, .25, .25, .25]))
  groups = reward_std.group_rewards(TOY_SAMPLES)
  assert sorted(groups) == [(1, 0), (1, 1), (2, 0), (3, 0)]
  assert [groups[k] for k in sorted(groups)] == TOY_GROUPS
  assert reward_std.describe_groups(TOY_SAMPLES) == reward_std.describe(TOY_GROUPS)
  with pytest.raises(ValueError, match="lacks field 'exec_reward'"):
    reward_std.group_rewards([{"step": 1, "group": 0}])


def test_rows_by_kind_joins_groups_to_their_prompt_kind():
  split = reward_std.rows_by_kind(TOY_SAMPLES, TOY_ROWS)
  assert list(split) == ["original", "partial"]
  assert reward_std.describe_groups(split["original"])["mean_std"] == pytest.approx(
      (0.5 + STD_3) / 2)
  assert reward_std.describe_groups(split["partial"])["mean_std"] == pytest.approx(STD_4 / 2)
  with pytest.raises(ValueError, match="problem 'z'"):
    reward_std.rows_by_kind(samples(4, 0, "z", "", [0.0]), TOY_ROWS)


def test_describe_counts_shares_and_fixed_bins():
  d = reward_std.describe(TOY_GROUPS)                 # stds 0.5, 0, 0.108, 0.0433
  assert d["n"] == 4 and d["mean_std"] == pytest.approx((0.5 + STD_3 + STD_4) / 4)
  assert d["zero_std_share"] == 0.25 and d["all_fail_share"] == 0.0   # the zero one all pass
  assert reward_std.describe([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])["all_fail_share"] == (
      pytest.approx(1 / 3))
  assert d["share_ge_sigma0"] == 0.5                 # 0.5 and 0.108; 0.0433 < σ0 = 0.05
  # bins: 0 | (0, .05) | [.05, .1) | [.1, .15) | ... | [.45, .5] (the last closed)
  assert d["histogram"] == [1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1]
  assert reward_std.describe([]) == {"n": 0, "histogram": [0] * 11}
  assert reward_std.bin_labels()[:4] == ["0", "(0, 0.05)", "[0.05, 0.1)", "[0.1, 0.15)"]
  assert reward_std.bin_labels()[-1] == "[0.45, 0.5]"


def test_by_step_window_groups_consecutive_steps():
  windows = reward_std.by_step_window(TOY_SAMPLES, window=2)
  assert [(w["first_step"], w["last_step"], w["n"]) for w in windows] == [(1, 2, 3), (3, 4, 1)]
  assert windows[0]["zero_std_share"] == pytest.approx(1 / 3)
  assert windows[0]["mean_std"] == pytest.approx((0.5 + STD_3) / 3)
  assert windows[1]["zero_std_share"] == 0.0 and windows[1]["mean_std"] == pytest.approx(STD_4)


def test_cell_summary_of_a_toy_round(tmp_path):
  write_round(tmp_path)
  s = reward_std.cell_summary(tmp_path)
  assert s["training_groups"]["n"] == 4 and s["training_groups"]["zero_std_share"] == 0.25
  kinds = s["training_groups_by_kind"]
  assert kinds["original"]["n"] == 2 and kinds["original"]["zero_std_share"] == 0.0
  assert kinds["original"]["share_ge_sigma0"] == 1.0
  assert kinds["partial"]["zero_std_share"] == 0.5 and kinds["partial"]["share_ge_sigma0"] == 0.0
  c = s["collection_problems"]
  assert c["n"] == 3 and c["zero_std_share"] == pytest.approx(2 / 3) and c["all_fail_share"] == 0
  assert c["mean_std"] == pytest.approx(0.5 / 3) and c["histogram"][0] == 2
  assert s["collection_samples_per_problem"] == 4
  assert [w["last_step"] for w in s["by_step_window"]] == [50]      # one window of 50 steps
  assert len(json.dumps(s)) < 4000


def test_method_summary_is_mean_and_spread_over_seeds():
  def cell(zero_share, histogram, window_share):
    d = {"n": 4, "mean_std": 0.1, "zero_std_share": zero_share, "all_fail_share": 0.0,
         "share_ge_sigma0": 0.5, "histogram": histogram}
    return {"training_groups": d, "training_groups_by_kind": {"original": d},
            "collection_problems": d, "collection_samples_per_problem": 4,
            "by_step_window": [{"last_step": 50, "zero_std_share": window_share},
                               {"last_step": 100, "zero_std_share": 0.0}]}
  seeds = [cell(0.25, [1, 3] + [0] * 9, 0.2), cell(0.75, [3, 1] + [0] * 9, 0.4)]
  s = reward_std.method_summary(seeds)
  z = s["training_groups"]["zero_std_share"]
  assert z == {"mean": 0.5, "std": pytest.approx(statistics.stdev([0.25, 0.75])), "seeds": 2}
  assert s["training_groups"]["n"] == {"mean": 4.0, "std": 0.0, "seeds": 2}
  share = s["training_groups"]["histogram_share"]
  assert share[0] == (0.5, pytest.approx(statistics.stdev([0.25, 0.75]))) and share[2] == (0, 0)
  (w50, w100) = s["zero_std_share_by_step"]
  assert w50 == (50.0, pytest.approx(0.3), pytest.approx(statistics.stdev([0.2, 0.4])))
  assert w100 == (100.0, 0.0, 0.0)


def test_record_stats_adds_reward_std_and_keeps_the_other_fields(tmp_path):
  write_round(tmp_path / "work" / "rest_grpo" / "seed3" / "rest_grpo" / "round_0")
  kept = {"method": "rest_grpo", "seed": 3, "curve": [], "scores": {"id_test": {"a": [1.0]}}}
  io_utils.atomic_write_json(tmp_path / "rec" / "main" / "rest_grpo" / "seed3.json", kept)
  args = argparse.Namespace(record=str(tmp_path / "rec"), tag="main",
                            workdirs=str(tmp_path / "work"))
  (path,) = learning.record_stats(args)
  cell = json.loads(path.read_text())
  assert cell.pop("reward_std")["training_groups"]["zero_std_share"] == 0.25
  assert cell == kept
  io_utils.atomic_write_json(tmp_path / "rec" / "main" / "grpo" / "seed0.json",
                             dict(kept, method="grpo", seed=0))
  with pytest.raises(FileNotFoundError, match="grpo/seed0"):
    learning.record_stats(args)


def test_reward_std_table_rows(tmp_path):
  write_round(tmp_path)
  s = reward_std.cell_summary(tmp_path)
  cells = {"rest_grpo": [{"seed": 0, "reward_std": s}, {"seed": 1, "reward_std": s}],
           "grpo": [{"seed": 0}]}                                    # no stats: left out
  by_method = learning.reward_std_by_method(cells)
  assert list(by_method) == ["rest_grpo"] and by_method["rest_grpo"]["seeds"] == [0, 1]
  lines = learning.reward_std_table(by_method).splitlines()
  assert lines[2] == ("| ReST-GRPO: GRPO groups trained on | 2 | 4 | "
                      f"{(0.5 + STD_3 + STD_4) / 4:.3f} ± 0.000 | 0.250 ± 0.000 | "
                      "0.000 ± 0.000 | 0.500 ± 0.000 |")
  assert lines[4].startswith("| ReST-GRPO: groups of partial-state prompts | 2 | 2 | ")
  assert lines[5].startswith("| ReST-GRPO: collection, per training problem (4 samples) | 2 | 3 |")
