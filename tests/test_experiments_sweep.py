"""The sweep driver and the Table 1 aggregation, on hand-made cell results (no training)."""
import json
import statistics
from pathlib import Path

import pytest

from experiments import sweep, table1
from experiments.sweep import Cell, SweepSpec
from restrl_jax import io_utils
from restrl_jax.config_checks import ConfigError


def _round(collection: int, rollout: int, steps: int = 4) -> dict:
  return {"collection_tokens": collection, "rollout_tokens": rollout, "steps": steps, "rows": 10,
          "collect_reward_std_share": 0.5, "collect_test_case_average": 0.4}


def _result(name: str, seed: int, strict: list[float], tca: list[float], rounds: list[dict],
            method: str | None = None) -> dict:
  evals = {str(k + (0 if not rounds else 1)): {"strict_accuracy": s, "test_case_average": t}
           for k, (s, t) in enumerate(zip(strict, tca))}
  return {"name": name, "method": method or name, "seed": seed, "evals": evals, "rounds": rounds}


# -- budgets -------------------------------------------------------------------------------------

def test_counted_tokens_follow_the_rule():
  r = _round(1000, 300)
  assert table1.counted_tokens("rest_grpo", r) == 1300
  assert table1.counted_tokens("rest_dpo", r) == 1000
  assert table1.counted_tokens("grpo", r) == 300
  assert table1.counted_tokens("dapo", r) == 300
  with pytest.raises(ValueError, match="no budget rule for method 'ppo'"):
    table1.counted_tokens("ppo", r)


def test_budget_is_cumulative_over_rounds_and_uncounted_is_the_rest():
  res = _result("grpo", 0, [0.1, 0.2], [0.3, 0.4], [_round(1000, 300), _round(900, 500)])
  assert table1.budget_through(res, 1) == 300
  assert table1.budget_through(res, 2) == 800
  assert table1.uncounted_tokens(res, 2) == 1900
  base = _result("base", 0, [0.1], [0.3], [])
  assert table1.budget_through(base, 0) == 0
  with pytest.raises(ValueError, match="has 2 rounds, asked for 3"):
    table1.budget_through(res, 3)


def test_round_tokens_reads_collection_rollouts_and_dapo_candidates(tmp_path):
  io_utils.append_jsonl(tmp_path / "samples.jsonl", [{"num_tokens": n} for n in (10, 20, 30)])
  io_utils.append_jsonl(tmp_path / "metrics.jsonl", [
      {"step": 1, "num_tokens": 40.0, "completion_len_mean": 5.0},
      {"step": 2, "num_tokens": 24.0, "completion_len_mean": 3.0},
      # DAPO: 3 candidate batches of 8 rows, kept groups average 2.5 tokens -> 60 generated
      {"step": 3, "num_tokens": 20.0, "completion_len_mean": 2.5,
       "dynamic_sampling/num_batches": 3.0}])
  (tmp_path / "round.json").write_text(json.dumps(
      {"data/rows": 7, "collect/reward_std_share": 0.25, "collect/test_case_average": 0.5}))
  facts = sweep.round_tokens(tmp_path, rows_per_step=8)
  assert facts["collection_tokens"] == 60
  assert facts["rollout_tokens"] == 40 + 24 + 60
  assert facts["steps"] == 3 and facts["rows"] == 7
  assert facts["collect_reward_std_share"] == 0.25


def test_round_tokens_of_a_dpo_round_has_no_rollouts(tmp_path):
  io_utils.append_jsonl(tmp_path / "samples.jsonl", [{"num_tokens": 5}])
  io_utils.append_jsonl(tmp_path / "metrics.jsonl", [{"step": 1, "loss": 0.6, "step_s": 1.0}])
  (tmp_path / "round.json").write_text("{}")
  facts = sweep.round_tokens(tmp_path, rows_per_step=8)
  assert (facts["collection_tokens"], facts["rollout_tokens"], facts["steps"]) == (5, 0, 1)


# -- aggregation ---------------------------------------------------------------------------------

