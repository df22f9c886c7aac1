"""fp32 master weights: LR 1e-7 steps survive in bf16 runs; fp32 runs are bit-identical."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from restrl_jax import models, training
from restrl_jax.rl import rounds
from restrl_jax.training import master_weights as mw


def _run(opt: optax.GradientTransformation, params, grads, steps: int):
  """`steps` updates with constant `grads`, in one jitted scan; returns (params, opt_state)."""
  def body(carry, _):
    p, s = carry
    updates, s = opt.update(grads, s, p)
    return (optax.apply_updates(p, updates), s), None
  (params, state), _ = jax.jit(lambda p: jax.lax.scan(body, (p, opt.init(p)), None,
                                                      length=steps))(params)
  return params, state


def test_lr_1e7_moves_fp32_master_and_then_the_bf16_cast():
  # weights 0.02 (bf16 spacing 2^-13 ~ 1.2e-4) and 1e-3 (spacing 2^-17 ~ 7.6e-6)
  params = {"w": jnp.full((8,), 0.02, jnp.bfloat16), "s": jnp.full((8,), 1e-3, jnp.bfloat16)}
  grads = jax.tree.map(jnp.ones_like, params)
  adamw = optax.adamw(1e-7, weight_decay=0.0)
  plain, _ = _run(adamw, params, grads, 1000)
  for k in params:                          # every plain bf16 step rounds back to the start
    np.testing.assert_array_equal(np.asarray(plain[k]), np.asarray(params[k]))
  opt = mw.with_master_weights(adamw, params)
  assert opt is not adamw
  for steps, w_cast_moved in ((20, False), (1000, True)):
    out, state = _run(opt, params, grads, steps)
    assert isinstance(state, mw.MasterState)
    for k in params:
      start = np.asarray(params[k], np.float64)
      moved = start - np.asarray(state.master[k], np.float64)
      np.testing.assert_allclose(moved, steps * 1e-7, rtol=0.02)   # Adam: lr per step
      assert out[k].dtype == jnp.bfloat16
      np.testing.assert_array_equal(np.asarray(out[k]),
                                    np.asarray(state.master[k].astype(jnp.bfloat16)))
    # 20 steps (2e-6) stay under half the spacing of both; 1000 (1e-4) cross it for 0.02 too
    assert bool(jnp.any(out["w"] != params["w"])) == w_cast_moved
    assert bool(jnp.any(out["s"] != params["s"])) == (steps * 1e-7 > 3.8e-6)


def test_fp32_params_are_bit_identical_with_or_without_the_wrapper():
  key = jax.random.key(0)
  params = {"a": jax.random.normal(key, (16, 8)), "b": jnp.linspace(-1.0, 1.0, 5)}
  grads = jax.tree.map(lambda x: 0.3 * jnp.sin(7.0 * x) + 1e-3, params)
  opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3, weight_decay=0.01))
  assert mw.with_master_weights(opt, params) is opt
  assert mw.for_dtype(opt, "float32") is opt
  plain, _ = _run(opt, params, grads, 7)
  wrapped, state = _run(mw.fp32_master(opt), params, grads, 7)   # forced on fp32 leaves
  for k in params:
    np.testing.assert_array_equal(np.asarray(wrapped[k]), np.asarray(plain[k]))
    np.testing.assert_array_equal(np.asarray(state.master[k]), np.asarray(plain[k]))


def test_update_without_params_is_a_named_error():
  opt = mw.fp32_master(optax.sgd(0.1))
  params = {"w": jnp.ones((2,), jnp.bfloat16)}
  with pytest.raises(ValueError, match="needs params"):
    opt.update(params, opt.init(params))


def _sft_batch(config, rows=2, length=12):
  tokens = jax.random.randint(jax.random.key(1), (rows, length), 3, config.vocab_size)
  ones = jnp.ones_like(tokens)
  return {"tokens": tokens, "attention_mask": ones, "loss_mask": ones}


def test_rounds_optimizer_trains_bf16_params_through_the_train_step():
  """The ReST rounds' optimizer on a bf16 tiny model, LR 1e-7: the master moves by ~lr per step,
  the bf16 params stay its rounding, and the per-round learning rate still reaches AdamW.
  (That the same steps without the master copy are lost: the first test.)"""
  config = dataclasses.replace(models.get_preset("tiny"), num_layers=1, dtype="bfloat16",
                               param_dtype="bfloat16")
  params = models.init_params(config, jax.random.key(0))
  assert jax.tree.leaves(params)[0].dtype == jnp.bfloat16
  cfg = rounds.RoundsConfig(dtype="bfloat16", learning_rate=1e-7, schedule="constant")
  opt = rounds.round_optimizer(cfg)
  state = training.init_train_state(jax.tree.map(jnp.copy, params), opt)
  assert isinstance(state.opt_state, mw.MasterState)
  lr_of = lambda st: float(mw.inner_state(st.opt_state)[-1].hyperparams["learning_rate"])
  assert lr_of(training.optim.with_learning_rate(state, 3e-7)) == pytest.approx(3e-7)
  state = training.optim.with_learning_rate(state, 1e-7)
  assert isinstance(state.opt_state, mw.MasterState) and lr_of(state) == pytest.approx(1e-7)
  step = training.make_train_step(functools.partial(training.sft_loss, config), opt)
  batch = _sft_batch(config)
  for _ in range(3):
    state, metrics = step(state, batch)
  assert np.isfinite(float(metrics["loss"]))
  deltas = jax.tree.map(lambda m, p: float(jnp.max(jnp.abs(m - p.astype(jnp.float32)))),
                        state.opt_state.master, params)
  assert 2e-7 < max(jax.tree.leaves(deltas)) < 4e-7          # 3 steps of at most ~1e-7 each
  same = jax.tree.map(lambda p, m: bool(jnp.all(p == m.astype(jnp.bfloat16))),
                      state.params, state.opt_state.master)
  assert all(jax.tree.leaves(same))


def test_fp32_rounds_optimizer_is_unchanged():
  cfg = rounds.RoundsConfig(dtype="float32")
  params = {"w": jnp.ones((3,), jnp.float32)}
  state = rounds.round_optimizer(cfg).init(params)
  assert not isinstance(state, mw.MasterState)
  assert isinstance(state, tuple) and len(state) == 2       # (clip, inject_hyperparams adamw)


def test_master_state_round_trips_through_a_checkpoint(tmp_path):
  """A bf16 run resumes with its fp32 master copy (not re-created from the rounded params)."""
  from restrl_jax.checkpoint import Checkpointer
  params = {"w": jnp.full((4,), 0.02, jnp.bfloat16)}
  opt = rounds.round_optimizer(rounds.RoundsConfig(dtype="bfloat16", learning_rate=1e-7))
  state = training.init_train_state(params, opt)
  grads = {"w": jnp.ones((4,), jnp.bfloat16)}
  for _ in range(5):
    updates, opt_state = opt.update(grads, state.opt_state, state.params)
    state = training.TrainState(state.step + 1, optax.apply_updates(state.params, updates),
                                opt_state)
  assert bool(jnp.all(state.opt_state.master["w"] != state.params["w"].astype(jnp.float32)))
  with Checkpointer(tmp_path / "ckpt") as ckpt:
    ckpt.save(5, {"train": state})
    like = training.init_train_state(params, opt)
    restored, _, step = ckpt.restore_latest({"train": like})
  assert step == 5 and isinstance(restored["train"].opt_state, mw.MasterState)
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored["train"])):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
