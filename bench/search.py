"""MCTS search cost: where an expansion's time goes, and what batching B trees buys.

    PYTHONPATH=. python bench/search.py [--trees 16] [--iterations 3] [--max_new_tokens 128]
                                        [--policy demo|100m] [--no_save] [--update-docs]

Policy: the shipped demo policy (tiny qwen2, 1.05M parameters), or with `--policy 100m` a random
~100M one of the same family and tokenizer (bench/model_sizes.py, only the batching row: its
programs are noise, so it measures the cost of the search, not its results); problems: synthetic
train split; execution: the sandbox pool; value model: the policy backbone with a fresh value
head (scoring cost does not depend on training).
1. `expansion_split_<mode>`: one batched search of B trees ("collect": execution-scored, the
   value-target collection; "vm": VM-MCTS decoding) for `iterations` steps, run twice (the
   first compiles); the driver's counters split the second run's time per expansion into
   generation, execution (waiting for the sandbox after generation), value scoring and tree
   bookkeeping (select, insert, backup, path rebuild, host glue). Row: ours = bookkeeping
   s/expansion, peer = total s/expansion, ratio = total / bookkeeping (>= 20: bookkeeping < 5%).
2. `search_b<B>_vs_b1`: the same B problems searched together (one batched generation per step)
   vs one tree at a time (B separate searches), both "collect" mode with execution, after
   warm-up runs (the B-tree search; 4 of the single-tree ones), so compilation is left out.
   ours / peer = expansions per second; ratio = speed-up (target >= 5x). Also reported:
   `generation_ratio`, the same speed-up counting generation time only (execution is CPU work
   per program, which no batching of trees can share on this machine's 2 cores).
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
  vm = None if policy != "demo" else ValueModel(  # only the demo's "vm" split row scores
      config, init_value_params(config, params, jax.random.key(0)), tokenizer, max_length=512,
      batch_size=64)
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


def batching_row(report: Report, problems, sampler, sp, pool, vm, iterations: int,
                 suffix: str = ""):
  b = len(problems)
  for i in range(min(4, b)):  # warm-up of the one-tree shapes (prompt-length buckets)
    _search(problems[i:i + 1], sampler, sp, pool, vm, "collect", iterations, tree_ids=[i])
  _search(problems, sampler, sp, pool, vm, "collect", iterations)  # (split_row compiled it too)
  start = time.perf_counter()
  together = _search(problems, sampler, sp, pool, vm, "collect", iterations)
  t_batched = time.perf_counter() - start
  start, alone_expansions, alone_generation = time.perf_counter(), 0.0, 0.0
  for i, problem in enumerate(problems):
    alone = _search([problem], sampler, sp, pool, vm, "collect", iterations, tree_ids=[i])
    alone_expansions += alone.timing["expansions"]
    alone_generation += alone.timing["generation"]
  t_alone = time.perf_counter() - start
  together_per_s = together.timing["expansions"] / together.timing["generation"]
  report.add(f"search_b{b}_vs_b1{suffix}", together.timing["expansions"] / t_batched,
             alone_expansions / t_alone, "expansions/s (collect mode, with execution)",
             trees=b, iterations=iterations, seconds_batched=round(t_batched, 2),
             seconds_one_at_a_time=round(t_alone, 2),
             generation_seconds_batched=round(together.timing["generation"], 2),
             generation_seconds_one_at_a_time=round(alone_generation, 2),
             generation_ratio=round(together_per_s / (alone_expansions / alone_generation), 3))


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
    batching_row(report, problems, sampler, sp, pool, vm, args.iterations,
                 suffix="" if args.policy == "demo" else f"_{args.policy}")
  if not args.no_save:
    report.save(update_docs=args.update_docs)


if __name__ == "__main__":
  main()
