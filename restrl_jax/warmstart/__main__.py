"""Train (or resume) a warm-start policy; the defaults re-create the shipped demo policy.

  python -m restrl_jax.warmstart --out DIR [--steps N] [--batch_size B] [--eval_problems 200]
      [--eval_splits test,id_test] [--init_policy_path HF_FOLDER]

`--init_policy_path` continues SFT from an existing policy (its weights, config and tokenizer)
instead of a fresh `--preset` model.

Writes DIR/metrics.jsonl, DIR/checkpoints/ (re-running resumes from the newest) and the policy
as a Hugging Face folder DIR/policy; `--eval_problems N` then scores it on N problems of each
synthetic split in `--eval_splits` (`--eval_samples` samples each at `--temperature`) and writes
DIR/eval.json ({split: scores}).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path
from typing import Sequence

from restrl_jax import io_utils

OVERRIDES = {"steps": int, "batch_size": int, "learning_rate": float, "warmup_steps": int,
             "schedule": str, "seed": int, "num_train_problems": int, "difficulty": str,
             "checkpoint_every": int, "log_every": int, "max_len": int, "preset": str,
             "tokenizer_path": str, "init_policy_path": str}


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True, help="output folder (resumed if it has checkpoints)")
  for name, kind in OVERRIDES.items():
    parser.add_argument(f"--{name}", type=kind, default=None)
  parser.add_argument("--eval_problems", type=int, default=0)
  parser.add_argument("--eval_samples", type=int, default=5)
  parser.add_argument("--eval_splits", default="test,id_test",
                      help="comma-separated synthetic splits to score the policy on")
  parser.add_argument("--temperature", type=float, default=0.7)
  parser.add_argument("--max_new_tokens", type=int, default=128)
  return parser.parse_args(argv)


def _difficulty(value: str) -> int | str:
  return int(value) if value.isdigit() else value


def evaluate(policy: Path, args: argparse.Namespace) -> dict:
  """{split: scores} of the policy on `args.eval_problems` problems of each split."""
  # pylint: disable=import-outside-toplevel
  from restrl_jax.data.synthetic import load_synthetic
  from restrl_jax.execution import ExecutionPool
  from restrl_jax.models import load_hf
  from restrl_jax.rollout import policy_scores
  from restrl_jax.sampling import Sampler, SamplingParams
  from restrl_jax.tokenizer import load_tokenizer
  config, params = load_hf(policy)
  sampler = Sampler(config, params, load_tokenizer(policy), max_batch=256)
  sp = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature)
  scores = {}
  with ExecutionPool() as pool:
    for split in args.eval_splits.split(","):
      problems = load_synthetic(split, args.eval_problems, verify=False)
      scores[split] = policy_scores(sampler, pool, problems, sp, args.eval_samples,
                                    ks=(1, args.eval_samples), rng=0)
  return scores


def main(argv: Sequence[str] | None = None) -> dict:
  # pylint: disable=import-outside-toplevel
  from restrl_jax.warmstart.train import WarmstartConfig, train_policy
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
  args = parse(argv)
  given = {name: getattr(args, name) for name in OVERRIDES if getattr(args, name) is not None}
  if "difficulty" in given:
    given["difficulty"] = _difficulty(given["difficulty"])
  summary = train_policy(dataclasses.replace(WarmstartConfig(), **given), args.out)
  if args.eval_problems:
    summary["eval"] = evaluate(Path(summary["policy_path"]), args)
    io_utils.atomic_write_json(Path(args.out) / "eval.json", summary["eval"])
  print(json.dumps(summary, indent=2))
  return summary


if __name__ == "__main__":
  main()