def test_aggregate_mean_and_sample_std_over_seeds():
  strict = {0: [0.20, 0.30], 1: [0.25, 0.40], 2: [0.15, 0.35]}
  tca = {0: [0.40, 0.50], 1: [0.45, 0.55], 2: [0.50, 0.65]}
  results = [_result("rest_grpo", s, strict[s], tca[s], [_round(1000 + s, 200), _round(900, 100)])
             for s in (0, 1, 2)]
  results += [_result("base", s, [0.2 + 0.01 * s], [0.4], []) for s in (0, 1, 2)]
  rows = {(r["name"], r["rounds"]): r for r in table1.aggregate(results)}
  assert [k for k in rows] == [("base", 0), ("rest_grpo", 1), ("rest_grpo", 2)]
  r2 = rows[("rest_grpo", 2)]
  want = [strict[s][1] for s in (0, 1, 2)]
  assert r2["strict_accuracy"][0] == pytest.approx(statistics.mean(want))
  assert r2["strict_accuracy"][1] == pytest.approx(statistics.stdev(want))
  assert r2["test_case_average"][1] == pytest.approx(statistics.stdev([0.5, 0.55, 0.65]))
  want_budget = [1000 + s + 200 + 1000 for s in range(3)]
  assert r2["budget"][0] == pytest.approx(statistics.mean(want_budget))
  assert rows[("rest_grpo", 1)]["budget"][0] == pytest.approx(1201.0)
  assert r2["steps"] == 8 and r2["seeds"] == [0, 1, 2]
  assert rows[("base", 0)]["strict_accuracy"][1] == pytest.approx(statistics.stdev([.2, .21, .22]))
  text = table1.render(table1.aggregate(results))
  assert "| ReST-GRPO | 2 | 0.350 ± 0.050 |" in text
  assert "| base (demo policy) | 0 |" in text


def test_mean_std_of_one_seed_has_zero_spread_and_empty_is_an_error():
  assert table1.mean_std([0.3]) == (0.3, 0.0)
  with pytest.raises(ValueError, match="at least one value"):
    table1.mean_std([])


def test_cells_are_seed_major_and_unknown_methods_named():
  cells = table1.cells([0, 1], ["base", "grpo"])
  assert [c.key for c in cells] == ["base/seed0", "grpo/seed0", "base/seed1", "grpo/seed1"]
  assert dict(cells[1].overrides)["rest.max_steps_per_round"] == 42
  with pytest.raises(ValueError, match="unknown \\['ppo'\\]"):
    table1.cells([0], ["ppo"])


# -- resume / skip -------------------------------------------------------------------------------

def _writing_runner(calls: list, succeed=lambda cell_json: True):
  def runner(cell_file: Path, log: Path) -> int:
    obj = json.loads(cell_file.read_text())
    calls.append(obj["cell"]["name"] + f"/seed{obj['cell']['seed']}")
    if not succeed(obj):
      return 3
    c = obj["cell"]
    io_utils.atomic_write_json(cell_file.parent / sweep.RESULT_FILE, _result(
        c["name"], c["seed"], [0.5], [0.6], [_round(10, 5)]))
    return 0
  return runner


def test_run_sweep_skips_finished_cells_and_reports_failures(tmp_path):
  spec = SweepSpec(root=tmp_path)
  cells = [Cell("grpo", "grpo", 0), Cell("grpo", "grpo", 1), Cell("dapo", "dapo", 0)]
  calls = []
  not_dapo = lambda o: o["cell"]["name"] != "dapo"
  failed = sweep.run_sweep(spec, cells, _writing_runner(calls, not_dapo), log=lambda s: None)
  assert calls == ["grpo/seed0", "grpo/seed1", "dapo/seed0"]
  assert failed == ["dapo/seed0"]
  calls.clear()
  failed = sweep.run_sweep(spec, cells, _writing_runner(calls), log=lambda s: None)
  assert calls == ["dapo/seed0"] and failed == []
  calls.clear()
  assert sweep.run_sweep(spec, cells, _writing_runner(calls), log=lambda s: None) == []
  assert calls == []
  assert [r["seed"] for r in sweep.read_results(tmp_path, cells)] == [0, 1, 0]


def test_a_runner_that_exits_0_without_a_result_is_a_failure(tmp_path):
  failed = sweep.run_sweep(SweepSpec(root=tmp_path), [Cell("grpo", "grpo", 0)],
                           lambda cell_file, log: 0, log=lambda s: None)
  assert failed == ["grpo/seed0"]


def test_cell_json_round_trips(tmp_path):
  spec = SweepSpec(root=tmp_path, common=(("rest.rounds", 2),),
                   eval_overrides=(("evaluate.ks", (1,)),))
  cell = Cell("rest_dpo", "rest_dpo", 2,
              (("rest.num_samples", 5), ("rest.max_steps_per_round", None)))
  back_spec, back_cell = sweep._from_cell_json(json.loads(json.dumps(sweep._cell_json(spec, cell))))
  assert back_cell == cell
  assert back_spec.common == spec.common and back_spec.root == spec.root
  config = sweep.eval_config(back_spec, back_cell, tmp_path / "p", 1)
  assert config.evaluate.ks == (1,) and config.evaluate.seed == 2


# -- malformed input -----------------------------------------------------------------------------

