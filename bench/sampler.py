"""Generation tokens/s of our sampler vs transformers' PyTorch `generate()` (KV cache), and the
train step (forward + backward + AdamW) vs a PyTorch step, on the same random model, batch and
lengths, on this machine in the same run, timed in alternation (ours, peer, ours, ...; the
median of --repeats rounds, `common.timeit_alternating`). Also each side's FLOP/s as a fraction
of the measured float32 matmul peak, and for the sampler a floor: the prefill at that peak plus,
per generated step, the time a jitted sum takes to read the bytes a decode step reads (weights
and KV cache; `decode_ablation.stream_runner`, timed in the same rounds). `ours_floor_fraction`
is floor / ours; `peer_over_floor` is the ratio a sampler running at the floor would reach.

python bench/sampler.py [--sizes tiny,100m] [--batch 8] [--prompt 64] [--new 128] [--no-train]
                        [--no_save] [--decode_transpose_min N] [--dtype float32|bfloat16]

--dtype bfloat16 runs both sides in bfloat16: the sampler with bf16 weights, KV cache and
matmuls (ours: `ModelConfig(dtype=param_dtype="bfloat16")`; peer: `from_pretrained(torch_dtype=
torch.bfloat16)`), the train step as mixed precision, fp32 parameters and optimizer with bf16
matmuls (ours: `ModelConfig(dtype="bfloat16")`; peer: `torch.autocast("cpu", torch.bfloat16)`
around the forward). The peak fraction is then taken against the bf16 matmul peak.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import numpy as np

from bench import common, decode_ablation, train_step
from bench.model_sizes import bench_config, flops_per_token, matmul_peak_flops
from restrl_jax import models
from restrl_jax.models import decoder
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


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--sizes", default="tiny,100m")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--prompt", type=int, default=64)
  parser.add_argument("--new", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--train-seq", type=int, default=256)
  parser.add_argument("--no-train", action="store_true")
  parser.add_argument("--no_save", action="store_true", help="print only")
  parser.add_argument("--decode_transpose_min", type=int, default=None,
                      help="kernels of at least this many entries decode transposed (CPU; "
                           "default: the library's threshold; 0 = all, 1000000000 = none)")
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                      help="precision of both sides (see the module docstring)")
  args = parser.parse_args()
  report = common.Report("sampler", results_name=None if args.dtype == "float32"
                         else f"sampler_{args.dtype}")
  peak = matmul_peak_flops(dtype=args.dtype)
  suffix = "" if args.dtype == "float32" else f"_{args.dtype}"
  for size in args.sizes.split(","):
    # no EOS: both sides generate exactly --new tokens
    config = dataclasses.replace(bench_config(size), eos_token_id=None)
    params = models.init_params(config, jax.random.key(0))
    prompts = _prompts(config, args.batch, args.prompt)
    with tempfile.TemporaryDirectory() as hf_dir:
      models.save_hf(config, params, hf_dir)
      low = dataclasses.replace(config, dtype=args.dtype, param_dtype=args.dtype)
      low_params = jax.tree.map(lambda x: x.astype(args.dtype), params)
      stream, step_bytes = decode_ablation.stream_runner(
          decoder.decode_params(low_params), low, args.batch, args.prompt + args.new, steps=1)
      times = common.timeit_alternating(
          {"ours": ours_runner(low, low_params, prompts, args.new, args.decode_transpose_min),
           "peer": torch_runner(hf_dir, prompts, args.new, args.dtype), "stream": stream},
          repeats=args.repeats)
    ours, peer = times["ours"], times["peer"]
    generated = args.batch * args.new
    flops = flops_per_token(config, args.prompt + args.new // 2) * (
        args.batch * (args.prompt + args.new))
    # the floor: the prefill at the matmul peak, then each step reading its bytes at the rate
    # of a jitted sum over them (measured in the same rounds)
    floor = (flops_per_token(config, args.prompt) * args.batch * args.prompt / peak
             + args.new * times["stream"])
    report.add(f"sampler_{size}{suffix}", generated / ours, generated / peer, "generated tokens/s",
               ours_peak_fraction=round(flops / ours / peak, 4),
               peer_peak_fraction=round(flops / peer / peak, 4),
               ours_floor_fraction=round(floor / ours, 4), peer_over_floor=round(peer / floor, 3),
               step_bytes=step_bytes, batch=args.batch, prompt=args.prompt, new=args.new)
    if not args.no_train:
      tokens = args.batch * args.train_seq
      train_config = dataclasses.replace(bench_config(size), dtype=args.dtype)
      times = common.timeit_alternating(
          {"ours": train_step.ours_step_runner(train_config, args.batch, args.train_seq),
           "peer": train_step.torch_step_runner(train_config, args.batch, args.train_seq)},
          repeats=args.repeats)
      t_ours, t_peer = times["ours"], times["peer"]
      tflops = 3 * flops_per_token(bench_config(size), args.train_seq) * tokens
      report.add(f"train_step_{size}{suffix}", tokens / t_ours, tokens / t_peer, "tokens/s",
                 ours_peak_fraction=round(tflops / t_ours / peak, 4),
                 peer_peak_fraction=round(tflops / t_peer / peak, 4),
                 batch=args.batch, seq=args.train_seq)
  short = {"float32": "f32", "bfloat16": "bf16"}[args.dtype]
  report.add(f"matmul_peak{suffix}", peak / 1e9, peak / 1e9, f"GFLOP/s ({short}, 1024^3 via XLA)")
  if not args.no_save:
    report.save()


if __name__ == "__main__":
  main()
