"""Train step (forward + backward + AdamW) of restrl_jax vs a PyTorch (transformers) step.

Same model configuration, batch and sequence length, same machine, same run. Also reports each
side's achieved FLOP/s as a fraction of this machine's measured float32 matmul peak.

python bench/train_step.py [--sizes tiny,100m] [--batch 8] [--seq 256]
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np

from bench import common
from bench.model_sizes import bench_config, flops_per_token, matmul_peak_flops
from restrl_jax import models
from restrl_jax.training import init_train_state, make_optimizer, make_train_step, sft_loss


def ours_step_seconds(config, batch: int, seq: int, repeats: int) -> float:
  params = models.init_params(config, jax.random.key(0))
  optimizer = make_optimizer(1e-4, 1000, schedule="constant")
  state = init_train_state(params, optimizer)
  step = make_train_step(functools.partial(sft_loss, config), optimizer)
  tokens = jax.random.randint(jax.random.key(1), (batch, seq), 3, config.vocab_size)
  data = dict(tokens=tokens, attention_mask=jnp.ones_like(tokens), loss_mask=jnp.ones_like(tokens))
  holder = [state]

  def run():
    holder[0], metrics = step(holder[0], data)
    jax.block_until_ready(metrics["loss"])

  return common.timeit(run, repeats=repeats)


def torch_step_seconds(config, batch: int, seq: int, repeats: int) -> float:
  import torch
  import transformers
  hf = transformers.AutoConfig.for_model(**config.to_hf_config())
  hf._attn_implementation = "sdpa"
  model = transformers.AutoModelForCausalLM.from_config(hf).train()
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
  tokens = torch.randint(3, config.vocab_size, (batch, seq))

  def run():
    optimizer.zero_grad(set_to_none=True)
    loss = model(input_ids=tokens, labels=tokens).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()

  return common.timeit(run, repeats=repeats)


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--sizes", default="tiny,100m")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--seq", type=int, default=256)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  report = common.Report("train_step")
  peak = matmul_peak_flops()
  for size in args.sizes.split(","):
    config = bench_config(size)
    tokens = args.batch * args.seq
    flops = 3 * flops_per_token(config, args.seq) * tokens
    ours = ours_step_seconds(config, args.batch, args.seq, args.repeats)
    peer = torch_step_seconds(config, args.batch, args.seq, args.repeats)
    report.add(f"train_step_{size}", tokens / ours, tokens / peer, "tokens/s",
               ours_peak_fraction=round(flops / ours / peak, 3),
               peer_peak_fraction=round(flops / peer / peak, 3),
               batch=args.batch, seq=args.seq)
  report.save()


if __name__ == "__main__":
  main()
