"""Random decoder parameters drawn as `models.init_params` drew them before the decoder became a
flax module: ONE flat N(0, std) draw over the normal-initialised leaves (kernels, embeddings) in
tree order, norm scales 1, biases 0.

`models.init_params` is now `Decoder.init` (one draw per parameter), whose key-0 values differ.
Fixtures whose behaviour was tuned on the earlier draws keep them with this helper: the
known-answer start policy (from flax's key-0 draw ReST-DPO moved its mass to tokens in neither
pair, reward 0) and the search drivers' random policy (from flax's keys 0-3 some searches hit
their step cap before spending the sample budget).
"""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from restrl_jax import models


def flat_init_params(config: models.ModelConfig, rng: jax.Array, std: float = 0.02) -> dict:
  """Parameters in the tree of `models.init_params(config, ...)`, drawn the earlier way."""
  shapes = nn.meta.unbox(models.abstract_params(config))
  leaves = jax.tree_util.tree_leaves_with_path(shapes)
  kinds = ["ones" if path[-1].key == "scale" else "zeros" if path[-1].key == "bias" else "normal"
           for path, _ in leaves]
  sizes = [math.prod(x.shape) if kind == "normal" else 0 for (_, x), kind in zip(leaves, kinds)]
  flat = std * jax.random.normal(rng, (sum(sizes),), jnp.float32)
  offsets = np.cumsum([0] + sizes)
  dtype = jnp.dtype(config.param_dtype)
  values = []
  for i, ((_, x), kind) in enumerate(zip(leaves, kinds)):
    if kind == "normal":
      values.append(flat[offsets[i]:offsets[i + 1]].reshape(x.shape).astype(dtype))
    else:
      values.append((jnp.ones if kind == "ones" else jnp.zeros)(x.shape, dtype))
  return jax.tree.unflatten(jax.tree.structure(shapes), values)
