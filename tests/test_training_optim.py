"""The optimizer factory (`training.make_optimizer`): its updates equal optax's AdamW + clipping
computed directly, bit for bit, with the learning rate injected and set per step (the ReST
rounds), with a scheduled one (warm start, value model), and through the fp32 master copy of
bf16 params."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from restrl_jax import training
from restrl_jax.rl import rounds
from restrl_jax.training import master_weights, optim

B1, B2, EPS, WD, CLIP = 0.9, 0.999, 1e-6, 0.01, 1.0


def _params(dtype=jnp.float32):
  key = jax.random.key(0)
  return {"a": jax.random.normal(key, (6, 4)).astype(dtype),
          "b": jnp.linspace(-0.5, 0.5, 5).astype(dtype)}


def _grads(params, step: int):
  """Different at every step, with a global norm above CLIP (so clipping acts)."""
  return jax.tree.map(lambda p: (2.0 * jnp.sin(3.0 * p.astype(jnp.float32) + step) + 0.1)
                      .astype(p.dtype), params)


def _expected_chain(lr):
  return optax.chain(optax.clip_by_global_norm(CLIP),
                     optax.adamw(lr, b1=B1, b2=B2, eps=EPS, weight_decay=WD))


def _same(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert x.dtype == y.dtype
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_injected_learning_rate_updates_equal_adamw_with_that_rate():
  opt = training.make_optimizer(1e-3, weight_decay=WD, grad_clip=CLIP, b1=B1, b2=B2, eps=EPS,
                                param_dtype="float32", inject_learning_rate=True)
  params = _params()
  state = training.init_train_state(params, opt)
  assert not isinstance(state.opt_state, master_weights.MasterState)
  assert optim.learning_rate_of(state.opt_state) == pytest.approx(1e-3)
  state = optim.with_learning_rate(state, 3e-4)
  assert optim.learning_rate_of(state.opt_state) == pytest.approx(3e-4)
  expected = _expected_chain(3e-4)
  ref_params, ref_state = params, expected.init(params)
  for step in range(3):
    g = _grads(ref_params, step)
    u, opt_state = opt.update(g, state.opt_state, state.params)
    state = training.TrainState(state.step + 1, optax.apply_updates(state.params, u), opt_state)
    ref_u, ref_state = expected.update(g, ref_state, ref_params)
    ref_params = optax.apply_updates(ref_params, ref_u)
    _same(u, ref_u)
    _same(state.params, ref_params)


def test_injected_bf16_params_follow_an_fp32_adamw_master():
  opt = training.make_optimizer(1e-3, weight_decay=WD, grad_clip=CLIP, b1=B1, b2=B2, eps=EPS,
                                param_dtype="bfloat16", inject_learning_rate=True)
  params = _params(jnp.bfloat16)
  state = training.init_train_state(params, opt)
  assert isinstance(state.opt_state, master_weights.MasterState)
  expected = _expected_chain(1e-3)           # AdamW on an fp32 copy, rounded to bf16 by hand
  master = jax.tree.map(lambda p: p.astype(jnp.float32), params)
  ref_state = expected.init(master)
  for step in range(3):
    g = _grads(state.params, step)
    u, opt_state = opt.update(g, state.opt_state, state.params)
    state = training.TrainState(state.step + 1, optax.apply_updates(state.params, u), opt_state)
    ref_u, ref_state = expected.update(jax.tree.map(lambda x: x.astype(jnp.float32), g),
                                       ref_state, master)
    master = optax.apply_updates(master, ref_u)
    _same(state.opt_state.master, master)
    _same(state.params, jax.tree.map(lambda m: m.astype(jnp.bfloat16), master))


def test_rounds_optimizer_is_the_factory_with_the_rounds_settings():
  cfg = rounds.RoundsConfig(learning_rate=2e-4, weight_decay=WD, grad_clip=CLIP, adam_eps=EPS)
  opt, params = rounds.round_optimizer(cfg), _params()
  state = training.init_train_state(params, opt)
  expected = optax.chain(optax.clip_by_global_norm(CLIP),
                         optax.adamw(2e-4, b1=0.9, b2=0.999, eps=EPS, weight_decay=WD))
  g = _grads(params, 0)
  u, _ = opt.update(g, state.opt_state, params)
  ref_u, _ = expected.update(g, expected.init(params), params)
  _same(u, ref_u)


def test_scheduled_optimizer_updates_equal_adamw_on_the_schedule():
  opt = training.make_optimizer(1e-3, 10, warmup_steps=2, schedule="linear", weight_decay=WD,
                                grad_clip=CLIP, b1=B1, b2=B2, eps=EPS)
  lr = optax.join_schedules([optax.linear_schedule(0.0, 1e-3, 2),
                             optax.linear_schedule(1e-3, 0.0, 8)], [2])
  expected = _expected_chain(lr)
  params = ref_params = _params()
  opt_state, ref_state = opt.init(params), expected.init(params)
  for step in range(4):
    g = _grads(params, step)
    u, opt_state = opt.update(g, opt_state, params)
    ref_u, ref_state = expected.update(g, ref_state, ref_params)
    params, ref_params = optax.apply_updates(params, u), optax.apply_updates(ref_params, ref_u)
    _same(u, ref_u)


def test_factory_misuse_is_named():
  with pytest.raises(ValueError, match="needs total_steps"):
    training.make_optimizer(1e-3)
  state = training.init_train_state(_params(), training.make_optimizer(1e-3, 10))
  with pytest.raises(ValueError, match="no injected learning rate"):
    optim.with_learning_rate(state, 1e-4)
