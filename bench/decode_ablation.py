"""Where a decode step's time goes, measured by taking parts away: one jitted `forward_step` of
one token per row (the sampler's per-step work, on `decoder.decode_params`), timed whole and with
one part replaced by a near-free stand-in, all variants in alternation in one process.

python bench/decode_ablation.py [--size 100m] [--dtype bfloat16] [--batch 8] [--slots 192]
                                [--steps 30] [--repeats 5]

Prints ms per step for each variant and, per part, the time it costs (whole minus without) and
the bytes it reads per step over that time; also, in the same rounds, the time a jitted sum takes
to read every byte the step reads (decode params and KV cache), the step's floor at this
machine's streaming rate. A diagnostic, not a comparison: nothing is saved.
Why not a profiler trace (`bench/op_profile.py --what decode`): the trace puts each ~100M bf16
MLP projection at ~0.5 ms per step (summed over threads), over twice what removing the MLP
saves here per projection (~8 ms / 12 layers / 3); tracing inflates a decode step's short ops.
The stand-ins keep the graph's data flow (the cache is still written; its slice is read) so XLA
cannot drop more than the part itself.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np

from bench.model_sizes import bench_config
from restrl_jax import models
from restrl_jax.models import decoder, layers


def _no_attention(q, k, v, mask, layout, causal=False):
  touch = k.reshape(-1)[0].astype(jnp.float32) + v.reshape(-1)[0] + mask.reshape(-1)[0]
  return q + touch.astype(q.dtype)


def _no_mlp(p, h, dtype):
  return h


def _no_attention_output(p, attn, dtype):
  b, t = attn.shape[:2]
  return attn.reshape(b, t, -1)


def _no_lm_head(config, params, h):
  return h.astype(jnp.float32)


# variant -> (patch target, stand-in); "whole" patches nothing
VARIANTS = {
    "whole": None,
    "attention": (f"{layers.__name__}.attend", _no_attention),
    "o_projection": (f"{layers.__name__}.attention_output", _no_attention_output),
    "mlp": (f"{layers.__name__}.swiglu_mlp", _no_mlp),
    "lm_head": (f"{decoder.__name__}._unembed", _no_lm_head),
}


def _part_bytes(config, params, batch: int, slots: int) -> dict[str, int]:
  """Weight (and KV cache) bytes each removable part reads per step."""
  layer = params["layers"][0]
  nbytes = lambda tree: sum(x.nbytes for x in jax.tree.leaves(tree))
  cache = jax.eval_shape(lambda: models.init_cache(config, batch, slots))
  return {"attention": cache.k.size * cache.k.dtype.itemsize * 2,
          "o_projection": config.num_layers * nbytes(layer["attn"]["o"]),
          "mlp": config.num_layers * nbytes(layer["mlp"]),
          "lm_head": params["embed"]["embedding"].nbytes if config.tie_word_embeddings
          else nbytes(params["lm_head"])}


def _step_runner(config, params, patch, batch: int, slots: int, steps: int):
  """Jit the (patched) step now; return a closure running `steps` steps on a donated cache."""
  kv_mask = jnp.ones((batch, slots), bool)
  tokens = jnp.ones((batch, 1), jnp.int32)
  positions = jnp.full((batch, 1), slots // 2, jnp.int32)
  index = jnp.int32(slots // 2)
  step = jax.jit(lambda p, c: models.forward_step(config, p, tokens, positions, c, index,
                                                  kv_mask), donate_argnums=(1,))
  holder = [decoder.unstack_cache(models.init_cache(config, batch, slots))]
  with mock.patch(*patch) if patch else contextlib.nullcontext():
    logits, holder[0] = step(params, holder[0])  # traced and compiled under the patch
  logits.block_until_ready()

  def run():
    for _ in range(steps):
      logits, holder[0] = step(params, holder[0])
    logits.block_until_ready()

  return run


def stream_runner(params, config, batch: int, slots: int, steps: int):
  """A closure reading every byte a step reads (the decode params and a KV cache) `steps`
  times with a jitted float32 sum: the step's floor at this machine's streaming rate."""
  arrays = jax.tree.leaves(params) + jax.tree.leaves(
      decoder.unstack_cache(models.init_cache(config, batch, slots)))
  total = jax.jit(lambda xs: sum(jnp.sum(x.astype(jnp.float32)) for x in xs))
  total(arrays).block_until_ready()

  def run():
    for _ in range(steps):
      total(arrays).block_until_ready()

  return run, sum(x.nbytes for x in arrays)


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--size", default="100m")
  parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--slots", type=int, default=192, help="KV cache slots (prompt + new)")
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  config = dataclasses.replace(bench_config(args.size), dtype=args.dtype, param_dtype=args.dtype)
  params = jax.tree.map(lambda x: x.astype(args.dtype),
                        models.init_params(config, jax.random.key(0)))
  run_params = jax.jit(decoder.decode_params)(params)
  runners = {name: _step_runner(config, run_params, patch, args.batch, args.slots, args.steps)
             for name, patch in VARIANTS.items()}
  runners["stream"], step_bytes = stream_runner(run_params, config, args.batch, args.slots,
                                                 args.steps)
  times = {name: [] for name in runners}
  for _ in range(args.repeats):  # alternate, so a slow stretch of the machine hits all variants
    for name, run in runners.items():
      start = time.perf_counter()
      run()
      times[name].append((time.perf_counter() - start) / args.steps * 1e3)
  ms = {name: float(np.median(t)) for name, t in times.items()}
  part_bytes = _part_bytes(config, decoder.unstack_layers(params), args.batch, args.slots)
  print(f"decode step, {args.size} {args.dtype}, batch {args.batch}, {args.slots} cache slots: "
        f"{ms['whole']:.2f} ms whole (median of {args.repeats} x {args.steps} steps)")
  print(f"  streaming its {step_bytes / 1e6:.0f} MB (weights and cache) by a jitted sum: "
        f"{ms['stream']:.2f} ms ({step_bytes / ms['stream'] / 1e6:.1f} GB/s); the step takes "
        f"{ms['whole'] / ms['stream']:.2f}x that")
  for name in VARIANTS:
    if name == "whole":
      continue
    cost = ms["whole"] - ms[name]
    rate = (f", {part_bytes[name] / 1e6:.0f} MB -> {part_bytes[name] / cost / 1e6:.1f} GB/s"
            if name in part_bytes and cost > 0 else "")
    print(f"  without {name:13s} {ms[name]:7.2f} ms: costs {cost:6.2f} ms "
          f"({100 * cost / ms['whole']:4.1f}%){rate}")


if __name__ == "__main__":
  main()
