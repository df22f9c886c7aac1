"""What fresh host memory costs a CPU train step, and what `restrl_jax.host_memory`'s "retain"
heap policy gives back: our train step against the PyTorch step under each heap set-up.

python bench/host_memory.py [--sizes tiny,100m] [--batch 8] [--seq 256] [--repeats 5]
                            [--dtype float32|bfloat16] [--rounds 3] [--no_save]
                            [--layout auto|stacked|per_layer]

A heap set-up holds for a whole process, and one step's heap traffic changes the next one's
(memory the other step freed, its arenas' state): so each side (ours, PyTorch) under each
set-up runs ALONE in its own child process, which times `--repeats` steps after one warm-up and
counts each call's minor page faults (pages the kernel maps and zeroes on first touch) and
system CPU time (`common.measure_alternating` over one function). The set-ups: "release"
(glibc's defaults), "retain" (`host_memory.apply("retain")`, what `--config.host_memory=retain`
sets) and "thp" (glibc's defaults plus `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`: malloc on
transparent huge pages). The children run in `--rounds` rounds of every (set-up, side) in turn,
so a slow stretch of the machine reaches all of them; each figure is the median over rounds
(the upper median of an even count). One row per size, `host_memory_<size>[_dtype]`: ours under
"retain" against PyTorch under whichever set-up made it fastest (the peer is not handicapped by
our heap policy), in ms per step, ratio > 1 meaning ours takes less time; every set-up's figures
come with it. `faulted_mib` counts 4 KiB per fault: under "thp" a fault may map a 2 MiB page,
so there it understates the memory faulted in.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common, train_step  # noqa: E402  (imports JAX but starts none of its threads)

SETUPS = {"release": ("release", {}), "retain": ("retain", {}),
          "thp": ("release", {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"})}
SIDES = ("ours", "peer")


def parse_args(argv=None):
  def add_arguments(parser):
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # a heap policy
    parser.add_argument("--side", default="ours", choices=SIDES, help=argparse.SUPPRESS)
  return train_step.parse_bench_args(add_arguments, argv)


def child(args) -> None:
  """Runs in a fresh process: set the heap policy first, then time one side's step alone;
  prints JSON."""
  from restrl_jax import host_memory
  policy = host_memory.apply(args.child)  # before JAX starts its threads
  from bench.model_sizes import bench_config
  config = dataclasses.replace(bench_config(args.sizes), dtype=args.dtype)
  if args.side == "ours":
    runner = train_step.ours_step_runner(config, args.batch, args.seq, args.layout)
  else:
    runner = train_step.torch_step_runner(config, args.batch, args.seq)
  usage = common.measure_alternating({args.side: runner}, repeats=args.repeats)[args.side]
  common.emit_result({"policy": policy, **usage._asdict()})


def run_child(args, size: str, setup: str, side: str) -> dict:
  policy, env = SETUPS[setup]
  command = [sys.executable, os.path.abspath(__file__), "--child", policy, "--side", side,
             "--sizes", size, "--batch", str(args.batch), "--seq", str(args.seq),
             "--repeats", str(args.repeats), "--dtype", args.dtype, "--layout", args.layout]
  child_env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"} | env
  return common.run_child(command, f"{setup} child ({side}) for {size}", env=child_env)


def summarize(results: dict[str, dict[str, list[dict]]]) -> dict[str, dict[str, dict]]:
  """{setup: {side: {seconds, minor_faults, system_seconds}}} from {setup: {side: [one dict per
  round]}}: medians over the rounds (upper median of an even count), each field on its own."""
  return {setup: {side: common.field_medians(rounds, skip=("policy",))
                  for side, rounds in sides.items()} for setup, sides in results.items()}


def main() -> None:
  args = parse_args()
  if args.child:
    child(args)
    return
  page_mib = os.sysconf("SC_PAGE_SIZE") / 2 ** 20
  suffix = "" if args.dtype == "float32" else f"_{args.dtype}"
  layout = "" if args.layout == "auto" else f"_{args.layout}"
  report = common.Report("host_memory", results_name=f"host_memory{suffix}{layout}")
  for size in args.sizes.split(","):
    tasks = {(setup, side): functools.partial(run_child, args, size, setup, side)
             for setup in SETUPS for side in SIDES}
    rounds = common.in_rounds(tasks, args.rounds)
    table = summarize({setup: {side: rounds[setup, side] for side in SIDES} for setup in SETUPS})
    best_peer = min(SETUPS, key=lambda s: table[s]["peer"]["seconds"])
    extra = {f"{side}_{setup}": {"ms": round(1e3 * u["seconds"], 1),
                                 "faulted_mib": round(u["minor_faults"] * page_mib, 1),
                                 "system_s": round(u["system_seconds"], 3)}
             for setup in SETUPS for side, u in table[setup].items()}
    report.add(f"host_memory_{size}{suffix}{layout}", 1e3 * table["retain"]["ours"]["seconds"],
               1e3 * table[best_peer]["peer"]["seconds"], "ms per train step",
               higher_is_better=False, peer_setup=best_peer, batch=args.batch, seq=args.seq,
               rounds=args.rounds, layout=args.layout, **extra)
  if not args.no_save:
    report.save()


if __name__ == "__main__":
  main()
