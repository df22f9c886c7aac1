"""Generation tokens/s of our sampler vs transformers' PyTorch `generate()` (KV cache), and the
train step (forward + backward + AdamW) vs a PyTorch step, on the same random model, batch and
lengths, on this machine in the same run. Also each side's FLOP/s as a fraction of the measured
matmul peak, and for the sampler a floor: the prefill at that peak plus, per generated step, the
time a jitted sum takes to read the bytes a decode step reads (weights and KV cache;
`stream_runner`). `ours_floor_fraction` is floor / ours; `peer_over_floor` is the ratio a sampler
running at the floor would reach.

Each side (ours, peer, the floor's read; then ours and the peer's train step) runs ALONE in its own
child process, which times `--repeats` calls after one warm-up (median): in one process each
side's heap traffic and thread pools slowed the other (docs/benchmarks.md, "Targets"). The
children run in `--rounds` rounds, every one in turn, so a slow stretch of the machine reaches all
of them; each figure is the median over rounds (the upper median of an even count).

python bench/sampler.py [--sizes tiny,100m] [--batch 8] [--prompt 64] [--new 128] [--no-train]
                        [--repeats 3] [--rounds 2] [--no_save] [--decode_transpose_min N]
                        [--dtype float32|bfloat16] [--update-docs]

Results go to the git-ignored bench/results/; `--update-docs` also puts the rows into
docs/benchmarks.md (bench/common.py).

--dtype bfloat16 runs both sides in bfloat16: the sampler with bf16 weights, KV cache and
matmuls (ours: `ModelConfig(dtype=param_dtype="bfloat16")`; peer: `from_pretrained(torch_dtype=
torch.bfloat16)`), the train step as mixed precision, fp32 parameters and optimizer with bf16
matmuls (ours: `ModelConfig(dtype="bfloat16")`; peer: `torch.autocast("cpu", torch.bfloat16)`
around the forward). The peak fraction is then taken against the bf16 matmul peak.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np

from bench import common, train_step
from bench.model_sizes import bench_config, flops_per_token, matmul_peak_flops
from restrl_jax import models
from restrl_jax.models import decode_form, kv_cache
from restrl_jax.sampling import Buckets, Sampler, SamplingParams


def _prompts(config, batch: int, prompt_len: int) -> np.ndarray:
  rng = np.random.default_rng(0)
  return rng.integers(3, config.vocab_size, (batch, prompt_len), dtype=np.int32)


def ours_runner(config, params, prompts: np.ndarray, new_tokens: int,
                transpose_min: int | None = None):
  """One generation call of our sampler (a closure to time)."""
  extra = {} if transpose_min is None else {"transpose_min_elements": transpose_min}
  sampler = Sampler(config, params, buckets=Buckets(min_prompt=prompts.shape[1],
                                                   min_new_tokens=new_tokens), **extra)
  sp = SamplingParams(max_new_tokens=new_tokens, temperature=0.0)
  mask = np.ones_like(prompts, dtype=bool)

  def run():
    out = sampler.sample_tokens(prompts, mask, sp)
    assert int(out.lengths.min()) == new_tokens

  return run


def torch_runner(hf_dir: str, prompts: np.ndarray, new_tokens: int, dtype: str = "float32"):
  """One `generate()` call of the transformers PyTorch model saved in `hf_dir`, in `dtype`."""
  import torch
  import transformers
  model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir,
                                                            torch_dtype=getattr(torch, dtype))
  model.eval()
  ids = torch.from_numpy(prompts.astype(np.int64))
  mask = torch.ones_like(ids)

  def run():
    with torch.inference_mode():
      out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                           min_new_tokens=new_tokens, do_sample=False, use_cache=True,
                           pad_token_id=0)
    assert out.shape[1] == ids.shape[1] + new_tokens

  return run


def stream_runner(params, config, batch: int, slots: int, steps: int):
  """A closure reading every byte a decode step reads (the decode params and a KV cache)
  `steps` times with a jitted float32 sum: the step's floor at this machine's streaming rate;
  and that byte count."""
  arrays = jax.tree.leaves(params) + jax.tree.leaves(
      kv_cache.unstack_cache(models.init_cache(config, batch, slots)))
  total = jax.jit(lambda xs: sum(jnp.sum(x.astype(jnp.float32)) for x in xs))
  total(arrays).block_until_ready()

  def run():
    for _ in range(steps):
      total(arrays).block_until_ready()

  return run, sum(x.nbytes for x in arrays)


PARTS = {"sampler": ("ours", "peer", "stream"), "train": ("ours", "peer")}


def parse_args(argv=None):
  parser = argparse.ArgumentParser()
  parser.add_argument("--sizes", default="tiny,100m")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--prompt", type=int, default=64)
  parser.add_argument("--new", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=3, help="timed calls per child")
  parser.add_argument("--rounds", type=int, default=2, help="children per side, in turn")
  parser.add_argument("--train-seq", type=int, default=256)
  parser.add_argument("--no-train", action="store_true")
  parser.add_argument("--no_save", action="store_true", help="print only")
  common.add_update_docs_flag(parser)
  parser.add_argument("--decode_transpose_min", type=int, default=None,
                      help="kernels of at least this many entries decode transposed (CPU; "
                           "default: the library's threshold; 0 = all, 1000000000 = none)")
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                      help="precision of both sides (see the module docstring)")
  parser.add_argument("--child", default=None, choices=tuple(PARTS), help=argparse.SUPPRESS)
  parser.add_argument("--side", default="ours", help=argparse.SUPPRESS)
  return parser.parse_args(argv)


def _sampler_runner(args, side: str, scratch: str):
  """(closure, extra result fields) for one side of the sampler comparison at `args.sizes`;
  the peer's HF folder goes to `scratch`."""
  # no EOS: both sides generate exactly --new tokens
  config = dataclasses.replace(bench_config(args.sizes), eos_token_id=None)
  params = models.init_params(config, jax.random.key(0))
  prompts = _prompts(config, args.batch, args.prompt)
  low = dataclasses.replace(config, dtype=args.dtype, param_dtype=args.dtype)
  low_params = jax.tree.map(lambda x: x.astype(args.dtype), params)
  if side == "ours":
    return ours_runner(low, low_params, prompts, args.new, args.decode_transpose_min), {}
  if side == "stream":
    stream, step_bytes = stream_runner(
        decode_form.decode_params(low_params), low, args.batch, args.prompt + args.new, steps=1)
    return stream, {"step_bytes": step_bytes}
  models.save_hf(config, params, scratch)
  return torch_runner(scratch, prompts, args.new, args.dtype), {}


