"""GRPO / DPO trainer steps on a tiny random policy with a scripted reward pool."""
import concurrent.futures as cf
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from restrl_jax import models, training
from restrl_jax.data.synthetic import load_synthetic
from restrl_jax.rl import grpo_step
from restrl_jax.rl.dpo import DPOPair
from restrl_jax.rl.losses import GRPOLossConfig, grpo_loss
from restrl_jax.rl.trainer import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer, Request
from restrl_jax.tokenizer import embedded_tokenizer
from restrl_jax.warmstart import policy_config

G, B, N = 4, 2, 16


class _Result:
  def __init__(self, reward):
    self.reward = reward


class ScriptedPool:
  """Duck-typed ExecutionPool: reward = fn(index in the submitted batch, program, suite)."""

  def __init__(self):
    self.fn = lambda i, program, suite: 0.0
    self.calls = []

  def submit(self, programs, suites):
    self.calls.append(list(programs))
    future = cf.Future()
    future.set_result([_Result(self.fn(i, p, s)) for i, (p, s) in enumerate(zip(programs, suites))])
    return future


@pytest.fixture(scope="module")
def tok():
  return embedded_tokenizer()


@pytest.fixture(scope="module")
def model_config(tok):
  return policy_config(tok)


@pytest.fixture(scope="module")
def params0(model_config):
  return models.init_params(model_config, jax.random.key(0))


@pytest.fixture(scope="module")
def requests():
  return [Request(p, p.starter_code) for p in load_synthetic("train", 4, verify=False)]


@pytest.fixture(scope="module")
def pool():
  return ScriptedPool()


@pytest.fixture(scope="module")
def optimizer():
  return training.make_optimizer(1e-3, 100, schedule="constant")


@pytest.fixture(scope="module")
def trainer(model_config, tok, optimizer, pool):
  cfg = GRPOConfig(group_size=G, prompts_per_step=B, max_new_tokens=N, max_prompt_tokens=128,
                   temperature=0.7, beta_kl=0.04)
  return GRPOTrainer(model_config, tok, cfg, optimizer, pool)


def fresh_state(params, optimizer):
  return training.init_train_state(jax.tree.map(jnp.copy, params), optimizer)


def stream(requests):
  pos = [0]

  def take(n):
    out = [requests[(pos[0] + i) % len(requests)] for i in range(n)]
    pos[0] += n
    return out
  return take


