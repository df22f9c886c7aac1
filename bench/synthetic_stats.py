"""Statistics of the synthetic suite: speed, lengths, splits, graded signal.

  python bench/synthetic_stats.py --num 500 [--difficulty mixed] [--vocab 1024]

Prints generation speed (problems/s, excluding execution), execution time of the references,
solution length in lines and tokens (embedded tokenizer), prompt length in tokens, and the share
of one-step-dropped references that get a graded reward (0 < r < 1), per split.
"""
from __future__ import annotations

import argparse
import collections
import statistics
import tempfile
import time

from restrl_jax import tokenizer as T
from restrl_jax.data import synthetic as S
from restrl_jax.data import synthetic_exec as X


def _quantiles(values: list[float]) -> str:
  q = statistics.quantiles(values, n=10)
  return f"mean {statistics.mean(values):.1f} p10 {q[0]:.0f} p50 {q[4]:.0f} p90 {q[8]:.0f} max {max(values)}"


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--num", type=int, default=500)
  parser.add_argument("--difficulty", default="mixed")
  parser.add_argument("--vocab", type=int, default=1024)
  args = parser.parse_args()
  difficulty = int(args.difficulty) if args.difficulty.isdigit() else args.difficulty
  with tempfile.TemporaryDirectory() as folder:
    tok = T.train_tokenizer(S.spec_corpus("train", 2000), args.vocab, folder)
  for split in S.SPLITS:
    start = time.perf_counter()
    specs = S.generate_specs(split, args.num, seed=0, difficulty=difficulty)
    gen_s = time.perf_counter() - start
    start = time.perf_counter()
    problems = S.build_problems(specs, split, 0, difficulty)
    exec_s = time.perf_counter() - start
    lines = [len(p.metadata["solution"].rstrip("\n").split("\n")) for p in problems]
    sol_tokens = [len(tok.encode(p.metadata["solution"])) for p in problems]
    corpus = S.tokenizer_corpus(problems)
    total_tokens = [len(tok.encode(a + b)) for a, b in zip(corpus[::2], corpus[1::2])]
    programs, owners = [], []
    for p in problems:
      for m in S.drop_one_programs(p):
        programs.append(m)
        owners.append(p)
    rewards = X.local_rewards(programs, owners)
    graded = sum(0 < r < 1 for r in rewards) / len(rewards)
    print(f"== {split}: {args.num} problems, difficulty {difficulty}")
    print(f"  generation {args.num / gen_s:.0f} problems/s; reference execution {exec_s:.1f} s")
    print(f"  solution lines   {_quantiles(lines)}  {sorted(collections.Counter(lines).items())}")
    print(f"  solution tokens  {_quantiles(sol_tokens)}")
    print(f"  prompt+solution tokens (paper's APPS wording, no chat markup) {_quantiles(total_tokens)}")
    print(f"  drop-one-step programs: {len(rewards)}; graded (0<r<1) {graded:.3f}, "
          f"r=0 {sum(r == 0 for r in rewards) / len(rewards):.3f}, "
          f"mean r {statistics.mean(rewards):.3f}")
    print(f"  distinct compositions {len({tuple(p.metadata['composition']) for p in problems})}; "
          f"styles {dict(collections.Counter(p.metadata['style'] for p in problems))}; "
          f"phrasings {dict(collections.Counter(p.metadata['phrasing'] for p in problems))}; "
          f"families {dict(collections.Counter(p.metadata['family'] for p in problems))}")


if __name__ == "__main__":
  main()
