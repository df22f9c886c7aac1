"""GRPO step throughput: steps/s, generated tokens/s, and where the time goes (sampling,
execution, update), with and without sampling/execution overlap (`grpo.overlap_chunks`).

Sizes:
  tiny  the demo: the shipped demo policy (tiny preset), `configs/demo.py`'s `grpo()` (B=2
        prompts x G=4 completions of <= 64 tokens), synthetic train problems, the real sandbox.
  100m  `bench/model_sizes.py`'s ~100M dims (width 768, 32k-vocab embedding replaced by the
        synthetic tokenizer's, 16 layers so the count stays ~100M), random weights, and small
        shapes for a CPU (`--small`: B=2, G=2, <= 32 new tokens, prompts <= 256).

Rows (bench/common.py convention):
  grpo_step_<size>     ours = steps/s with overlap, peer = steps/s without (ratio = speed-up);
                       extra: tokens/s both ways and the time shares of the non-overlapped step:
                       sampling, the reference pass (the sandbox runs meanwhile), still waiting
                       on the sandbox after it (share_exec_wait), the update
  grpo_tokens_<size>   generated tokens/s, overlapped vs not

python bench/grpo.py [--sizes tiny,100m] [--steps 6] [--chunks 2] [--no-save] [--update-docs]

Results go to the git-ignored bench/results/grpo.json; `--update-docs` also puts the rows into
docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp

from bench import common
from bench.model_sizes import bench_config, num_params
from restrl_jax import models
from restrl_jax.data.synthetic import load_synthetic
from restrl_jax.execution import ExecutionPool
from restrl_jax.rl import rounds
from restrl_jax.rl.trainer import GRPOTrainer, Request
from restrl_jax.rollout import encode_prompt
from restrl_jax.tokenizer import load_tokenizer
from restrl_jax.training import init_train_state
from restrl_jax.warmstart import shipped_policy_path

TIMES = ("sample_s", "ref_s", "exec_s", "exec_wait_s", "train_s", "step_s")


def _model(size: str, tokenizer):
  """(config, params) of the demo policy or of a random ~100M model on its vocabulary."""
  if size == "tiny":
    return models.load_hf(shipped_policy_path())
  demo = models.read_hf_config(shipped_policy_path())
  config = dataclasses.replace(bench_config("100m"), num_layers=16, vocab_size=len(tokenizer),
                               bos_token_id=demo.bos_token_id, eos_token_id=demo.eos_token_id,
                               pad_token_id=demo.pad_token_id)
  return config, models.init_params(config, jax.random.key(0))


def _grpo_section(size: str):
  from configs import demo  # ml_collections: bench/accelerator.py imports this file
  grpo = demo.grpo()
  if size == "100m":
    grpo.update(dict(group_size=2, prompts_per_step=2, max_new_tokens=32))
  return grpo


def run_steps(trainer: GRPOTrainer, optimizer, params, requests, steps: int,
              chunks: int) -> tuple[dict, dict]:
  """Timings of `steps` GRPO steps without and with overlap (after one warm-up step
  each, which compiles), alternating the two so that both see the same machine load."""
  def stream():
    position = [0]

    def take(n):
      out = [requests[(position[0] + i) % len(requests)] for i in range(n)]
      position[0] += n
      return out
    return take

  modes = (dataclasses.replace(trainer.cfg, overlap_chunks=1),
           dataclasses.replace(trainer.cfg, overlap_chunks=chunks))
  # both modes see the same prompts and keys, so they do the same work (the same samples)
  # committed to one device, as the train step's outputs are (else step 2 compiles again)
  states = [jax.device_put(init_train_state(jax.tree.map(jnp.copy, params), optimizer),
                           jax.devices()[0]) for _ in modes]
  streams, runs = [stream() for _ in modes], [[], []]
  for i in range(steps + 1):
    for m, cfg in enumerate(modes):
      trainer.cfg = cfg
      states[m], metrics, ro = trainer.step(states[m], params, streams[m], jax.random.key(i))
      if i:
        runs[m].append(dict({k: metrics[k] for k in TIMES},
                            tokens=sum(len(c) for c in ro.completions)))
  return tuple(_summary(r) for r in runs)


def _summary(runs: list[dict]) -> dict:
  """Mean seconds of each part; steps/s and tokens/s over the total time."""
  out = {k: statistics.fmean(r[k] for r in runs) for k in TIMES}
  total = sum(r["step_s"] for r in runs)
  out["tokens_per_s"] = sum(r["tokens"] for r in runs) / total
  out["steps_per_s"] = len(runs) / total
  return out


def one_bucket(requests: list[Request], tokenizer, trainer: GRPOTrainer) -> list[Request]:
  """The requests whose prompts fall in the most common length bucket, so that the timed steps
  reuse the warm-up step's compiled programs."""
  limit = trainer.cfg.max_prompt_tokens
  bucket = [trainer.buckets.prompt_len(len(encode_prompt(tokenizer, r.problem, r.state, limit)))
            for r in requests]
  common_bucket = statistics.mode(bucket)
  return [r for r, b in zip(requests, bucket) if b == common_bucket]


def bench_size(report: common.Report, size: str, steps: int, chunks: int, pool) -> None:
  from restrl_jax.pipeline.stages import rest_grpo  # ml_collections, as in _grpo_section
  tokenizer = load_tokenizer(shipped_policy_path())
  config, params = _model(size, tokenizer)
  grpo = rest_grpo.grpo_config(_grpo_section(size))
  optimizer = rounds.round_optimizer(rounds.RoundsConfig(learning_rate=5e-5, schedule="constant"))
  trainer = GRPOTrainer(config, tokenizer, grpo, optimizer, pool)
  requests = one_bucket([Request(p, p.starter_code) for p in load_synthetic("train", 64,
                                                                           verify=False)],
                        tokenizer, trainer)
  plain, over = run_steps(trainer, optimizer, params, requests, steps, chunks)
  shares = {f"share_{k[:-2]}": round(plain[k] / plain["step_s"], 3)
            for k in ("sample_s", "ref_s", "exec_wait_s", "train_s")}
  shape = f"B={grpo.prompts_per_step} G={grpo.group_size} new<={grpo.max_new_tokens}"
  extra = dict(params_m=round(num_params(config) / 1e6, 1), shape=shape, chunks=chunks,
               exec_busy_s=round(plain["exec_s"], 3), saving_s=round(plain["step_s"]
                                                                     - over["step_s"], 3),
               **{f"plain_{k}": round(plain[k], 3) for k in TIMES},
               **{f"overlap_{k}": round(over[k], 3) for k in TIMES}, **shares)
  report.add(f"grpo_step_{size}", over["steps_per_s"], plain["steps_per_s"],
             f"GRPO steps/s ({shape}); peer: the same step without overlap", **extra)
  report.add(f"grpo_tokens_{size}", over["tokens_per_s"], plain["tokens_per_s"],
             "generated tokens/s per GRPO step; peer: without overlap")


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--sizes", default="tiny,100m")
  ap.add_argument("--steps", type=int, default=6)
  ap.add_argument("--chunks", type=int, default=2)
  ap.add_argument("--workers", type=int, default=0, help="sandbox workers (0: one per core)")
  ap.add_argument("--no-save", action="store_true", help="print only (no results file)")
  common.add_update_docs_flag(ap)
  args = ap.parse_args()
  report = common.Report("grpo")
  with ExecutionPool(num_workers=args.workers or None) as pool:
    for size in args.sizes.split(","):
      bench_size(report, size, args.steps, args.chunks, pool)
  if not args.no_save:
    report.save(update_docs=args.update_docs)


if __name__ == "__main__":
  main()
