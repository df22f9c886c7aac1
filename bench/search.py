"""MCTS search cost: where an expansion's time goes, and what batching B trees buys.

    PYTHONPATH=. python bench/search.py [--trees 16] [--iterations 3] [--max_new_tokens 128]
                                        [--policy demo|100m] [--no_save] [--update-docs]

Policy: the shipped demo policy (tiny qwen2, 1.05M parameters), or with `--policy 100m` a random
~100M one of the same family and tokenizer (bench/model_sizes.py, only the batching rows, with
the suffix `_100m`: its programs are noise, so it measures the cost of the search, not its
results); problems: synthetic
train split; execution: the sandbox pool; value model: the policy backbone with a fresh value
head (scoring cost does not depend on training), scoring in batches of 16 texts like the
pipeline (`score_batch_size`).
1. `expansion_split_<mode>`: one batched search of B trees ("collect": execution-scored, the
   value-target collection; "vm": VM-MCTS decoding) for `iterations` steps, run twice (the
   first compiles); the driver's counters split the second run's time per expansion into
   generation, execution (waiting for the sandbox after generation), value scoring and tree
   bookkeeping (select, insert, backup, path rebuild, host glue). Row: ours = bookkeeping
   s/expansion, peer = total s/expansion, ratio = total / bookkeeping (>= 20: bookkeeping < 5%).
2. `search_b<B>_vs_b1` ("collect" mode, with execution) and
   `search_b<B>_vs_b1_vm` (VM-MCTS decoding: value-model scoring, nothing executed): the same B
   problems searched together (one batched generation and one value-model call per step) vs one
   tree at a time (B separate searches), alternating in `rounds` rounds (2) in one process after
   warm-up runs (the B-tree search and every single-tree one), so compilation is left out. Each
   tree's prompt before its program is prefilled once per search (prefix caching,
   `SearchConfig.prefix_cache`). ours / peer = expansions per second; ratio = per-tree speed-up
   (issue #24's target for the VM row: >= 3x). Also reported: `generation_ratio`, the same
   speed-up counting generation time only, the share of each part (generation, execution, value,
   bookkeeping) of the batched and the one-at-a-time time, and the load average (the machine is
   shared). Execution is CPU work per program, which no batching of trees can share on 2 cores.
Writes bench/results/search.json (git-ignored); `--update-docs` also puts a row per comparison
into docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402

from bench.common import Report, add_update_docs_flag  # noqa: E402
from bench.model_sizes import bench_config  # noqa: E402
from restrl_jax import models  # noqa: E402
from restrl_jax.data.synthetic import load_synthetic  # noqa: E402
from restrl_jax.execution import ExecutionPool  # noqa: E402
from restrl_jax.sampling import Sampler, SamplingParams  # noqa: E402
from restrl_jax.search.driver import SearchConfig, run_search  # noqa: E402
from restrl_jax.tokenizer import load_tokenizer  # noqa: E402
from restrl_jax.value.model import ValueModel, init_value_params  # noqa: E402
from restrl_jax.warmstart import shipped_policy_path  # noqa: E402

PARTS = ("generation", "execution", "value", "bookkeeping")
SCORE_BATCH = 16  # value-model scoring batch: the pipeline's `score_batch_size`


def _policy(name: str):
  config, params = models.load_hf(shipped_policy_path())
  if name == "100m":
    config = dataclasses.replace(bench_config("100m"), vocab_size=config.vocab_size,
                                 tie_word_embeddings=config.tie_word_embeddings,
                                 eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id)
    params = models.init_params(config, jax.random.key(0))
  elif name != "demo":
    raise ValueError(f"unknown --policy {name!r}; choose demo or 100m")
  return config, params


def _setup(max_new_tokens: int, policy: str):
  tokenizer = load_tokenizer(shipped_policy_path())
  config, params = _policy(policy)
  sampler = Sampler(config, params, tokenizer, max_batch=256)
  vm = ValueModel(config, init_value_params(config, params, jax.random.key(0)), tokenizer,
                  max_length=512, batch_size=SCORE_BATCH)
  return sampler, vm, SamplingParams(max_new_tokens=max_new_tokens, temperature=0.7)


def _search(problems, sampler, sp, pool, vm, mode: str, iterations: int, tree_ids=None):
  cfg = SearchConfig(iterations=iterations, num_samples=5,
                     width=3 if mode == "collect" else 5, c=0.2 if mode == "collect" else 0.1,
                     mode=mode, count="expansions", seed=0)
  return run_search(problems, sampler, sp, cfg, pool=pool if mode == "collect" else None,
                    scorer=vm.scorer() if mode != "collect" else None, tree_ids=tree_ids)


def split_row(report: Report, problems, sampler, sp, pool, vm, mode: str, iterations: int):
  _search(problems, sampler, sp, pool, vm, mode, iterations)  # the same run compiles its shapes
  result = _search(problems, sampler, sp, pool, vm, mode, iterations)
  t, n = result.timing, result.timing["expansions"]
  per = {k: t[k] / n for k in PARTS}
  report.add(f"expansion_split_{mode}", per["bookkeeping"], t["total"] / n,
             "s/expansion (ours: bookkeeping, peer: total)", higher_is_better=False,
             trees=len(problems), expansions=int(n),
             **{f"{k}_s_per_expansion": round(per[k], 5) for k in PARTS},
             **{f"{k}_share": round(t[k] / t["total"], 4) for k in PARTS})


def _timed_searches(problems, sampler, sp, pool, vm, mode: str, iterations: int, batched: bool):
  """(seconds, summed timing counters) of the B trees searched together or one at a time."""
  groups = [(problems, None)] if batched else [([p], [i]) for i, p in enumerate(problems)]
  start, timing = time.perf_counter(), dict.fromkeys(PARTS + ("expansions",), 0.0)
  for group, ids in groups:
    result = _search(group, sampler, sp, pool, vm, mode, iterations, tree_ids=ids)
    for k in timing:
      timing[k] += result.timing[k]
  return time.perf_counter() - start, timing


def batching_row(report: Report, problems, sampler, sp, pool, vm, mode: str, iterations: int,
                 suffix: str = "", rounds: int = 2):
  """B trees together vs one at a time, `rounds` alternating rounds after warm-ups."""
  b = len(problems)
  for i in range(b):  # warm-up of the one-tree shapes (prompt and state length buckets)
    _search(problems[i:i + 1], sampler, sp, pool, vm, mode, iterations, tree_ids=[i])
  _search(problems, sampler, sp, pool, vm, mode, iterations)  # (split_row compiled it too)
  runs = {True: [], False: []}
  for _ in range(rounds):
    for batched in (True, False):
      runs[batched].append(_timed_searches(problems, sampler, sp, pool, vm, mode, iterations,
                                           batched))
  summed = lambda k: (sum(t for t, _ in runs[k]),
                      {p: sum(x[p] for _, x in runs[k]) for p in runs[k][0][1]})
  (t_batched, together), (t_alone, alone) = summed(True), summed(False)
  per_generation = lambda t: t["expansions"] / t["generation"]
  what = ("collect mode, with execution" if mode == "collect" else
          "VM-MCTS decoding, value-model scoring")
  report.add(f"search_b{b}_vs_b1{suffix}", together["expansions"] / t_batched,
             alone["expansions"] / t_alone, f"expansions/s ({what})",
             trees=b, iterations=iterations, rounds=rounds,
             seconds_batched=round(t_batched, 2), seconds_one_at_a_time=round(t_alone, 2),
             **{f"{k}_share_batched": round(together[k] / t_batched, 3) for k in PARTS},
             **{f"{k}_share_one_at_a_time": round(alone[k] / t_alone, 3) for k in PARTS},
             generation_ratio=round(per_generation(together) / per_generation(alone), 3),
             loadavg=_loadavg())


def _loadavg() -> str:
  """The machine's 1/5/15-minute load averages (it is shared: read figures beside them)."""
  return " ".join(pathlib.Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--trees", type=int, default=16)
  parser.add_argument("--iterations", type=int, default=3)
  parser.add_argument("--max_new_tokens", type=int, default=128)
  parser.add_argument("--policy", default="demo", help="demo (shipped) or 100m (random)")
  parser.add_argument("--no_save", action="store_true", help="print only (a smoke run)")
  add_update_docs_flag(parser)
  args = parser.parse_args()
  sampler, vm, sp = _setup(args.max_new_tokens, args.policy)
  problems = load_synthetic("train", args.trees, verify=False)
  report = Report("search", "search" if args.policy == "demo" else f"search_{args.policy}")
  with ExecutionPool() as pool:
    if args.policy == "demo":
      split_row(report, problems, sampler, sp, pool, vm, "collect", args.iterations)
      split_row(report, problems, sampler, sp, pool, vm, "vm", args.iterations)
    size = "" if args.policy == "demo" else f"_{args.policy}"
    batching_row(report, problems, sampler, sp, pool, vm, "collect", args.iterations,
                 suffix=size)
    batching_row(report, problems, sampler, sp, pool, vm, "vm", args.iterations,
                 suffix=f"_vm{size}")
  if not args.no_save:
    report.save(update_docs=args.update_docs)


if __name__ == "__main__":
  main()
