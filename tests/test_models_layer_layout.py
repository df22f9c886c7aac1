"""Layer layouts (`models.layer_layout`): a train state kept per layer (the CPU default) trains,
shards, checkpoints and exports exactly like the stacked one it comes from.

- conversions round-trip params and a whole AdamW TrainState (numpy: views, no copies);
- per-layer logical axes give each layer's weights the stacked weights' sharding minus the
  layer axis, on a (2, 2, 2) mesh;
- two AdamW steps from the per-layer state give the stacked one's losses and agree with its
  state up to float summation order, on one device and on the (2, 2, 2) mesh;
- a checkpoint of a per-layer state holds stacked layers (restorable into either layout, with
  the target's shardings), and `save_hf` writes the same tensors from either layout.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from restrl_jax import models, parallel
from restrl_jax.checkpoint import Checkpointer
from restrl_jax.models import decoder
from restrl_jax.training import (init_train_state, make_optimizer, make_train_step, sft_loss,
                                 state_shardings)

CONFIG = dataclasses.replace(models.get_preset("tiny"), vocab_size=97, num_layers=3)


def _params():
  return models.init_params(CONFIG, jax.random.key(0), std=0.2)


def _batch():
  rng = np.random.default_rng(0)
  tokens = jnp.asarray(rng.integers(3, CONFIG.vocab_size, (8, 12)), jnp.int32)
  mask = np.ones((8, 12), bool)
  mask[0, :4] = False  # left padding
  return dict(tokens=tokens, attention_mask=jnp.asarray(mask), loss_mask=jnp.asarray(mask))


def _assert_trees_equal(a, b, atol=0.0):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert x.shape == y.shape and x.dtype == y.dtype
    np.testing.assert_allclose(np.asarray(x, np.float32), np.asarray(y, np.float32), atol=atol)


def test_conversions_round_trip_params_and_train_state():
  params = _params()
  per_layer = models.to_layout(params, "per_layer")
  assert models.layout_of(params) == "stacked" and models.layout_of(per_layer) == "per_layer"
  assert len(per_layer["layers"]) == 3
  q = per_layer["layers"][1]["attn"]["q"]["kernel"]
  np.testing.assert_array_equal(q, params["layers"]["attn"]["q"]["kernel"][1])
  assert per_layer["embed"] is params["embed"]                    # only the layers change
  _assert_trees_equal(models.to_layout(per_layer, "stacked"), params)
  assert models.to_layout(per_layer, "per_layer")["layers"] is per_layer["layers"]  # as is

  # a whole TrainState: the optimizer's moments follow the params into the layout
  optimizer = make_optimizer(1e-3, 10)
  state = init_train_state(params, optimizer)
  state_pl = models.to_layout(state, "per_layer")
  mu = state_pl.opt_state[1][0].mu
  assert models.layout_of(mu) == "per_layer" and len(mu["layers"]) == 3
  _assert_trees_equal(models.to_layout(state_pl, "stacked"), state)
  assert models.layout_of({"step": 1}) is None

  # host (numpy) params: per-layer entries are views of the stacked arrays
  host = jax.device_get(params)
  host_pl = models.to_layout(host, "per_layer")
  assert np.shares_memory(host_pl["layers"][2]["mlp"]["up"]["kernel"],
                          host["layers"]["mlp"]["up"]["kernel"])
  with pytest.raises(ValueError, match="layer layout must be one of"):
    models.to_layout(params, "rows")


def test_params_layout_follows_the_layer_loop():
  assert models.params_layout(CONFIG) == "per_layer"           # CPU resolves "unroll"
  assert models.params_layout(CONFIG, "scan") == "stacked"
  assert models.params_layout(dataclasses.replace(CONFIG, layer_loop="scan")) == "stacked"


def test_per_layer_axes_shard_like_the_stacked_weights():
  mesh = parallel.make_mesh((2, 2, 2))
  params = _params()
  per_layer = models.to_layout(params, "per_layer")
  stacked_sh = parallel.tree_shardings(models.param_logical_axes(CONFIG), params, mesh)
  axes = models.param_logical_axes(CONFIG, like=per_layer)
  assert axes["layers"][0]["attn"]["q"]["kernel"] == ("embed", "heads", "head_dim")
  per_layer_sh = parallel.tree_shardings(axes, per_layer, mesh)
  for i in range(3):
    for s, p in zip(jax.tree.leaves(stacked_sh["layers"]),
                    jax.tree.leaves(per_layer_sh["layers"][i])):
      assert s.spec[0] is None and tuple(s.spec[1:]) == tuple(p.spec)
  assert any(any(a is not None for a in s.spec) for s in jax.tree.leaves(per_layer_sh))


LEARNING_RATE = 1e-2


def _assert_adamw_states_close(a, b):
  """Two AdamW states reached by the same steps in different float summation orders. AdamW
  divides each gradient element by its own running scale, so a rounding difference in a tiny
  gradient element moves that parameter by a visible fraction of the learning rate (0.3% of it
  seen on a machine without AMX): parameters must agree to 2% of one step's size, far below the
  whole step (or more) that a mixed-up layer or a missed update moves them by; the moments,
  linear in the gradients (and their squares), to 0.1% of each array's largest entry."""
  assert jax.tree.structure(a) == jax.tree.structure(b)
  np.testing.assert_array_equal(a.step, b.step)
  _assert_trees_equal(a.params, b.params, atol=0.02 * LEARNING_RATE)
  for x, y in zip(jax.tree.leaves(a.opt_state), jax.tree.leaves(b.opt_state)):
    assert x.shape == y.shape and x.dtype == y.dtype
    y = np.asarray(y, np.float32)
    np.testing.assert_allclose(np.asarray(x, np.float32), y, rtol=0,
                               atol=1e-3 * float(np.abs(y).max(initial=0.0)) + 1e-12)