def test_malformed_cell_results_name_file_and_field(tmp_path):
  bad = tmp_path / "result.json"
  bad.write_text(json.dumps({"name": "grpo", "method": "grpo", "seed": 0, "evals": {}}))
  with pytest.raises(ValueError, match=r"result.json: missing field\(s\) \['rounds'\]"):
    sweep.read_result(bad)
  bad.write_text(json.dumps(_result("grpo", 0, [0.1], [0.2], []) |
                            {"evals": {"1": {"strict_accuracy": "high"}}}))
  with pytest.raises(ValueError, match=r"evals\['1'\] lacks numeric \['strict_accuracy', "
                                       r"'test_case_average'\]"):
    sweep.read_result(bad)
  bad.write_text(json.dumps(_result("grpo", 0, [0.1], [0.2], [{"collection_tokens": 1.5}])))
  with pytest.raises(ValueError, match=r"rounds\[0\] lacks integer collection_tokens"):
    sweep.read_result(bad)
  bad.write_text("{not json")
  with pytest.raises(ValueError, match="cannot be read as JSON"):
    sweep.read_result(bad)


def test_unknown_override_is_a_config_error_naming_it(tmp_path):
  spec = SweepSpec(root=tmp_path, common=(("rest.no_such_field", 1),))
  with pytest.raises(ConfigError, match="rest.no_such_field"):
    sweep.train_config(spec, Cell("grpo", "grpo", 0))


# -- one cell with a fake pipeline ---------------------------------------------------------------

def _fake_pipeline(calls: list):
  """Stands in for run_pipeline: training writes two rounds' records, evaluate returns scores."""
  def run(config):
    calls.append((tuple(config.stages), config.model.hf_path))
    if config.stages == ("evaluate",):
      k = int(config.workdir[-1])
      return {"evaluate": {"strict_accuracy": 0.1 * k, "test_case_average": 0.2 * k,
                           "policy": config.model.hf_path, "rows": []}}
    for r in range(config.rest.rounds):
      d = Path(config.workdir) / "rest_grpo" / f"round_{r}"
      io_utils.append_jsonl(d / "samples.jsonl", [{"num_tokens": 10 * (r + 1)}])
      io_utils.append_jsonl(d / "metrics.jsonl", [{"num_tokens": 4.0, "completion_len_mean": 1}])
      (d / "round.json").write_text(json.dumps({"data/rows": 3}))
    return {"rest_grpo": {}}
  return run


def test_run_cell_trains_then_evaluates_each_round(tmp_path):
  spec = SweepSpec(root=tmp_path, common=table1.COMMON, eval_overrides=table1.EVAL)
  cell = table1.cells([1], ["rest_grpo"])[0]
  calls = []
  result = sweep.run_cell(spec, cell, run=_fake_pipeline(calls))
  train_dir = tmp_path / "rest_grpo" / "seed1" / "train" / "rest_grpo"
  assert calls == [(("rest_grpo",), str(sweep.DEMO_POLICY)),
                   (("evaluate",), str(train_dir / "round_0" / "policy")),
                   (("evaluate",), str(train_dir / "round_1" / "policy"))]
  assert result["evals"]["2"] == {"strict_accuracy": 0.2, "test_case_average": 0.4}
  assert [r["collection_tokens"] for r in result["rounds"]] == [10, 20]
  assert sweep.read_result(tmp_path / "rest_grpo" / "seed1" / "result.json") == result


def test_base_cell_only_evaluates_the_start_policy(tmp_path):
  calls = []
  result = sweep.run_cell(SweepSpec(root=tmp_path), Cell("base", "base", 0),
                          run=_fake_pipeline(calls))
  assert calls == [(("evaluate",), str(sweep.DEMO_POLICY))]
  assert list(result["evals"]) == ["0"] and result["rounds"] == []


def test_paired_differences_use_only_seeds_both_methods_finished():
  results = [_result("rest_grpo", s, [0.2 + 0.1 * s], [0.5], [_round(1, 1)]) for s in (0, 1, 2)]
  results += [_result("grpo", s, [0.1 + 0.2 * s], [0.4], [_round(1, 1)]) for s in (0, 1)]
  (d,) = table1.paired_differences(results, "rest_grpo", "grpo")
  assert d["rounds"] == 1 and d["n"] == 2
  assert d["strict_accuracy"][0] == pytest.approx(statistics.mean([0.1, 0.0]))
  assert d["strict_accuracy"][1] == pytest.approx(statistics.stdev([0.1, 0.0]))
  assert d["test_case_average"] == pytest.approx((0.1, 0.0))
  assert "| ReST-GRPO − naive GRPO | 1 |" in table1.render_differences(results,
                                                                      [("rest_grpo", "grpo")])
