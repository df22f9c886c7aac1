"""The train step of bench/sampler.py split into phases, ours vs PyTorch: the forward (the loss),
the forward + backward (loss and gradient) and the optimizer (global-norm clipping + AdamW on
fixed gradients), on the same random model, batch and length, all six closures timed in
alternation (`common.timeit_alternating`, median of --repeats rounds).

python bench/train_phases.py [--sizes tiny,100m] [--batch 8] [--seq 256] [--repeats 5]
                             [--dtype float32|bfloat16] [--no_save]

Precision as in bench/sampler.py: --dtype bfloat16 is bf16 matmuls with fp32 parameters and
optimizer on both sides (ours `ModelConfig(dtype="bfloat16")`, PyTorch `torch.autocast`). One
row per phase, in milliseconds, ratio > 1 meaning ours takes less time; ours' backward alone is
"gradient" minus "forward".
"""
from __future__ import annotations

import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common, train_step
from bench.model_sizes import bench_config

PHASES = ("forward", "gradient", "optimizer")


def main() -> None:
  args = train_step.parse_bench_args()
  suffix = "" if args.dtype == "float32" else f"_{args.dtype}"
  report = common.Report("train_phases", results_name=f"train_phases{suffix}")
  for size in args.sizes.split(","):
    config = dataclasses.replace(bench_config(size), dtype=args.dtype)
    ours = train_step.ours_phase_runners(config, args.batch, args.seq)
    peer = train_step.torch_phase_runners(config, args.batch, args.seq)
    runners = {f"{side}/{phase}": fns[phase] for side, fns in (("ours", ours), ("peer", peer))
               for phase in PHASES}
    times = common.timeit_alternating(runners, repeats=args.repeats)
    for phase in PHASES:
      report.add(f"train_{phase}_{size}{suffix}", 1e3 * times[f"ours/{phase}"],
                 1e3 * times[f"peer/{phase}"], "ms", higher_is_better=False,
                 batch=args.batch, seq=args.seq)
  if not args.no_save:
    report.save()


if __name__ == "__main__":
  main()
