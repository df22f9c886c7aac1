"""Sharded forward and gradient on 8 simulated CPU devices match the single-device results."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from restrl_jax import models, parallel
from restrl_jax.training import (TrainState, init_train_state, make_train_step,
                                 sft_loss, state_shardings)

MESHES = [(8, 1, 1), (2, 2, 2), (1, 4, 2)]


@pytest.fixture(scope="module")
def setup():
  config = models.get_preset("tiny")
  params = models.init_params(config, jax.random.key(0))
  tokens = jax.random.randint(jax.random.key(1), (8, 24), 3, config.vocab_size)
  lengths = jnp.array([24, 20, 24, 9, 24, 17, 1, 24])
  mask = jnp.arange(24)[None, :] >= (24 - lengths)[:, None]   # left padding  # [B, T]
  return config, params, tokens, mask


def test_mesh_shapes_and_errors():
  mesh = parallel.make_mesh((2, -1, 2))
  assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
  with pytest.raises(ValueError, match="needs 16 devices"):
    parallel.make_mesh((4, 4, 1))
  spec = parallel.logical_to_spec(("embed", "heads", "head_dim"), (128, 4, 32),
                                  parallel.make_mesh((1, 4, 2)))
  assert spec == jax.sharding.PartitionSpec("fsdp", "tensor", None)
  # a dimension the mesh axis does not divide stays unsharded
  spec = parallel.logical_to_spec(("kv_heads",), (3,), parallel.make_mesh((1, 4, 2)))
  assert spec == jax.sharding.PartitionSpec(None)


@pytest.mark.parametrize("shape", MESHES)
def test_sharded_forward_matches_single_device(setup, shape):
  config, params, tokens, mask = setup
  expected = models.logits(config, params, tokens, mask)
  mesh = parallel.make_mesh(shape)
  sharded = parallel.shard_tree(params, models.param_logical_axes(config), mesh)
  param_sharded = any(not x.sharding.is_fully_replicated for x in jax.tree.leaves(sharded))
  assert param_sharded == (shape[1] * shape[2] > 1)  # pure data parallel keeps params replicated

  def fwd(p, t, m):
    with parallel.sharding_context(mesh):
      return models.logits(config, p, t, m)

  batch = parallel.batch_sharding(mesh)
  out = jax.jit(fwd, in_shardings=(None, batch, batch))(sharded, tokens, mask)
  real = np.asarray(mask)
  np.testing.assert_allclose(np.asarray(out)[real], np.asarray(expected)[real], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("shape", MESHES)
def test_sharded_gradient_and_train_step_match(setup, shape):
  config, params, tokens, mask = setup
  batch = dict(tokens=tokens, attention_mask=mask, loss_mask=mask)
  loss_fn = functools.partial(sft_loss, config)
  ref_grads = jax.jit(jax.grad(lambda p: loss_fn(p, batch)[0]))(params)
  # SGD: the update is linear in the gradient, so 1e-4 agreement of gradients carries over
  # (Adam's first step is ~lr*sign(g) and flips on near-zero gradients).
  optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.5))
  fresh = jax.tree.map(jnp.copy, params)  # the step donates its state
  ref_state = TrainState(jnp.zeros((), jnp.int32), fresh, optimizer.init(fresh))
  ref_state, ref_metrics = make_train_step(loss_fn, optimizer)(ref_state, batch)

  mesh = parallel.make_mesh(shape)
  axes = models.param_logical_axes(config)
  # device_put may alias the source buffers, and the step donates its state: shard a copy
  sharded = parallel.shard_tree(jax.tree.map(jnp.copy, params), axes, mesh)
  with parallel.sharding_context(mesh):
    grads = jax.jit(jax.grad(lambda p, b: loss_fn(p, b)[0]))(sharded, batch)
  for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(np.asarray(g), np.asarray(r), atol=1e-4, rtol=1e-3)

  state = init_train_state(sharded, optimizer, mesh)
  shardings = state_shardings(state)
  step = make_train_step(loss_fn, optimizer, mesh=mesh, state_shardings=shardings)
  state, metrics = step(state, batch)
  np.testing.assert_allclose(float(metrics["loss"]), float(ref_metrics["loss"]), rtol=1e-5)
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref_state.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4, rtol=1e-3)
  # parameters keep their sharding through the donated step
  for a, s in zip(jax.tree.leaves(state.params), jax.tree.leaves(shardings.params)):
    assert a.sharding.is_equivalent_to(s, a.ndim)
