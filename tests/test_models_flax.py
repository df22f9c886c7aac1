"""The decoder and the value head are flax.linen modules: parameters come from `Module.init`,
boxed with logical axes, and the mesh shardings are read from those boxes (8 simulated CPU
devices, tests/conftest.py)."""
import dataclasses

import flax.linen as nn
import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from restrl_jax import models, parallel
from restrl_jax.models import decode_form, hf_maps

TINY = dataclasses.replace(models.get_preset("tiny"), vocab_size=96)        # qwen2: q/k/v bias
QWEN3 = models.ModelConfig(family="qwen3", vocab_size=64, hidden_size=32, num_layers=2,
                           num_heads=4, num_kv_heads=2, head_dim=16, intermediate_size=48,
                           qk_norm=True, tie_word_embeddings=True)
TOKENS = np.zeros((1, 1), np.int32)


def _boxed(config, seed=0):
  """`Decoder.init`'s params (compiled once per structure by `init_boxed_params`)."""
  return models.init_boxed_params(config, jax.random.key(seed))


def _at(tree, path):
  for key in path:
    tree = tree[key]
  return tree


def _leaves(tree):
  return jax.tree_util.tree_leaves_with_path(tree, is_leaf=lambda x: isinstance(
      x, nn.LogicallyPartitioned))


@pytest.mark.parametrize("config", [TINY, QWEN3], ids=["qwen2", "qwen3-tied"])
def test_init_boxes_every_parameter_with_its_logical_axes(config):
  boxed = _boxed(config)
  for path, leaf in _leaves(boxed):
    name = jax.tree_util.keystr(path)
    assert isinstance(leaf, nn.LogicallyPartitioned), name
    assert len(leaf.names) == leaf.value.ndim, (name, leaf.names, leaf.value.shape)
    assert all(n in dict(parallel.LOGICAL_RULES) for n in leaf.names if n is not None), name
    # the layer scan stacks every layer leaf on a leading [L] axis named "layers"
    assert (leaf.names[0] == "layers") == name.startswith("['layers']"), name
    if name.startswith("['layers']"):
      assert leaf.value.shape[0] == config.num_layers, name
  names = parallel.logical_axes(boxed)
  assert names["layers"]["attn"]["q"]["kernel"] == ("layers", "embed", "heads", "head_dim")
  assert names["embed"]["embedding"] == ("vocab", "embed")
  assert names == models.param_logical_axes(config)


@pytest.mark.parametrize("config", [QWEN3], ids=["qwen3-tied"])
def test_init_params_is_the_unboxed_module_init(config):
  """`init_params` returns `Decoder.init`'s arrays, unboxed, in the tree HF import/export and
  checkpoints use: every hf_maps row's path with its shape, nothing else, the param dtype."""
  key = jax.random.key(3)
  params = models.init_params(config, key, std=0.02)
  init = jax.jit(lambda k: models.Decoder(config).init(k, TOKENS)["params"])
  unboxed = nn.meta.unbox(init(key))
  assert jax.tree.structure(params) == jax.tree.structure(unboxed)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(unboxed)):
    np.testing.assert_array_equal(a, b)
  shapes = models.param_shapes(config)
  paths = {row.path for row in hf_maps.rows_for(config)}
  got = {tuple(k.key for k in path) for path, _ in jax.tree_util.tree_leaves_with_path(params)}
  assert got == paths
  for path in paths:
    leaf, shape = _at(params, path), _at(shapes, path)
    assert leaf.shape == shape and leaf.dtype == np.dtype(config.param_dtype), path
  assert ("lm_head" in params) == (not config.tie_word_embeddings)


def test_decode_form_names_are_the_unstacked_modules():
  """The decode form (`decode_form.unstack_layers`) is the tree of `Decoder(unstacked=True)`:
  per-layer submodules layers_0 ... layers_{L-1}."""
  params = models.init_params(TINY, jax.random.key(0))
  unstacked = jax.eval_shape(models.Decoder(TINY, unstacked=True).init, jax.random.key(0), TOKENS)
  want = jax.tree.map(np.shape, nn.meta.unbox(unstacked["params"]))
  assert jax.tree.map(np.shape, decode_form.unstack_layers(params)) == want


