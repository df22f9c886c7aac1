"""Gradient accumulation: 4 micro-batches give the full-batch update for every loss aggregation
mode (token-mean over the batch is not the mean of micro-batch token-means) and for DPO."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from restrl_jax import models, parallel, training
from restrl_jax.rl import grpo_step, losses
from restrl_jax.rl.aggregation import LOSS_AGGREGATION
from restrl_jax.rl.losses import GRPOLossConfig
from restrl_jax.training import accumulate

ROWS, P, N = 8, 6, 10
CONFIG = dataclasses.replace(models.get_preset("tiny"), num_layers=1, vocab_size=64,
                             hidden_size=32, num_heads=2, num_kv_heads=1, head_dim=16,
                             intermediate_size=64)


@pytest.fixture(scope="module")
def params():
  return models.init_params(CONFIG, jax.random.key(0))


def _grpo_batch(group: int = 1) -> dict:
  """B*G = 8 rows of very different completion lengths (one empty: an all-masked row), with
  old / ref log-probs away from the policy's so the clip and the KL both act; each run of
  `group` consecutive rows shares one prompt."""
  rng = np.random.default_rng(0)
  lengths = [10, 1, 7, 0, 3, 10, 5, 2]
  prompts = [list(rng.integers(3, 64, rng.integers(1, P + 1))) for _ in range(ROWS // group)]
  prompts = [p for p in prompts for _ in range(group)]
  completions = [list(rng.integers(3, 64, n)) for n in lengths]
  logps = [rng.normal(-4.0, 1.0, n).astype(np.float32) for n in lengths]
  batch = grpo_step.pack_sequences(prompts, completions, P, N, 0, completion_logps=logps)
  batch["ref_logp"] = rng.normal(-4.0, 1.0, (ROWS, N)).astype(np.float32)
  batch["advantages"] = rng.normal(0.0, 1.0, ROWS).astype(np.float32)
  return {k: jnp.asarray(v) for k, v in batch.items()}


def _delta(step, params, batch):
  """(params after one step - params before, metrics) with a plain SGD step (update = -grad)."""
  state = training.init_train_state(jax.tree.map(jnp.copy, params), optax.sgd(1.0))
  new, metrics = step(state, batch)
  return jax.tree.map(lambda a, b: np.asarray(a - b), new.params, params), metrics


def _assert_same_update(d1, d4):
  scale = max(float(np.abs(x).max()) for x in jax.tree.leaves(d1))
  assert scale > 0.0
  for a, b in zip(jax.tree.leaves(d1), jax.tree.leaves(d4)):
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * scale)


MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")


def toy_objective(cfg: GRPOLossConfig, params, batch):
  """The real `grpo_loss` on a bigram policy (cheap to compile; the model does not matter to
  how micro-batches combine): logits of token t+1 = emb[token t] @ out, at the N completion
  tokens."""
  logits = params["emb"][batch["tokens"][:, P - 1:-1]] @ params["out"] / 0.7   # [B, N, V]
  logz = jax.nn.logsumexp(logits, axis=-1)                                  # [B, N]
  picked = jnp.take_along_axis(logits, batch["tokens"][:, P:, None], axis=-1)[..., 0]
  return losses.grpo_loss(picked - logz, batch["old_logp"], batch["ref_logp"],
                          batch["advantages"], batch["loss_mask"].astype(jnp.float32), cfg)


@pytest.mark.parametrize("mode", MODES)
def test_four_micro_batches_equal_the_full_batch_grpo_update(mode):
  keys = jax.random.split(jax.random.key(3))
  toy = {"emb": jax.random.normal(keys[0], (64, 16)), "out": jax.random.normal(keys[1], (16, 64))}
  cfg = GRPOLossConfig(beta_kl=0.1, loss_aggregation=mode, epsilon_high=0.28)
  objective = functools.partial(toy_objective, cfg)
  batch = _grpo_batch()
  one = accumulate.make_accum_train_step(objective, optax.sgd(1.0), 1)
  four = accumulate.make_accum_train_step(objective, optax.sgd(1.0), 4)
  (d1, m1), (d4, m4) = _delta(one, toy, batch), _delta(four, toy, batch)
  _assert_same_update(d1, d4)
  for key in ("loss", "grad_norm", "num_tokens", "loss_denominator", "kl",
              "clip_ratio/region_mean", "ratio_max", "ratio_min"):
    assert float(m4[key]) == pytest.approx(float(m1[key]), rel=1e-5, abs=1e-6), key
  assert 0.0 < float(m1["clip_ratio/region_mean"]) < 1.0   # the clip acts on some tokens
  # the naive mean of micro-batch losses is a different number (why the denominators matter)
  micro = jax.tree.map(lambda x: accumulate.split_rows(x, 4), batch)
  naive = np.mean([float(objective(toy, jax.tree.map(lambda x: x[j], micro))[0])
                   for j in range(4)])
  assert abs(naive - float(m1["loss"])) > 1e-4 * abs(float(m1["loss"]))


def test_every_registered_aggregation_is_covered():
  # aliases (bnpo, dapo, grpo, dr_grpo) share a function with one of MODES
  registered = {LOSS_AGGREGATION.get(n) for n in LOSS_AGGREGATION.names()}
  assert registered == {LOSS_AGGREGATION.get(m) for m in MODES}


def test_dpo_accumulation_equals_full_batch_with_an_invalid_pair(params):
  rng = np.random.default_rng(1)
  prompts = [list(rng.integers(3, 64, 4)) for _ in range(4)]
  batch = {}
  for side, lens in (("chosen", [3, 5, 2, 4]), ("rejected", [6, 1, 3, 2])):
    packed = grpo_step.pack_sequences(prompts, [list(rng.integers(3, 64, n)) for n in lens],
                                      4, 6, 0)
    batch.update({f"{side}_{k}": jnp.asarray(v) for k, v in packed.items()})
  batch.update(ref_chosen=jnp.asarray(rng.normal(-20, 2, 4), jnp.float32),
               ref_rejected=jnp.asarray(rng.normal(-20, 2, 4), jnp.float32),
               valid=jnp.array([True, True, False, True]))
  objective = functools.partial(grpo_step.dpo_objective, CONFIG, 0.1, 0.0, False)
  d1, m1 = _delta(accumulate.make_accum_train_step(objective, optax.sgd(1.0), 1), params, batch)
  d2, m2 = _delta(accumulate.make_accum_train_step(objective, optax.sgd(1.0), 2), params, batch)
  _assert_same_update(d1, d2)
  assert float(m2["loss"]) == pytest.approx(float(m1["loss"]), rel=1e-6)
  assert float(m2["loss_denominator"]) == 3.0
  assert float(m2["rewards/margins"]) == pytest.approx(float(m1["rewards/margins"]), rel=1e-5)


def test_split_rows_is_strided_and_errors_name_the_problem(params):
  x = jnp.arange(8)
  np.testing.assert_array_equal(np.asarray(accumulate.split_rows(x, 4)),
                                [[0, 4], [1, 5], [2, 6], [3, 7]])
  with pytest.raises(ValueError, match="grad_accum_steps=3"):
    accumulate.split_rows(x, 3)
  with pytest.raises(ValueError, match="grad_accum_steps must be >= 1"):
    accumulate.make_accum_train_step(lambda p, b: (0.0, {}), optax.sgd(1.0), 0)
  sft = functools.partial(training.sft_loss, CONFIG)       # no loss_denominator in its metrics
  step = accumulate.make_accum_train_step(sft, optax.sgd(1.0), 2)
  tokens = jnp.ones((4, 5), jnp.int32)
  batch = {"tokens": tokens, "attention_mask": tokens, "loss_mask": tokens}
  with pytest.raises(ValueError, match="loss_denominator"):
    step(training.init_train_state(jax.tree.map(jnp.copy, params), optax.sgd(1.0)), batch)


def test_accumulation_on_a_mesh_matches_one_device(params):
  """The real GRPO objective (1-layer model) on a (2, 2, 2) mesh: 8 rows over 4 batch shards,
  2 micro-batches of 4 strided rows (one per shard), against one device without accumulation."""
  mesh = parallel.make_mesh((2, 2, 2), jax.devices()[:8])
  cfg = GRPOLossConfig(beta_kl=0.1)
  objective = functools.partial(grpo_step.grpo_objective, CONFIG, cfg, 0.7, False, 1)
  batch = _grpo_batch()
  d1, m1 = _delta(accumulate.make_accum_train_step(objective, optax.sgd(1.0), 1), params, batch)
  host = jax.device_get(params)     # fresh device buffers: the step donates its state
  sharded = parallel.shard_tree(host, models.param_logical_axes(CONFIG), mesh)
  state = training.init_train_state(sharded, optax.sgd(1.0), mesh)
  step = accumulate.make_accum_train_step(objective, optax.sgd(1.0), 2, mesh,
                                          training.state_shardings(state))
  new, m2 = step(state, grpo_step.place_batch(batch, mesh))
  d2 = jax.tree.map(lambda a, b: np.asarray(a) - b, new.params, host)
  _assert_same_update(d1, d2)
  assert float(m2["loss"]) == pytest.approx(float(m1["loss"]), rel=1e-5)


def test_a_shared_prompt_gives_the_plain_update_on_one_device_and_on_a_mesh(params):
  """Groups of 4 rows with one prompt: computing it once per group (share 4; on the mesh 2
  micro-batches of strided rows, share 2) gives the update of the plain forward (share 1)."""
  cfg = GRPOLossConfig(beta_kl=0.1)
  batch = _grpo_batch(group=4)
  objective = lambda share: functools.partial(grpo_step.grpo_objective, CONFIG, cfg, 0.7, False,
                                              share)
  d1, m1 = _delta(accumulate.make_accum_train_step(objective(1), optax.sgd(1.0), 1), params,
                  batch)
  d4, m4 = _delta(accumulate.make_accum_train_step(objective(4), optax.sgd(1.0), 1), params,
                  batch)
  _assert_same_update(d1, d4)
  assert float(m4["loss"]) == pytest.approx(float(m1["loss"]), rel=1e-5)
  mesh = parallel.make_mesh((2, 2, 2), jax.devices()[:8])
  host = jax.device_get(params)
  state = training.init_train_state(
      parallel.shard_tree(host, models.param_logical_axes(CONFIG), mesh), optax.sgd(1.0), mesh)
  step = accumulate.make_accum_train_step(objective(2), optax.sgd(1.0), 2, mesh,
                                          training.state_shardings(state))
  new, m2 = step(state, grpo_step.place_batch(batch, mesh))
  _assert_same_update(d1, jax.tree.map(lambda a, b: np.asarray(a) - b, new.params, host))
  assert float(m2["loss"]) == pytest.approx(float(m1["loss"]), rel=1e-5)
