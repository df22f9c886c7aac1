"""One projection's forward + backward in bf16 on this machine: `models.matmul.linear` (float32
accumulation, hand-written VJP) against the same product written plainly in JAX, at the ~100M
config's shapes (8 x 256 tokens). Both compute y = x @ w in bf16 with float32 parameters and the
gradients of x and w; FLOP/s count 3 products of 2*M*K*N.

The peers:
  jax_bf16  `x.astype(bf16) @ w.astype(bf16)` with JAX's autodiff (the product rounded to bf16)
  jax_f32acc  the same with `preferred_element_type=float32`, rounded to bf16 after, autodiff
And against PyTorch (the peer of bench/sampler.py's train step): the float32 product with JAX's
autodiff against `torch` autograd in float32, and `matmul.linear` against the bf16 product under
`torch.autocast("cpu", torch.bfloat16)` (MKL / oneDNN kernels). Timed in alternation (median
of --repeats rounds, `common.timeit_alternating`).

python bench/matmul.py [--repeats 5] [--no_save]
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp

from bench import common
from restrl_jax.models import matmul

# (name, M, K, N, kernel layout) at the ~100M config (bench/model_sizes.py), 8 x 256 tokens
SHAPES = (("mlp_up", 2048, 768, 2048, "kn"), ("mlp_down", 2048, 2048, 768, "kn"),
          ("attn_q", 2048, 768, 768, "kn"), ("lm_head", 2040, 768, 32000, "nk"))


def _plain(x, w, layout, accumulate_f32):
  xl, wl = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
  spec = "mk,kn->mn" if layout == "kn" else "mk,nk->mn"
  if accumulate_f32:
    return jnp.einsum(spec, xl, wl, preferred_element_type=jnp.float32).astype(jnp.bfloat16)
  return jnp.einsum(spec, xl, wl)


def _f32(x, w, layout):
  return jnp.einsum("mk,kn->mn" if layout == "kn" else "mk,nk->mn", x, w)


def _runner(product, x, w, g):
  grad = jax.jit(lambda x, w: jax.vjp(product, x, w)[1](g))

  def run():
    jax.block_until_ready(grad(x, w))

  return run


def _torch_runner(x, w, g, layout: str, autocast: bool):
  """Forward + backward of x @ w (w [K, N] or, for "nk", [N, K]) with torch autograd."""
  import contextlib

  import numpy as np
  import torch
  tx = torch.from_numpy(np.asarray(x, np.float32)).requires_grad_()
  tw = torch.from_numpy(np.asarray(w, np.float32)).requires_grad_()
  tg = torch.from_numpy(np.asarray(g, np.float32))
  if autocast:
    ctx = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
  else:
    ctx = contextlib.nullcontext

  def run():
    with ctx():
      y = tx @ (tw if layout == "kn" else tw.t())
    y.backward(tg.to(y.dtype))
    tx.grad, tw.grad = None, None

  return run


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--no_save", action="store_true", help="print only")
  args = parser.parse_args()
  report = common.Report("matmul")
  for name, m, k, n, layout in SHAPES:
    keys = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(keys[0], (m, k), jnp.bfloat16)
    w = jax.random.normal(keys[1], (k, n) if layout == "kn" else (n, k), jnp.float32)
    g = jax.random.normal(keys[2], (m, n), jnp.bfloat16)
    ours = lambda x, w, layout=layout: matmul.linear(x, w, "bfloat16", layout)
    times = common.timeit_alternating({
        "ours": _runner(ours, x, w, g),
        "jax_bf16": _runner(lambda x, w: _plain(x, w, layout, False), x, w, g),
        "jax_f32acc": _runner(lambda x, w: _plain(x, w, layout, True), x, w, g),
        "jax_f32": _runner(lambda x, w: _f32(x, w, layout), x.astype(jnp.float32), w,
                           g.astype(jnp.float32)),
        "torch_f32": _torch_runner(x, w, g, layout, autocast=False),
        "torch_bf16": _torch_runner(x, w, g, layout, autocast=True),
    }, repeats=args.repeats)
    flops = 3 * 2 * m * k * n
    gflops = {key: flops / t / 1e9 for key, t in times.items()}
    shape = dict(m=m, k=k, n=n, layout=layout)
    report.add(f"linear_bf16_{name}", gflops["ours"], gflops["jax_bf16"],
               "GFLOP/s fwd+bwd (peer: plain JAX bf16 autodiff)", **shape)
    report.add(f"linear_bf16_{name}_vs_f32acc", gflops["ours"], gflops["jax_f32acc"],
               "GFLOP/s fwd+bwd (peer: plain JAX, f32 accumulation, autodiff)", **shape)
    report.add(f"linear_bf16_{name}_vs_torch", gflops["ours"], gflops["torch_bf16"],
               "GFLOP/s fwd+bwd (peer: torch autocast bf16)", **shape)
    report.add(f"linear_f32_{name}_vs_torch", gflops["jax_f32"], gflops["torch_f32"],
               "GFLOP/s fwd+bwd (ours: JAX f32 autodiff; peer: torch f32)", **shape)
  if not args.no_save:
    report.save()


if __name__ == "__main__":
  main()
