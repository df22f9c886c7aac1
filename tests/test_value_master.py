"""bf16 value models train at the paper's LR 1e-7 through an fp32 master copy
(`value.train.value_optimizer`); fp32 value models keep the plain optimizer, bit for bit."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from restrl_jax import models, training
from restrl_jax.tokenizer import embedded_tokenizer
from restrl_jax.training.master_weights import MasterState
from restrl_jax.value import data
from restrl_jax.value.train import ValueTrainConfig, _Run, value_optimizer
from restrl_jax.warmstart.train import export_policy, policy_config


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
  tok = embedded_tokenizer()
  cfg = dataclasses.replace(policy_config(tok), num_layers=1)
  params = models.init_params(cfg, jax.random.key(0))
  return export_policy(cfg, params, tok, tmp_path_factory.mktemp("policy") / "policy")


def _cfg(dtype: str) -> ValueTrainConfig:
  return ValueTrainConfig(learning_rate=1e-7, epochs=1, batch_size=4, max_length=64, min_eval=4,
                          evals=1, dtype=dtype, pad_multiple=32, score_batch_size=8,
                          warmup_steps=0, schedule="constant")


def _examples(n: int = 12) -> list:
  return [data.ValueExample(f"\n<prompt>\nP{i}\n<answer>\nx = {i}\n", float(i % 2), "")
          for i in range(n)]


def _f32(tree):
  return jax.tree.map(lambda x: np.asarray(jax.device_get(x), np.float32), tree)


def test_bf16_value_params_move_their_fp32_master_at_lr_1e7(backbone):
  run = _Run(_cfg("bfloat16"), _examples(), backbone, None)
  leaves = jax.tree.leaves(run.state.params)
  assert any(x.dtype == jnp.bfloat16 for x in leaves)
  assert isinstance(run.state.opt_state, MasterState)
  before = _f32(run.state.params)
  state, metrics = run.step_fn(run.state, run.batch(0))
  master, after = _f32(state.opt_state.master), _f32(state.params)
  moved = [float(np.abs(m - b).max()) for m, b in zip(jax.tree.leaves(master),
                                                      jax.tree.leaves(before))]
  # Adam's first step moves every weight with a gradient by ~lr: the master records it ...
  assert 1e-8 < max(moved) < 1e-6, moved
  # ... the bf16 params are the master rounded (a 1e-7 step vanishes in bf16 at this scale)
  for m, p, x in zip(jax.tree.leaves(master), jax.tree.leaves(after),
                     jax.tree.leaves(state.params)):
    expect = np.asarray(jnp.asarray(m).astype(x.dtype).astype(jnp.float32))
    np.testing.assert_array_equal(p, expect)
  # a second step accumulates on the master, not on the rounded params
  state2, _ = run.step_fn(state, run.batch(1))
  master2 = _f32(state2.opt_state.master)
  assert max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(master2),
                                                        jax.tree.leaves(master))) > 1e-8


def test_fp32_value_optimizer_is_the_plain_one_bit_for_bit(backbone):
  cfg = _cfg("float32")
  run = _Run(cfg, _examples(), backbone, None)
  assert not isinstance(run.state.opt_state, MasterState)
  params = run.state.params
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
  plain = training.make_optimizer(cfg.learning_rate, run.total, cfg.warmup_steps, cfg.schedule,
                                  cfg.weight_decay, cfg.grad_clip)
  ours = value_optimizer(cfg, run.total)
  grads = jax.tree.map(lambda p: jnp.full(p.shape, 0.3, p.dtype), params)
  u_plain, _ = plain.update(grads, plain.init(params), params)
  u_ours, _ = ours.update(grads, ours.init(params), params)
  for a, b in zip(jax.tree.leaves(u_plain), jax.tree.leaves(u_ours)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert float(np.abs(np.asarray(jax.tree.leaves(u_ours)[0])).max()) > 0
