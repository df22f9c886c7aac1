"""Where one call's time goes: a jax.profiler trace of the train step's gradient or of one
sampler call at a bench size, summed per XLA op (fusion), with the op's shape and JAX name.

python bench/op_profile.py [--what grad|decode] [--size tiny|100m] [--dtype float32|bfloat16]
                        [--top 15]

Prints the median seconds of 3 untraced calls, then the top ops of one traced call (summed
over the CPU threads that ran them, so the column can exceed the call's wall time), and this
machine's streaming read bandwidth (a float32 sum over 400 MB). A diagnostic, not a
comparison: nothing is saved. Tracing inflates short ops (a ~100M decode step's projections
read over twice as long here as removing them saves): for a decode step's breakdown use
`bench/decode_ablation.py`. (Not named profile.py: a script run from bench/ has bench/ first on
sys.path, and that file shadowed the standard library's `profile`, which PyTorch imports.)
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp

from bench.model_sizes import bench_config
from restrl_jax import models
from restrl_jax.training import sft_loss

_SKIP = ("$", "ThunkExecutor", "SlinkyThreadPool", "ThreadpoolListener", "PjitFunction",
         "np.asarray", "CommonPjRt")


def _grad_call(config):
  params = models.init_params(config, jax.random.key(0))
  tokens = jax.random.randint(jax.random.key(1), (8, 256), 3, config.vocab_size)
  batch = dict(tokens=tokens, attention_mask=jnp.ones_like(tokens),
               loss_mask=jnp.ones_like(tokens))
  grad = jax.jit(jax.grad(lambda p: sft_loss(config, p, batch)[0]))
  return lambda: jax.block_until_ready(grad(params)), lambda: grad.lower(params).compile()


def _decode_call(config):
  from bench.sampler import _prompts, ours_runner
  config = dataclasses.replace(config, eos_token_id=None, param_dtype=config.dtype)
  params = jax.tree.map(lambda x: x.astype(config.dtype),
                        models.init_params(config, jax.random.key(0)))
  return ours_runner(config, params, _prompts(config, 8, 64), 128), None


def _op_table(trace_dir: str, hlo_text: str | None, top: int) -> list[str]:
  path = glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True)[0]
  events = json.load(gzip.open(path))
  events = events["traceEvents"] if isinstance(events, dict) else events
  total, count = collections.Counter(), collections.Counter()
  for e in events:
    if e.get("ph") == "X" and "dur" in e and not e["name"].startswith(_SKIP):
      total[e["name"]] += e["dur"]
      count[e["name"]] += 1
  lines, kinds = [], collections.Counter()
  for name, us in total.most_common():
    shape = op = ""
    if hlo_text:
      m = re.search(r"%" + re.escape(name) + r" = (\S+) .*?op_name=\"([^\"]*)\"", hlo_text)
      shape, op = (m.group(1), m.group(2)) if m else ("", "")
    kinds[_kind(op) if hlo_text else re.sub(r"\.\d+$", "", name)] += us
    if len(lines) < top:
      lines.append(f"{us / 1e3:9.1f} ms  x{count[name]:<5d} {name:32s} {shape:28s} {op[:60]}")
  lines.append(f"all {len(total)} ops: {sum(total.values()) / 1e3:.1f} ms; by JAX primitive (or op "
               "name without a HLO text): "
               + ", ".join(f"{k} {us / 1e3:.0f}" for k, us in kinds.most_common(8)))
  return lines


def _kind(op_name: str) -> str:
  """The JAX primitive an op came from: the last path part without its einsum spec."""
  last = op_name.rsplit("/", 1)[-1] if op_name else "?"
  return re.sub(r"\(.*", "", last) or "?"


def _read_bandwidth() -> float:
  x = jnp.ones((100_000_000,), jnp.float32)
  total = jax.jit(jnp.sum)
  total(x).block_until_ready()
  best = float("inf")
  for _ in range(5):
    start = time.perf_counter()
    total(x).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return x.nbytes / best / 1e9


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--what", default="grad", choices=("grad", "decode"))
  parser.add_argument("--size", default="100m")
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  parser.add_argument("--top", type=int, default=15)
  args = parser.parse_args()
  config = dataclasses.replace(bench_config(args.size), dtype=args.dtype)
  make = _grad_call if args.what == "grad" else _decode_call
  call, compiled = make(config)
  call()
  times = []
  for _ in range(3):
    start = time.perf_counter()
    call()
    times.append(time.perf_counter() - start)
  print(f"{args.what} {args.size} {args.dtype}: {sorted(times)[1]:.3f} s per call (median of 3)")
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      call()
    hlo = compiled().as_text() if compiled else None
    print("\n".join(_op_table(trace_dir, hlo, args.top)))
  print(f"streaming read: {_read_bandwidth():.1f} GB/s (float32 sum over 400 MB)")


if __name__ == "__main__":
  main()
