"""Model sizes used by the benchmarks, their FLOP counts and this machine's matmul peak."""
from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp

from restrl_jax import models

# ~100M parameters: Qwen2-style, 12 layers of width 768, 32k vocabulary (tied).
_100M = dict(vocab_size=32000, hidden_size=768, num_layers=12, num_heads=12, num_kv_heads=4,
             head_dim=64, intermediate_size=2048, tie_word_embeddings=True)
# ~1B parameters (0.98B), Qwen2-shaped: Qwen2.5-1.5B's layer (width 1536, 12 query and 2 KV heads
# of 128, MLP 8960, q/k/v biases) and its 151936-token vocabulary (tied), 16 of its 28 layers.
_1B = dict(vocab_size=151936, hidden_size=1536, num_layers=16, num_heads=12, num_kv_heads=2,
           head_dim=128, intermediate_size=8960, rope_theta=1e6, tie_word_embeddings=True,
           max_position_embeddings=32768)


def bench_config(size: str) -> models.ModelConfig:
  tiny = models.get_preset("tiny")
  if size == "tiny":
    return tiny
  if size == "100m":
    return dataclasses.replace(tiny, **_100M)
  if size == "1b":
    return dataclasses.replace(tiny, **_1B)
  raise ValueError(f"unknown bench size {size!r}; choose tiny, 100m or 1b")


def num_params(config: models.ModelConfig) -> int:
  shapes = jax.eval_shape(lambda key: models.init_params(config, key), jax.random.key(0))
  return sum(x.size for x in jax.tree.leaves(shapes))


def flops_per_token(config: models.ModelConfig, context: int) -> float:
  """Forward FLOPs per token: 2 * matmul params + attention (2 * 2 * layers * context * H * Dh)."""
  embed = config.vocab_size * config.hidden_size
  matmul_params = num_params(config) - (0 if config.tie_word_embeddings else embed)
  attention = 4 * config.num_layers * context * config.num_heads * config.head_dim
  return 2.0 * matmul_params + attention


def matmul_peak_flops(n: int = 1024, repeats: int = 10, dtype: str = "float32") -> float:
  """Measured matmul FLOP/s of this machine through XLA in `dtype`, accumulating in float32
  (the best of `repeats`)."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
  f = jax.jit(lambda x: jnp.dot(x, x, preferred_element_type=jnp.float32))
  f(a).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * n ** 3 / best