def test_shardings_on_an_8_device_mesh_derive_from_the_annotations():
  assert jax.device_count() == 8
  mesh = parallel.make_mesh((1, 4, 2))  # fsdp 4, tensor 2
  boxed = models.abstract_params(TINY)
  shardings = models.param_shardings(TINY, mesh)
  # each sharding is the box's logical names mapped through LOGICAL_RULES
  for (path, leaf), sharding in zip(_leaves(boxed), jax.tree.leaves(shardings)):
    want = parallel.logical_to_spec(leaf.names, leaf.value.shape, mesh)
    assert sharding == NamedSharding(mesh, want), jax.tree_util.keystr(path)
  assert shardings["layers"]["attn"]["q"]["kernel"].spec == P(None, "fsdp", "tensor", None)
  assert shardings["layers"]["mlp"]["down"]["kernel"].spec == P(None, "tensor", "fsdp")
  assert shardings["embed"]["embedding"].spec == P("tensor", "fsdp")
  assert shardings["layers"]["attn_norm"]["scale"].spec == P(None, "fsdp")
  # where every dim divides, flax's own logical -> mesh mapping agrees
  flax_shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed), mesh,
                                               parallel.LOGICAL_RULES)
  for ours, theirs in zip(jax.tree.leaves(shardings), jax.tree.leaves(flax_shardings)):
    assert ours.is_equivalent_to(theirs, len(ours.spec)), (ours, theirs)
  # other rules, other shardings: the annotations are what the rules act on
  rules = tuple((name, None if name == "embed" else axes) for name, axes in parallel.LOGICAL_RULES)
  replicated_embed = parallel.boxed_shardings(boxed, mesh, rules)
  assert replicated_embed["embed"]["embedding"].spec == P("tensor", None)
  # placed params carry those shardings, and the sharded forward runs
  params = jax.device_put(models.init_params(TINY, jax.random.key(0)), shardings)
  kernel = params["layers"]["attn"]["q"]["kernel"]                        # [L, D, H, Dh]
  assert kernel.addressable_shards[0].data.shape == (4, 128 // 4, 4 // 2, 32)
  tokens = np.arange(16, dtype=np.int32).reshape(2, 8) % TINY.vocab_size
  with parallel.sharding_context(mesh):
    out = jax.jit(lambda p, t: models.logits(TINY, p, t))(params, tokens)
  want = jax.jit(lambda p, t: models.logits(TINY, p, t))(jax.device_get(params), tokens)
  np.testing.assert_allclose(np.asarray(out), np.asarray(want), atol=1e-4, rtol=1e-4)


def test_value_head_is_a_module_with_logical_axes():
  boxed = models.ValueHead(TINY.hidden_size).init(jax.random.key(0),
                                                  np.zeros((1, TINY.hidden_size)))["params"]
  assert boxed["kernel"].names == ("embed", None)
  assert boxed["kernel"].value.shape == (TINY.hidden_size, 1)
  head = models.init_value_head(TINY, jax.random.key(0))
  assert jax.tree.map(np.shape, head) == {"kernel": (TINY.hidden_size, 1)}
  axes = models.value_logical_axes(TINY)
  assert axes == {"backbone": models.param_logical_axes(TINY), "head": {"kernel": ("embed", None)}}
  mesh = parallel.make_mesh((1, 4, 2))
  vparams = {"backbone": models.init_params(TINY, jax.random.key(0)), "head": head}
  shardings = parallel.tree_shardings(axes, vparams, mesh)
  assert shardings["head"]["kernel"].spec == P("fsdp", None)
  # what `value.place_value_params` uses: read from the boxed trees of both modules
  assert models.value_param_shardings(TINY, mesh) == shardings
