"""ReST rounds end to end: collect -> assemble -> train -> per-round policies, with the sandbox.

The training problems' initial state is a correct program followed by "#", so a sampled
continuation keeps the program correct exactly when it stays on the comment line: even a random
policy then gets rewards of both 0 and 1, and ReST keeps problems and cuts partial states.
"""
import dataclasses
import json

import jax
import numpy as np
import pytest

from restrl_jax import io_utils, models
from restrl_jax.data.synthetic import load_synthetic
from restrl_jax.execution import ExecutionPool
from restrl_jax.rl.rounds import RoundsConfig, Setup, run_rounds
from restrl_jax.rl.trainer import DPOConfig, GRPOConfig
from restrl_jax.sampling import SamplingParams
from restrl_jax.tokenizer import embedded_tokenizer, load_tokenizer
from restrl_jax.warmstart import policy_config


def comment_problems(n: int):
  return tuple(dataclasses.replace(p, starter_code=p.solutions[0] + "#")
               for p in load_synthetic("train", n, verify=False))


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
  tok = embedded_tokenizer()
  config = policy_config(tok)
  path = tmp_path_factory.mktemp("policy") / "start"
  models.save_hf(config, models.init_params(config, jax.random.key(0)), path)
  tok.save_pretrained(str(path))
  return path


@pytest.fixture(scope="module")
def pool():
  with ExecutionPool(num_workers=2) as p:
    yield p


def setup_for(method: str, pool, policy_dir, rounds: int) -> Setup:
  cfg = RoundsConfig(method=method, rounds=rounds, num_samples=4,
                     max_new_tokens=16, temperature=1.0, sigma0=0.05, r0=0.9, alpha=0.95,
                     beta=0.5, epochs=2.0, max_steps_per_round=2, learning_rate=1e-3,
                     dpo_learning_rate=1e-3, schedule="constant", checkpoint_every=1,
                     tensorboard=True)
  grpo = GRPOConfig(group_size=4, prompts_per_step=2, max_new_tokens=16, max_prompt_tokens=256,
                    temperature=1.0, beta_kl=0.04)
  return Setup(problems=comment_problems(6), tokenizer=load_tokenizer(policy_dir), pool=pool,
               cfg=cfg, grpo=grpo, dpo=DPOConfig(pairs_per_step=2, max_completion_tokens=32))


def test_rest_grpo_rounds_write_policies_data_and_metrics(pool, policy_dir, tmp_path):
  setup = setup_for("rest_grpo", pool, policy_dir, rounds=2)
  result = run_rounds(setup, policy_dir, tmp_path)
  assert result["rounds"] == 2 and result["steps"] == 4
  updated = []   # per round: did step 1 change the policy (some group with reward spread)?
  for r in range(2):
    rdir = tmp_path / f"round_{r}"
    assert (rdir / "policy" / "config.json").is_file()
    assert (rdir / "policy" / "tokenizer_config.json").is_file()
    samples = io_utils.read_jsonl(rdir / "samples.jsonl")
    assert len(samples) == 6 * 4 and {s["reward"] for s in samples} == {0.0, 1.0}
    rows = io_utils.read_jsonl(rdir / "rows.jsonl")
    assert {row["kind"] for row in rows} == {"original", "partial"}
    for row in rows:   # partial states extend the initial state
      init = next(p.starter_code for p in setup.problems if p.id == row["problem_id"])
      assert row["state"].startswith(init) and (row["kind"] == "partial") == (
          row["prefix_lines"] > 0)
    metrics = io_utils.read_jsonl(rdir / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2]
    assert metrics[0]["kl"] == 0.0     # the reference is the round's starting policy
    updated.append(metrics[0]["grad_norm"] > 0.0)
    if updated[-1]:                    # then step 2's policy has left the reference
      assert metrics[1]["kl"] > 0.0
    else:                              # every group had one reward: no update, no KL
      assert metrics[0]["frac_reward_zero_std"] == 1.0 and metrics[1]["kl"] == 0.0
    assert all(np.isfinite(m["loss"]) and "frac_reward_zero_std" in m for m in metrics)
    train_samples = io_utils.read_jsonl(rdir / "train_samples.jsonl")
    assert len(train_samples) == 2 * 2 * 4 and {t["step"] for t in train_samples} == {1, 2}
    assert list((rdir / "tb").iterdir())   # TensorBoard events
  # round 0 moved the policy, so round 1's zero KL at its first step shows the reference reset
  # (which groups get a reward spread depends on the sampled programs)
  assert updated[0]
  facts = [json.loads(line) for line in (tmp_path / "rounds.jsonl").read_text().splitlines()]
  assert facts[1]["start_policy"] == str(tmp_path / "round_0" / "policy")
  assert (tmp_path / "policy" / "config.json").is_file()
  _, final = models.load_hf(tmp_path / "policy")
  _, last = models.load_hf(tmp_path / "round_1" / "policy")
  _, start = models.load_hf(policy_dir)
  assert jax.tree.all(jax.tree.map(np.array_equal, final, last))
  assert not jax.tree.all(jax.tree.map(np.array_equal, final, start))
  # a second call finds every round done and changes nothing
  again = run_rounds(setup, policy_dir, tmp_path)
  assert again["per_round"] == result["per_round"]


