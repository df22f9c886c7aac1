"""Causal grouped-query attention, forward + backward (gradients of q, k, v), at the bench
sizes' training shapes (8 x 256 tokens): `models.layers.attend` (the train step's attention,
hand-written gradient) against the same attention written plainly in JAX (k/v repeated over the
query groups, masked softmax, autodiff) and against PyTorch's
`scaled_dot_product_attention(is_causal=True, enable_gqa=True)` (what the transformers train
step of bench/sampler.py runs with `attn_implementation="sdpa"`). In float32 and in bfloat16
(PyTorch: bf16 tensors). Timed in alternation (median of --repeats rounds); the unit is
forward+backward calls per second.

python bench/attention.py [--sizes tiny,100m] [--repeats 7] [--no_save]
"""
from __future__ import annotations

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np

from bench import common
from bench.model_sizes import bench_config
from restrl_jax.models import layers

BATCH, SEQ = 8, 256


def _inputs(config, dtype):
  keys = jax.random.split(jax.random.key(0), 4)
  h, kvh, dh = config.num_heads, config.num_kv_heads, config.head_dim
  q = jax.random.normal(keys[0], (BATCH, SEQ, h, dh), dtype)
  k = jax.random.normal(keys[1], (BATCH, kvh, SEQ, dh), dtype)
  v = jax.random.normal(keys[2], (BATCH, kvh, SEQ, dh), dtype)
  g = jax.random.normal(keys[3], (BATCH, SEQ, h, dh), dtype)
  return q, k, v, g


def _plain(q, k, v, mask):
  """GQA the plain way: k/v repeated over the groups, masked softmax in float32, autodiff."""
  rep = q.shape[2] // k.shape[1]
  k, v = jnp.repeat(k, rep, axis=1), jnp.repeat(v, rep, axis=1)           # [B, H, S, Dh]
  scores = jnp.einsum("bthd,bhsd->bhts", q, k, preferred_element_type=jnp.float32)
  scores = jnp.where(mask[:, None], scores / math.sqrt(q.shape[-1]), layers.MASK_VALUE)
  probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
  return jnp.einsum("bhts,bhsd->bthd", probs, v)


def _jax_runner(fn, q, k, v, g):
  mask = jnp.broadcast_to(jnp.tril(jnp.ones((SEQ, SEQ), bool)), (BATCH, SEQ, SEQ))
  grad = jax.jit(lambda q, k, v: jax.vjp(lambda *a: fn(*a, mask), q, k, v)[1](g))
  return lambda: jax.block_until_ready(grad(q, k, v))


def _torch_runner(q, k, v, g, dtype: str):
  import torch
  import torch.nn.functional as F
  as_torch = lambda x, perm: torch.from_numpy(
      np.asarray(x.astype(jnp.float32)).transpose(perm).copy()).to(getattr(torch, dtype))
  tq = as_torch(q, (0, 2, 1, 3)).requires_grad_()                  # [B, H, T, Dh]
  tk, tv = (as_torch(x, (0, 1, 2, 3)).requires_grad_() for x in (k, v))
  tg = as_torch(g, (0, 2, 1, 3))

  def run():
    out = F.scaled_dot_product_attention(tq, tk, tv, is_causal=True, enable_gqa=True)
    out.backward(tg)
    tq.grad = tk.grad = tv.grad = None

  return run


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--sizes", default="tiny,100m")
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--no_save", action="store_true", help="print only")
  args = parser.parse_args()
  report = common.Report("attention")
  for size in args.sizes.split(","):
    config = bench_config(size)
    for dtype in ("float32", "bfloat16"):
      q, k, v, g = _inputs(config, jnp.dtype(dtype))
      ours = lambda q, k, v, mask: layers.attend(q, k, v, mask, "bhsd")
      times = common.timeit_alternating({
          "ours": _jax_runner(ours, q, k, v, g),
          "jax_plain": _jax_runner(_plain, q, k, v, g),
          "torch_sdpa": _torch_runner(q, k, v, g, dtype),
      }, repeats=args.repeats)
      rate = {key: 1.0 / t for key, t in times.items()}
      shape = dict(batch=BATCH, seq=SEQ, heads=config.num_heads, kv_heads=config.num_kv_heads,
                   head_dim=config.head_dim)
      unit = "fwd+bwd calls/s"
      report.add(f"attention_{size}_{dtype}", rate["ours"], rate["jax_plain"],
                 f"{unit} (peer: plain JAX GQA, autodiff)", **shape)
      report.add(f"attention_{size}_{dtype}_vs_torch", rate["ours"], rate["torch_sdpa"],
                 f"{unit} (peer: torch scaled_dot_product_attention, causal, GQA)", **shape)
  if not args.no_save:
    report.save()


if __name__ == "__main__":
  main()
