"""Stage 2 end to end on a tiny random policy with the real sandbox: collect_values ->
train_value -> decode (restrl_jax.pipeline.stages)."""
import copy
import json

import jax
import pytest

from configs import demo
from restrl_jax import config_defaults, io_utils, models
from restrl_jax.pipeline import StageContext
from restrl_jax.pipeline.stages import collect_values, decode, train_value
from restrl_jax.pipeline.stages.common import benchmark_problems
from restrl_jax.tokenizer import embedded_tokenizer
from restrl_jax.warmstart.data import reference_solution
from restrl_jax.warmstart.train import export_policy, policy_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  root = tmp_path_factory.mktemp("stage2")
  tok = embedded_tokenizer()
  cfg = policy_config(tok)
  policy = export_policy(cfg, models.init_params(cfg, jax.random.key(0)), tok, root / "policy")
  c = config_defaults.base()
  c.workdir = str(root / "work")
  c.model.hf_path = str(policy)
  c.sampling.max_new_tokens, c.sampling.temperature, c.sampling.batch_size = 24, 1.0, 16
  c.execution.num_workers = 2
  c.mcts = demo.mcts()
  c.mcts.update(dict(collect_iterations=3, collect_samples=3, collect_num_problems=3,
                     batch_trees=2, decode_iterations=2, decode_samples=3, decode_width=2,
                     decode_num_problems=2))
  c.value = demo.value()
  c.value.update(dict(epochs=1, batch_size=8, min_eval=4, max_length=256, evals=1,
                      pad_multiple=128))
  work = root / "work"

  def ctx(name):
    (work / name).mkdir(parents=True, exist_ok=True)
    return StageContext(c, work, work / name)

  out = {"collect_values": collect_values.run(ctx("collect_values"))}
  out["collect_again"] = collect_values.run(ctx("collect_values"))
  out["train_value"] = train_value.run(ctx("train_value"))
  out["decode"] = decode.run(ctx("decode"))
  return c, work, out


def test_collect_stage_writes_value_records_and_resumes(run):
  c, work, out = run
  s = out["collect_values"]
  records = io_utils.read_jsonl(work / "collect_values" / "values.jsonl")
  assert s["num_problems"] == 3 and s["num_records"] == len(records)
  assert s["num_programs"] == 3 * s["expansions"]
  assert out["collect_again"]["num_records"] == len(records)  # nothing collected twice
  for pid in {r["problem_id"] for r in records}:
    mine = [r for r in records if r["problem_id"] == pid]
    root = next(r for r in mine if r["kind"] == "node" and r["node"] == 0)
    rewards = [r["value"] for r in mine if r["kind"] == "program"]
    extra = sum(r["visits"] * r["value"] for r in mine if r["kind"] == "terminal")
    visits = len(rewards) + sum(r["visits"] for r in mine if r["kind"] == "terminal")
    assert root["visits"] == visits
    assert root["value"] == pytest.approx((sum(rewards) + extra) / visits, abs=1e-5)


def test_train_value_stage_reports_held_out_metrics(run):
  _, work, out = run
  t = out["train_value"]
  assert 0.0 <= t["best_eval_accuracy"] <= 1.0 and t["best_eval_loss"] >= 0.0
  assert (work / "train_value" / "best" / "value_model.json").is_file()
  assert t["num_train"] + t["num_eval"] == out["collect_values"]["num_nodes"] + \
      out["collect_values"]["num_programs"]


def test_decode_stage_compares_methods_at_equal_budget(run):
  c, work, out = run
  d = out["decode"]
  assert d["budget"] == 6
  assert [r["method"] for r in d["rows"]] == [f"{m} (6 samples)" for m in c.mcts.decode_methods]
  for m, r in zip(c.mcts.decode_methods, d["rows"]):
    assert r["num_problems"] == 2 and 0.0 <= r["test_case_average"] <= 1.0
    # MCTS spends at most the budget: a tree whose visible leaves are all terminal stops early
    assert r["samples_per_problem"] == 6 if m in ("sampling", "best_of_n") else (
        0 < r["samples_per_problem"] <= 6)
  answers = io_utils.read_jsonl(work / "decode" / "vm_mcts.jsonl")
  assert len(answers) == 2 and all(a["num_samples"] in (3, 6) for a in answers)
  assert all(0.0 <= a["score"] <= 1.0 for a in answers)
  assert all(len(a["rewards"]) == 1 for a in answers)


@pytest.fixture(scope="module")
def implicit_run(run, tmp_path_factory):
  """train_value with value.kind="implicit_prm" on program records of the collection problems
  (each problem's reference solution, reward 1, and two wrong programs), then decode with it."""
  c, _, _ = run
  c = copy.deepcopy(c)
  work = tmp_path_factory.mktemp("stage2_implicit") / "work"
  c.workdir = str(work)
  c.value.update(dict(kind="implicit_prm", implicit_steps=4, implicit_eval_every=2,
                      implicit_eval_problems=1, implicit_pairs_per_step=2,
                      implicit_max_prompt_tokens=192))
  problems = benchmark_problems(c.mcts.collect_benchmark, c.mcts.collect_data_path,
                                c.mcts.collect_split, c.mcts.collect_num_problems)
  records = [{"kind": "program", "problem_id": p.id, "prompt": p.prompt, "state": s, "value": v}
             for p in problems for s, v in ((reference_solution(p), 1.0), ("print(0)\n", 0.0),
                                            ("x = input()\n", 0.25))]
  (work / "collect_values").mkdir(parents=True)
  io_utils.atomic_write_text(work / "collect_values" / "values.jsonl",
                             "".join(json.dumps(r) + "\n" for r in records))

  def ctx(name):
    (work / name).mkdir(parents=True, exist_ok=True)
    return StageContext(c, work, work / name)

  return work, train_value.run(ctx("train_value")), decode.run(ctx("decode"))


def test_train_value_stage_trains_the_implicit_prm_when_asked(implicit_run):
  work, summary, decoded = implicit_run
  assert summary["kind"] == "implicit_prm" and summary["num_eval_problems"] == 1
  assert summary["num_pairs"] == 2 * 2                     # 2 training problems x 2 wrong
  assert summary["best_step"] in (2, 4) and summary["best_eval_auc"] is not None
  meta = json.loads((work / "train_value" / "best" / "value_model.json").read_text())
  assert meta["kind"] == "implicit_prm" and meta["max_prompt_tokens"] == 192
  assert io_utils.read_jsonl(work / "train_value" / "metrics.jsonl")     # the loop logged
  vm = [r for r in decoded["rows"] if r["method"].startswith("vm_mcts")]
  assert len(vm) == 1 and vm[0]["num_problems"] == 2       # MCTS guided by the implicit PRM
  answers = io_utils.read_jsonl(work / "decode" / "vm_mcts.jsonl")
  assert all(0.0 < a["score"] < 1.0 for a in answers)     # sigmoid of the implicit reward


def test_train_value_stage_names_an_unknown_kind(run, tmp_path):
  c, work, _ = run
  c = copy.deepcopy(c)
  c.value.kind = "ranked"
  with pytest.raises(ValueError, match=r"value.kind='ranked' is not one of \('mse', "
                                       r"'implicit_prm'\)"):
    train_value.run(StageContext(c, work, tmp_path))