def test_rest_dpo_round_trains_on_pairs(pool, policy_dir, tmp_path):
  setup = setup_for("rest_dpo", pool, policy_dir, rounds=1)
  result = run_rounds(setup, policy_dir, tmp_path)
  rows = io_utils.read_jsonl(tmp_path / "round_0" / "rows.jsonl")
  assert rows and all(r["chosen_reward"] > r["rejected_reward"] for r in rows)
  assert all(r["chosen"].endswith("```") for r in rows)
  metrics = io_utils.read_jsonl(tmp_path / "round_0" / "metrics.jsonl")
  # one metrics record per optimizer step (an epoch over the pairs: at most ceil(pairs / 2) + 1
  # steps, as the data stream may wrap at the round's end)
  assert 1 <= len(metrics) == result["steps"] <= -(-len(rows) // 2) + 1
  assert metrics[0]["loss"] == pytest.approx(np.log(2.0), abs=1e-4)
  assert (tmp_path / "policy" / "config.json").is_file()


def test_learning_curve_points_score_the_policy_under_training_and_resume(pool, policy_dir,
                                                                          tmp_path):
  """Held-out curve rows at step 0, every `every` steps and the last; the step-0 point equals
  the start policy scored alone (same problems, samples and seed); a resumed round rewrites
  nothing twice and ends with the same rows."""
  from restrl_jax.rl.rounds import CURVE_FILE, CurveEval
  from restrl_jax.rollout import policy_scores
  from restrl_jax.sampling import Sampler
  held_out = tuple(load_synthetic("id_validation", 3, verify=False))
  curve = CurveEval(problems=held_out, every=2, num_samples=2,
                    sampling=SamplingParams(max_new_tokens=16, temperature=1.0), seed=3)
  setup = dataclasses.replace(setup_for("grpo", pool, policy_dir, rounds=1), curve=curve)
  setup = dataclasses.replace(setup, cfg=dataclasses.replace(setup.cfg, max_steps_per_round=3))
  run_rounds(setup, policy_dir, tmp_path / "a")
  rows = io_utils.read_jsonl(tmp_path / "a" / "round_0" / CURVE_FILE)
  assert [r["step"] for r in rows] == [0, 2, 3]
  assert all(r["num_problems"] == 3 and r["num_samples"] == 6 for r in rows)
  config, params = models.load_hf(policy_dir)
  alone = policy_scores(Sampler(config, params, setup.tokenizer), pool, held_out,
                        curve.sampling, 2, ks=(1,), rng=3, chunk_size=8)
  assert rows[0]["test_case_average"] == pytest.approx(alone["test_case_average"])
  # resume: drop the end of the run (policy, round record, last checkpoint) and run again
  import shutil
  rdir = tmp_path / "a" / "round_0"
  shutil.rmtree(rdir / "policy"), shutil.rmtree(tmp_path / "a" / "policy")
  (rdir / "round.json").unlink()
  shutil.rmtree(rdir / "checkpoints" / "3")
  run_rounds(setup, policy_dir, tmp_path / "a")
  again = io_utils.read_jsonl(rdir / CURVE_FILE)
  assert [r["step"] for r in again] == [0, 2, 3]
  assert again == rows
