"""The decoder's parameterised leaves as flax.linen modules: token embedding, RMSNorm and the
linear projection.

Every parameter is created through `nn.with_logical_partitioning`, so `Module.init` returns it
boxed with its logical axis names ("vocab", "embed", "heads", ...; `restrl_jax.parallel` maps
them to mesh axes); `apply` takes the plain (unboxed) arrays. Initialisation: N(0, init_std)
for kernels and embeddings (drawn in float32, stored in the parameter dtype), ones for norm
scales, zeros for biases.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from restrl_jax.models import layers, matmul
from restrl_jax.parallel import constrain

Axes = tuple[str | None, ...]


def normal_init(std: float):
  """N(0, std) drawn in float32 and cast to the parameter dtype."""
  def init(key, shape, dtype=jnp.float32):
    return (std * jax.random.normal(key, shape, jnp.float32)).astype(dtype)
  return init


def logical_param(module: nn.Module, name: str, init, shape: tuple[int, ...], axes: Axes,
                  dtype) -> jax.Array:
  """`module.param(name, ...)` boxed with logical axes `axes` (one name per dim of `shape`)."""
  if len(axes) != len(shape):
    raise ValueError(f"parameter {name!r}: {len(axes)} axis names {axes} for shape {shape}")
  return module.param(name, nn.with_logical_partitioning(init, axes), shape, dtype)


def dense(x: jax.Array, kernel: jax.Array, dtype, bias: jax.Array | None = None,
          out_dtype=None) -> jax.Array:
  """x [..., K] @ kernel [K, N] -> [..., N] as ONE 2-D matmul [M, K] @ [K, N]: on CPU a
  contraction over several leading dims (e.g. "btd,df->btf") made XLA transpose the activations
  for the weight gradient, ~2x the cost of the whole backward pass of the MLP. Low-precision
  compute accumulates in float32 (`matmul.linear`)."""
  y = matmul.linear(x.reshape(-1, x.shape[-1]), kernel, dtype, bias=bias,
                    out_dtype=out_dtype)                                   # [M, N]
  return y.reshape(*x.shape[:-1], kernel.shape[-1])


class Embed(nn.Module):
  """Token embedding table `embedding` [V, D]; also the tied output projection (`attend`)."""
  vocab_size: int
  hidden_size: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  init_std: float = 0.02

  def setup(self):
    self.embedding = logical_param(self, "embedding", normal_init(self.init_std),
                                   (self.vocab_size, self.hidden_size), ("vocab", "embed"),
                                   self.param_dtype)                       # [V, D]

  def __call__(self, tokens: jax.Array) -> jax.Array:
    """tokens [B, T] int -> embeddings [B, T, D] in the compute dtype."""
    if tokens.ndim != 2:
      raise ValueError(f"tokens must be [B, T], got shape {tokens.shape}")
    x = jnp.take(self.embedding, tokens, axis=0).astype(self.dtype)      # [B, T, D]
    return constrain(x, ("batch", "seq", "act_embed"))

  def attend(self, h: jax.Array) -> jax.Array:
    """h [M, D] -> logits [M, V] float32 against the table (tied word embeddings)."""
    return matmul.linear(h, self.embedding, self.dtype, layout="nk", out_dtype=jnp.float32)


class RMSNorm(nn.Module):
  """HF-style RMSNorm over the last dim (`layers.rms_norm`), scale `scale` [size]."""
  size: int
  axis: str            # the logical name of the normalised dim ("embed" or "head_dim")
  eps: float = 1e-6
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = logical_param(self, "scale", nn.initializers.ones, (self.size,), (self.axis,),
                          self.param_dtype)                                # [size]
    return layers.rms_norm(x, scale, self.eps)


class Projection(nn.Module):
  """x [..., K] -> [..., N] through `kernel` of `kernel_shape`, whose first `in_dims` dims are
  the input (K is their product, N the product of the rest: q's [D, H, Dh] is used as
  [D, H * Dh], o's [H, Dh, D] as [H * Dh, D]; free reshapes), plus `bias` over the output dims
  when `bias_axes` is given (added to the float32 accumulator in low precision).

  Decode params on CPU (`models.decode_form.decode_params`) may hold `kernel_t` [N, K] instead
  of `kernel`, used in an NT matmul: at a decode step's few rows XLA:CPU streams the weights
  faster that way (bench/sampler.py).
  """
  kernel_shape: tuple[int, ...]
  kernel_axes: Axes
  in_dims: int = 1
  bias_axes: Axes | None = None
  dtype: Any = jnp.float32       # compute
  param_dtype: Any = jnp.float32
  out_dtype: Any = None          # default: the compute dtype
  init_std: float = 0.02

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    bias = None
    if self.bias_axes is not None:
      bias = logical_param(self, "bias", nn.initializers.zeros,
                           self.kernel_shape[self.in_dims:], self.bias_axes,
                           self.param_dtype).reshape(-1)                   # [N]
    if self.has_variable("params", "kernel_t"):
      kernel_t = self.get_variable("params", "kernel_t")                   # [N, K]
      y = matmul.linear(x.reshape(-1, x.shape[-1]), kernel_t, self.dtype, layout="nk",
                        bias=bias, out_dtype=self.out_dtype)               # [M, N]
      return y.reshape(*x.shape[:-1], kernel_t.shape[0])
    kernel = logical_param(self, "kernel", normal_init(self.init_std), self.kernel_shape,
                           self.kernel_axes, self.param_dtype)
    return dense(x, kernel.reshape(x.shape[-1], -1), self.dtype, bias, self.out_dtype)