def _two_steps(params, mesh=None):
  optimizer = make_optimizer(LEARNING_RATE, 10, schedule="constant")
  params = jax.tree.map(jnp.copy, params)      # the step donates its state
  if mesh is not None:
    params = parallel.shard_tree(params, models.param_logical_axes(CONFIG, like=params), mesh)
  state = init_train_state(params, optimizer, mesh)
  shardings = state_shardings(state) if mesh is not None else None
  step = make_train_step(functools.partial(sft_loss, CONFIG), optimizer, mesh, shardings)
  losses = []
  for _ in range(2):
    state, metrics = step(state, _batch())
    losses.append(float(metrics["loss"]))
  return state, losses


@pytest.mark.parametrize("mesh_shape", [None, (2, 2, 2)])
def test_per_layer_train_state_steps_like_the_stacked_one(mesh_shape):
  mesh = None if mesh_shape is None else parallel.make_mesh(mesh_shape)
  params = _params()
  stacked, stacked_losses = _two_steps(params, mesh)
  per_layer, per_layer_losses = _two_steps(models.to_layout(params, "per_layer"), mesh)
  assert models.layout_of(per_layer.params) == "per_layer"
  np.testing.assert_allclose(per_layer_losses, stacked_losses, rtol=1e-5)
  assert stacked_losses[1] < stacked_losses[0]
  _assert_adamw_states_close(models.to_layout(per_layer, "stacked"), stacked)


def test_checkpoint_holds_stacked_layers_and_restores_either_layout(tmp_path):
  mesh = parallel.make_mesh((2, 2, 2))
  state, _ = _two_steps(models.to_layout(_params(), "per_layer"), mesh)
  with Checkpointer(tmp_path / "ckpt") as ckpt:
    ckpt.save(2, {"train": state}, {"note": "per layer"})
  stacked_like = {"train": models.to_layout(state, "stacked")}
  with Checkpointer(tmp_path / "ckpt") as ckpt:
    as_stacked, meta = ckpt.restore(2, stacked_like)
    as_per_layer, _ = ckpt.restore(2, {"train": state})
  assert meta == {"note": "per layer"}
  _assert_trees_equal(as_stacked, stacked_like)
  _assert_trees_equal(as_per_layer, {"train": state})
  for got, like in zip(jax.tree.leaves(as_per_layer), jax.tree.leaves({"train": state})):
    assert got.sharding.is_equivalent_to(like.sharding, got.ndim)
  # on disk the layers are stacked: a plain orbax read sees [L, ...] arrays
  raw = ocp.StandardCheckpointer().metadata(tmp_path / "ckpt" / "2" / "state")
  tree = getattr(raw, "item_metadata", raw)
  assert tuple(tree["train"]["params"]["layers"]["mlp"]["up"]["kernel"].shape)[0] == 3


def test_save_hf_writes_the_same_tensors_from_either_layout(tmp_path):
  params = _params()
  per_layer = models.to_layout(params, "per_layer")
  want = models.hf_tensors(CONFIG, params)
  got = models.hf_tensors(CONFIG, per_layer)
  assert list(got) == list(want)
  for key in want:
    np.testing.assert_array_equal(got[key], want[key])
  models.save_hf(CONFIG, per_layer, tmp_path / "hf")
  _, loaded = models.load_hf(tmp_path / "hf")
  _assert_trees_equal(loaded, params)
  assert decoder.unstack_layers(loaded)["layers"][0].keys() == per_layer["layers"][0].keys()