def child(args) -> None:
  """Runs in a fresh process: time one side of one comparison alone; emits its median seconds."""
  with tempfile.TemporaryDirectory(prefix="bench_sampler_") as scratch:
    if args.child == "sampler":
      run, extra = _sampler_runner(args, args.side, scratch)
    else:
      config = dataclasses.replace(bench_config(args.sizes), dtype=args.dtype)
      runner = (train_step.ours_step_runner if args.side == "ours"
                else train_step.torch_step_runner)
      run, extra = runner(config, args.batch, args.train_seq), {}
    seconds = common.timeit(run, repeats=args.repeats)
  common.emit_result({"seconds": seconds, **extra})


def _run_child(args, size: str, part: str, side: str) -> dict:
  command = [sys.executable, os.path.abspath(__file__), "--child", part, "--side", side,
             "--sizes", size, "--batch", str(args.batch), "--prompt", str(args.prompt),
             "--new", str(args.new), "--repeats", str(args.repeats), "--dtype", args.dtype,
             "--train-seq", str(args.train_seq)]
  if args.decode_transpose_min is not None:
    command += ["--decode_transpose_min", str(args.decode_transpose_min)]
  return common.run_child(command, f"{part} child ({side}) for {size}")


def measure(args, size: str) -> dict[tuple[str, str], dict]:
  """{(part, side): the median over rounds of each field of its children's results}."""
  parts = ("sampler",) if args.no_train else tuple(PARTS)
  tasks = {(part, side): functools.partial(_run_child, args, size, part, side)
           for part in parts for side in PARTS[part]}
  rounds = common.in_rounds(tasks, args.rounds)
  return {key: common.field_medians(results) for key, results in rounds.items()}


def main() -> None:
  args = parse_args()
  if args.child:
    child(args)
    return
  report = common.Report("sampler", results_name=None if args.dtype == "float32"
                         else f"sampler_{args.dtype}")
  peak = matmul_peak_flops(dtype=args.dtype)
  suffix = "" if args.dtype == "float32" else f"_{args.dtype}"
  for size in args.sizes.split(","):
    times = measure(args, size)
    config = bench_config(size)
    ours, peer = times["sampler", "ours"]["seconds"], times["sampler", "peer"]["seconds"]
    generated = args.batch * args.new
    flops = flops_per_token(config, args.prompt + args.new // 2) * (
        args.batch * (args.prompt + args.new))
    # the floor: the prefill at the matmul peak, then each step reading its bytes at the rate
    # of a jitted sum over them
    floor = (flops_per_token(config, args.prompt) * args.batch * args.prompt / peak
             + args.new * times["sampler", "stream"]["seconds"])
    report.add(f"sampler_{size}{suffix}", generated / ours, generated / peer, "generated tokens/s",
               ours_peak_fraction=round(flops / ours / peak, 4),
               peer_peak_fraction=round(flops / peer / peak, 4),
               ours_floor_fraction=round(floor / ours, 4), peer_over_floor=round(peer / floor, 3),
               step_bytes=times["sampler", "stream"]["step_bytes"], batch=args.batch,
               prompt=args.prompt, new=args.new, rounds=args.rounds)
    if not args.no_train:
      tokens = args.batch * args.train_seq
      t_ours, t_peer = times["train", "ours"]["seconds"], times["train", "peer"]["seconds"]
      tflops = 3 * flops_per_token(config, args.train_seq) * tokens
      report.add(f"train_step_{size}{suffix}", tokens / t_ours, tokens / t_peer, "tokens/s",
                 ours_peak_fraction=round(tflops / t_ours / peak, 4),
                 peer_peak_fraction=round(tflops / t_peer / peak, 4),
                 batch=args.batch, seq=args.train_seq, rounds=args.rounds)
  short = {"float32": "f32", "bfloat16": "bf16"}[args.dtype]
  report.add(f"matmul_peak{suffix}", peak / 1e9, peak / 1e9, f"GFLOP/s ({short}, 1024^3 via XLA)")
  if not args.no_save:
    report.save(update_docs=args.update_docs)


if __name__ == "__main__":
  main()
