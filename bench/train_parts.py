"""How fast the train step could be with the kernels it runs: the step's heavy parts, each
timed alone, summed, against the PyTorch step (the peer of bench/sampler.py's train step).

The parts (forward + backward each, except the optimizer, at the step's shapes, in the step's
precision): every projection (`models.matmul.linear`, one call per distinct kernel shape times
its count over the layers), the causal attention (`layers.attend`, once per layer), the LM head
with its log-softmax loss (`training.token_logprobs.target_logprobs`) and
clipping + AdamW (`train_step.ours_phase_runners`' "optimizer"). Left out as glue: embedding,
norms, RoPE, residual adds, reshapes, gradient assembly. So the sum is below anything our step
can take while these parts run at the speed they run alone, and peer / sum is the highest ratio
the whole step could reach with them. All closures (the parts, our whole step, the PyTorch
step) are timed in alternation (`common.timeit_alternating`, median of --repeats rounds).

python bench/train_parts.py [--sizes tiny,100m] [--batch 8] [--seq 256] [--repeats 5]
                            [--dtype float32|bfloat16] [--no_save]

Rows (milliseconds, ratio > 1 meaning ours takes less time): `train_parts_<size>` (ours: the
sum of the parts; its ratio is that ceiling) and `train_whole_<size>` (ours: the whole step,
measured in the same rounds). Each part's median is in the results file.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp

from bench import common, train_step
from bench.model_sizes import bench_config
from restrl_jax import models
from restrl_jax.models import layers, matmul
from restrl_jax.training.token_logprobs import target_logprobs


def projection_counts(config: models.ModelConfig) -> dict[tuple[int, int], int]:
  """{(K, N): how many [K, N] projections one step runs} over all layers (the LM head apart)."""
  d, dh = config.hidden_size, config.head_dim
  q, kv = config.num_heads * dh, config.num_kv_heads * dh
  shapes = [(d, q), (d, kv), (d, kv), (q, d),                                     # q, k, v, o
            (d, config.intermediate_size), (d, config.intermediate_size),         # gate, up
            (config.intermediate_size, d)]                                        # down
  counts = collections.Counter(shapes)
  return {shape: n * config.num_layers for shape, n in counts.items()}


def _vjp_runner(fn, *args):
  """A closure running fn's forward and backward (all input gradients) once."""
  out = jax.eval_shape(fn, *args)
  g = jnp.ones(out.shape, out.dtype)
  grad = jax.jit(lambda *a: jax.vjp(fn, *a)[1](g))
  return lambda: jax.block_until_ready(grad(*args))


def part_runners(config: models.ModelConfig, batch: int, seq: int) -> dict[str, tuple]:
  """{part name: (closure, how many times the step runs it)}."""
  keys = iter(jax.random.split(jax.random.key(0), 16))
  normal = lambda shape, dtype: jax.random.normal(next(keys), shape, jnp.float32).astype(dtype)
  dtype, m = jnp.dtype(config.dtype), batch * seq
  parts = {}
  for (k, n), count in projection_counts(config).items():
    x, w = normal((m, k), dtype), normal((k, n), jnp.float32)  # fp32 parameters
    parts[f"projection_{k}x{n}"] = (
        _vjp_runner(lambda x, w: matmul.linear(x, w, dtype), x, w), count)
  h, kvh, dh = config.num_heads, config.num_kv_heads, config.head_dim
  q = normal((batch, seq, h, dh), dtype)
  kv = [normal((batch, kvh, seq, dh), dtype) for _ in range(2)]
  mask = jnp.broadcast_to(jnp.tril(jnp.ones((seq, seq), bool)), (batch, seq, seq))
  attend = lambda q, k, v: layers.attend(q, k, v, mask, "bhsd", causal=True)
  parts["attention"] = (_vjp_runner(attend, q, *kv), config.num_layers)
  parts["lm_head_loss"] = (_lm_head_loss_runner(config, batch, seq, normal), 1)
  parts["optimizer"] = (train_step.ours_phase_runners(config, batch, seq)["optimizer"], 1)
  return parts


def _lm_head_loss_runner(config, batch: int, seq: int, normal):
  """The unembedding of the T-1 predicting positions and the token log-likelihood's
  log-softmax, forward + backward (hidden states and the vocabulary table)."""
  name, shape = (("embed", "embedding"), (config.vocab_size, config.hidden_size)) if (
      config.tie_word_embeddings) else (("lm_head", "kernel"),
                                        (config.hidden_size, config.vocab_size))
  table = normal(shape, jnp.float32)
  hidden = normal((batch, seq - 1, config.hidden_size), config.dtype)
  targets = jax.random.randint(jax.random.key(1), (batch, seq - 1), 0, config.vocab_size)

  def loss(hidden, table):
    params = {name[0]: {name[1]: table}}
    return -jnp.mean(target_logprobs(config, params, hidden, targets))

  return _vjp_runner(loss, hidden, table)


def main() -> None:
  args = train_step.parse_bench_args()
  suffix = "" if args.dtype == "float32" else f"_{args.dtype}"
  report = common.Report("train_parts", results_name=f"train_parts{suffix}")
  for size in args.sizes.split(","):
    config = dataclasses.replace(bench_config(size), dtype=args.dtype)
    parts = part_runners(config, args.batch, args.seq)
    runners = {name: run for name, (run, _) in parts.items()}
    runners["ours_whole"] = train_step.ours_step_runner(config, args.batch, args.seq)
    runners["peer"] = train_step.torch_step_runner(config, args.batch, args.seq)
    times = common.timeit_alternating(runners, repeats=args.repeats)
    part_ms = {name: 1e3 * times[name] * count for name, (_, count) in parts.items()}
    peer = 1e3 * times["peer"]
    shape = dict(batch=args.batch, seq=args.seq)
    report.add(f"train_parts_{size}{suffix}", sum(part_ms.values()), peer,
               "ms (ours: the sum of the step's parts, each alone; peer: the PyTorch step)",
               higher_is_better=False, parts_ms={k: round(v, 2) for k, v in part_ms.items()},
               **shape)
    report.add(f"train_whole_{size}{suffix}", 1e3 * times["ours_whole"], peer,
               "ms (ours: the whole step, same rounds; peer: the PyTorch step)",
               higher_is_better=False, **shape)
  if not args.no_save:
    report.save()


if __name__ == "__main__":
  main()