def test_grpo_step_changes_params_with_finite_metrics(trainer, params0, optimizer, pool,
                                                      requests):
  # group 0 all 0.5 (zero std), group 1 alternates 0 / 1
  pool.fn = lambda i, program, suite: 0.5 if i < G else float(i % 2)
  state = fresh_state(params0, optimizer)
  state, metrics, ro = trainer.step(state, params0, stream(requests), jax.random.key(0))
  assert int(state.step) == 1
  moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), state.params, params0)
  assert max(jax.tree.leaves(moved)) > 0.0
  assert all(np.isfinite(v) for v in metrics.values()), metrics
  for key in ("loss", "kl", "entropy", "grad_norm", "clip_ratio/region_mean", "advantage_std",
              "reward_mean", "reward_std", "frac_reward_zero_std", "tokens_per_s"):
    assert key in metrics
  phases = ("sample_s", "ref_s", "exec_wait_s", "train_s")      # the step, split without overlap
  assert all(metrics[k] >= 0.0 for k in phases)
  assert sum(metrics[k] for k in phases) <= metrics["step_s"] + 1e-6
  np.testing.assert_array_equal(ro.exec_reward, [0.5] * G + [0.0, 1.0] * (G // 2))
  assert metrics["frac_exec_zero_std"] == 0.5
  assert not ro.closed.any()  # random text never closes the fence here: reward == exec reward
  assert metrics["frac_reward_zero_std"] == 0.5
  assert metrics["reward_mean"] == pytest.approx(0.5)
  assert metrics["kl"] == 0.0  # first step: policy == reference
  assert metrics["ratio_mean"] == 1.0  # mu = 1: on-policy
  # the shaped program is state + completion (no fence): what the pool received
  assert pool.calls[-1] == [r.state + t for r, t in
                            zip([ro.requests[i // G] for i in range(B * G)], ro.texts)]


def test_trainer_wires_masks_and_advantages(trainer, params0, optimizer, pool, requests,
                                            model_config):
  pool.fn = lambda i, program, suite: float(i % 3) / 2
  ref = jax.tree.map(lambda x: x * 1.01, params0)  # a reference != policy, so the KL counts
  ro = trainer.rollouts(params0, stream(requests)(B), jax.random.key(3))
  valid = np.ones(B * G, bool)
  batch = trainer._pack(ro, valid, params0, ref)
  batch, _ = trainer._finish_batch(batch, ro, valid)
  # independent construction of the expected arrays
  p = max(16, 1 << (max(map(len, ro.prompts)) - 1).bit_length())   # the prompt bucket
  tokens = np.zeros((B * G, p + N), np.int32)
  attn = np.zeros_like(tokens, bool)
  target = np.zeros((B * G, p + N - 1), np.float32)
  for i, (pr, c) in enumerate(zip(ro.prompts, ro.completions)):
    tokens[i, p - len(pr):p], tokens[i, p:p + len(c)] = pr, c
    attn[i, p - len(pr):p + len(c)] = True
    target[i, p - 1:p - 1 + len(c)] = 1.0   # logp[:, t] scores tokens[:, t + 1]
  np.testing.assert_array_equal(np.asarray(batch["tokens"]), tokens)
  np.testing.assert_array_equal(np.asarray(batch["attention_mask"]), attn)
  r = ro.reward.reshape(B, G)
  adv = (r - r.mean(1, keepdims=True)) / (r.std(1, ddof=1, keepdims=True) + 1e-4)
  adv[r.std(1) == 0] = 0.0
  np.testing.assert_allclose(np.asarray(batch["advantages"]), adv.reshape(-1), rtol=1e-5,
                             atol=1e-6)
  logp = training.token_logprobs(model_config, params0, jnp.asarray(tokens), jnp.asarray(attn),
                                 0.7)
  ref_logp = training.token_logprobs(model_config, ref, jnp.asarray(tokens), jnp.asarray(attn),
                                     0.7)
  expected, expected_m = grpo_loss(logp, None, ref_logp, jnp.asarray(adv.reshape(-1)),
                                   jnp.asarray(target), trainer.cfg.loss)
  _, metrics = trainer.train_step(fresh_state(params0, optimizer), batch)
  assert float(metrics["loss"]) == pytest.approx(float(expected), rel=1e-4, abs=1e-6)
  assert float(metrics["kl"]) == pytest.approx(float(expected_m["kl"]), rel=1e-4)
  assert float(metrics["kl"]) > 0.0
  assert float(metrics["num_tokens"]) == target.sum()


def test_objective_equals_grpo_loss_on_hand_built_batch(model_config, params0):
  prompts, completions = [[5, 6, 7], [8, 9]], [[10, 11, 12, 2], [13]]
  arrays = grpo_step.pack_sequences(prompts, completions, 4, 5, pad_id=0,
                                    completion_logps=[np.full(4, -3.0), np.full(1, -2.0)])
  tokens = np.array([[0, 5, 6, 7, 10, 11, 12, 2, 0], [0, 0, 8, 9, 13, 0, 0, 0, 0]], np.int32)
  np.testing.assert_array_equal(arrays["tokens"], tokens)
  mask = np.zeros((2, 8), np.float32)                 # the targets tokens[:, 1:] of the loss
  mask[0, 3:7], mask[1, 3] = 1.0, 1.0
  old = np.zeros((2, 8), np.float32)
  old[0, 3:7], old[1, 3] = -3.0, -2.0
  # packed: the completion columns only (N = 5)
  np.testing.assert_array_equal(arrays["loss_mask"], mask[:, 3:] > 0)
  np.testing.assert_array_equal(arrays["old_logp"], old[:, 3:])
  cfg = GRPOLossConfig(beta_kl=0.1, epsilon_high=0.28, loss_aggregation="seq-mean-token-mean")
  ref = jax.tree.map(lambda x: x * 0.9, params0)
  attn = jnp.asarray(arrays["attention_mask"])
  ref_logp = training.token_logprobs(model_config, ref, jnp.asarray(tokens), attn, 0.7)
  batch = {k: jnp.asarray(v) for k, v in arrays.items()}
  batch.update(advantages=jnp.array([1.5, -0.5]), ref_logp=ref_logp[:, 3:])
  loss, metrics = grpo_step.grpo_objective(model_config, cfg, 0.7, False, 1, params0, batch)
  logp = training.token_logprobs(model_config, params0, jnp.asarray(tokens), attn, 0.7)
  want, want_m = grpo_loss(logp, jnp.asarray(old), ref_logp, jnp.array([1.5, -0.5]),
                           jnp.asarray(mask), cfg)
  assert float(loss) == pytest.approx(float(want), rel=1e-5)
  for k in ("kl", "clip_ratio/low_mean", "clip_ratio/high_mean", "ratio_mean"):
    assert float(metrics[k]) == pytest.approx(float(want_m[k]), rel=1e-5, abs=1e-7)
  # padding token ids are invisible to the loss
  junk = dict(batch, tokens=jnp.where(attn, batch["tokens"], 77))
  assert float(grpo_step.grpo_objective(model_config, cfg, 0.7, False, 1, params0, junk)[0]) == (
      pytest.approx(float(loss), rel=1e-6))


def test_dynamic_sampling_keeps_informative_groups(trainer, params0, optimizer, pool, requests):
  const = [requests[0].problem.tests, requests[2].problem.tests]
  pool.fn = lambda i, program, suite: 0.25 if any(suite is c for c in const) else float(i % 2)
  dapo = dataclasses.replace(trainer.cfg, dynamic_sampling=True,
                             dynamic_max_candidate_batches=3)
  trainer.cfg = dapo  # same shapes and compiled functions; only the host loop differs
  try:
    state = fresh_state(params0, optimizer)
    state, metrics, ro = trainer.step(state, params0, stream(requests), jax.random.key(1))
    assert [r.problem.id for r in ro.requests] == [requests[1].problem.id,
                                                   requests[3].problem.id]
    assert metrics["dynamic_sampling/num_batches"] == 2
    assert metrics["dynamic_sampling/frac_dropped"] == 0.5
    assert metrics["frac_exec_zero_std"] == 0.0 and metrics["num_groups"] == 2
    # one candidate batch only: one valid group, the other slot is masked padding
    trainer.cfg = dataclasses.replace(dapo, dynamic_max_candidate_batches=1)
    state, metrics, ro = trainer.step(state, params0, stream(requests), jax.random.key(2))
    assert metrics["num_groups"] == 1 and metrics["dynamic_sampling/frac_filled"] == 0.5
    assert metrics["num_tokens"] == sum(len(c) for c in ro.completions[G:2 * G]) or (
        metrics["num_tokens"] == sum(len(c) for c in ro.completions[:G]))
    assert np.isfinite(metrics["loss"])
  finally:
    trainer.cfg = dataclasses.replace(dapo, dynamic_sampling=False)


def test_dpo_step_lowers_the_dpo_loss(model_config, tok, params0, requests):
  optimizer = training.make_optimizer(5e-4, 100, schedule="constant")
  by_id = {r.problem.id: r.problem for r in requests}
  pairs = [DPOPair(requests[0].problem.id, "", "print(1)\n", "x = (\n", 1.0, 0.0),
           DPOPair(requests[1].problem.id, "", "n = int(input())\n", "import\n", 0.5, 0.0)]
  trainer = DPOTrainer(model_config, tok, DPOConfig(beta=0.1, pairs_per_step=2), optimizer, by_id)
  packed = trainer.pack(pairs)
  eos = model_config.eos_token_ids[0]
  mask = packed["chosen_loss_mask"]                                  # [B, N]: the completions
  assert (packed["chosen_tokens"][:, -mask.shape[1]:][mask] == eos).sum() == 2
  state = fresh_state(params0, optimizer)
  losses = []
  for _ in range(4):
    state, metrics = trainer.step(state, params0, pairs)
    losses.append(metrics["loss"])
  assert losses[0] == pytest.approx(np.log(2.0), abs=1e-5)  # policy == reference at the start
  assert all(b < a for a, b in zip(losses, losses[1:])), losses
  assert metrics["rewards/accuracies"] == 1.0 and metrics["rewards/margins"] > 0.0


def test_kl_in_reward_and_two_iterations(trainer, params0, optimizer, pool, requests):
  pool.fn = lambda i, program, suite: float(i % 2)
  cfg = trainer.cfg
  trainer.cfg = dataclasses.replace(cfg, num_iterations=2, kl_in_loss=False,
                                    beta_kl=0.5)   # host-side change; same compiled functions
  try:
    ref = jax.tree.map(lambda x: x * 1.05, params0)
    ro = trainer.rollouts(params0, stream(requests)(B), jax.random.key(4))
    valid = np.ones(B * G, bool)
    batch = trainer._pack(ro, valid, params0, ref)
    old, ref_logp = np.asarray(batch["old_logp"]), np.asarray(batch["ref_logp"])
    mask = np.asarray(batch["loss_mask"])                          # [B*G, N]
    batch, _ = trainer._finish_batch(batch, ro, valid)
    d = ref_logp - old
    penalty = 0.5 * ((np.exp(d) - d - 1.0) * mask).sum(axis=1)     # β Σ_t k3 per completion
    r = (ro.reward - penalty).reshape(B, G)
    adv = (r - r.mean(1, keepdims=True)) / (r.std(1, ddof=1, keepdims=True) + 1e-4)
    np.testing.assert_allclose(np.asarray(batch["advantages"]), adv.reshape(-1), rtol=1e-4,
                               atol=1e-5)
    assert penalty.min() > 0.0
    # mu = 2: the second update sees a ratio != 1 against the recomputed old log-probs
    state = fresh_state(params0, optimizer)
    state, metrics, ro = trainer.step(state, ref, stream(requests), jax.random.key(5))
    assert int(state.step) == 2
    assert metrics["ratio_max"] > 1.0 or metrics["ratio_min"] < 1.0
    assert all(np.isfinite(v) for v in metrics.values())
  finally:
    trainer.cfg = cfg
