"""Which scorer ranks a problem's programs? The policy's likelihood against a DPO-trained verifier.

  python -m experiments.verifiers run --learning runs/learning/main --out runs/verifiers \
      --record docs/runs/verifiers --seeds 0,1,2
  python -m experiments.verifiers report --record docs/runs/verifiers --docs docs

Table 2's value model (MSE on MCTS targets) ranks the RL'd policy's programs of unseen problems
near chance, while the policy's own log-likelihood of a program ranks them much better. This
experiment asks whether training on the policy's own token probabilities carries the ranking
further: a copy of the RL'd policy is trained with the DPO loss (the ReST-DPO trainer,
`rl.trainer.DPOTrainer`, β = `--beta`) on pairs (a strictly correct program, a wrong one) of the
same training problem, and a program's score is its implicit reward
β·[log π_DPO(y | x) − log π_RL(y | x)] (Rafailov et al. 2024; Yuan et al. 2024: the implicit
reward of a DPO model as a verifier), beside the log-likelihood log π(y | x) under each model.

`run`, per seed s, with the learning experiment's naive-GRPO policy of seed s (the policy Table 2
ranks), every program encoded as the ReST-DPO trainer encodes a completion (program after the
starter code + closing marker + EOS, after the policy's prompt):
  pools    `--pool_size` samples per problem on the first `--num_test` id_test problems (Table 2's
           pool: same sampling seed), `--train_samples` per problem on the first
           `--train_problems` train problems (the pairs), `--val_samples` on the first
           `--val_problems` id_validation problems (the training step is chosen there), executed;
  train    `--steps` DPO steps of `--pairs_per_step` pairs drawn with replacement from at most
           `--pairs_per_problem` pairs per training problem; every `--eval_every` steps the
           scores of the validation and test pools;
and the seed's record `<record>/seed<s>.json` keeps the per-problem rewards and, per scorer, the
within-problem AUC on both pools at every evaluation (the reported step is the one with the best
validation AUC of the implicit reward; the test split never chooses).

`report` writes the table (mean ± std over seeds, per seed in brackets) into `<docs>/results.md`
between markers and `verifiers` into `<docs>/results.json`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from experiments import table2
from restrl_jax import io_utils
from restrl_jax.evaluation.metrics import within_problem_auc
from restrl_jax.value import preferences

SCORERS = ("likelihood", "dpo_implicit_reward", "dpo_likelihood")
NAMES = {"likelihood": "RL'd policy's log-likelihood log π_RL(y ∣ x)",
         "dpo_implicit_reward": "DPO verifier's implicit reward β·log π_DPO/π_RL",
         "dpo_likelihood": "DPO verifier's log-likelihood log π_DPO(y ∣ x)"}
BEGIN, END = "<!-- verifiers:begin -->", "<!-- verifiers:end -->"


@dataclasses.dataclass(frozen=True)
class Settings:
  """Sizes of one seed's run (defaults: what fits the 2-core CPU machine)."""
  num_test: int = 200            # id_test problems (Table 2's pool)
  pool_size: int = 20
  train_problems: int = 4500     # train problems whose programs make the pairs
  train_samples: int = 8
  val_problems: int = 200        # id_validation problems (the step is chosen on them)
  val_samples: int = 8
  pairs_per_problem: int = 8
  steps: int = 750
  pairs_per_step: int = 32
  learning_rate: float = 1e-4
  beta: float = 0.1
  eval_every: int = 250

  def __post_init__(self):
    for name, value in dataclasses.asdict(self).items():
      if value <= 0:
        raise ValueError(f"Settings.{name} must be > 0, got {value}")


# -- pools ---------------------------------------------------------------------------------------

def executed_pool(sampler: Any, pool: Any, problems: Sequence, size: int, seed: int,
                  sampling_params: Any) -> dict:
  """`size` executed samples per problem: each program's completion (after the starter code),
  reward and whether it ran without an exception."""
  groups = table2.sample_pool(sampler, pool, problems, size, seed, sampling_params)
  return {"problem_ids": [p.id for p in problems],
          "completions": [[r.program[len(r.state):] for r in g] for g in groups],
          "rewards": [table2.round4(r.reward for r in g) for g in groups],
          "clean": [[int(not any(s in table2.CRASH_STATUSES for s in r.statuses)) for r in g]
                    for g in groups]}


def correct_wrong_pairs(pool: dict, per_problem: int, seed: int) -> list[tuple[str, str, str]]:
  """(problem id, strictly correct completion, wrong completion) pairs of the pool's distinct
  texts, at most `per_problem` per problem (`value.preferences.correct_wrong_pairs`)."""
  return preferences.correct_wrong_pairs(
      [preferences.ProgramGroup(*g) for g in zip(pool["problem_ids"], pool["completions"],
                                                 pool["rewards"])], per_problem, seed)


# -- scoring and training ------------------------------------------------------------------------

class Verifier:
  """DPO training and scoring of completions with the ReST-DPO trainer's encoding."""

  def __init__(self, policy: Path, problems: dict, settings: Settings):
    # pylint: disable=import-outside-toplevel
    import jax
    import jax.numpy as jnp
    from restrl_jax import models, training
    from restrl_jax.rl.trainer import DPOConfig, DPOTrainer
    from restrl_jax.tokenizer import load_tokenizer
    self.config, self.ref = models.load_hf(policy)
    optimizer = training.make_optimizer(settings.learning_rate, settings.steps,
                                        schedule="constant")
    self.trainer = DPOTrainer(self.config, load_tokenizer(policy),
                              DPOConfig(beta=settings.beta,
                                        pairs_per_step=settings.pairs_per_step),
                              optimizer, problems)
    # the train step donates the state's buffers: the trained copy must not share the reference's
    self.state = training.init_train_state(jax.tree.map(jnp.copy, self.ref), optimizer)

  def _pairs(self, triples) -> list:
    # pylint: disable=import-outside-toplevel
    from restrl_jax.rl.dpo import CLOSING_MARKER, DPOPair
    return [DPOPair(pid, self.trainer.problems[pid].starter_code, c + CLOSING_MARKER,
                    w + CLOSING_MARKER, 1.0, 0.0) for pid, c, w in triples]

  def logps(self, params: Any, pool: dict, batch: int = 64) -> np.ndarray:
    """Σ log π(completion + marker + EOS | prompt) of every program of the pool.  # [P, K]"""
    import jax  # pylint: disable=import-outside-toplevel
    flat = [(pid, t, t) for pid, texts in zip(pool["problem_ids"], pool["completions"])
            for t in texts]
    out = []
    for start in range(0, len(flat), batch):
      rows = self._pairs(flat[start:start + batch])
      packed = self.trainer.pack(rows + rows[:1] * (batch - len(rows)))   # fixed batch shape
      v = self.trainer.seq_logp_fn(params, packed["chosen_tokens"],
                                   packed["chosen_attention_mask"], packed["chosen_loss_mask"])
      out.append(np.asarray(jax.device_get(v))[:len(rows)])
    return np.concatenate(out).reshape(len(pool["problem_ids"]), -1)

  def step(self, triples) -> dict:
    self.state, metrics = self.trainer.step(self.state, self.ref, self._pairs(triples))
    return metrics


def rankings(scores: dict[str, np.ndarray], pool: dict) -> dict:
  """Within-problem AUC of each scorer (all pairs, and pairs of programs that both ran clean)."""
  out = {}
  for name, s in scores.items():
    auc, pairs = within_problem_auc(s, pool["rewards"])
    clean, clean_pairs = within_problem_auc(s, pool["rewards"], pool["clean"])
    out[name] = {"auc": auc, "pairs": pairs, "auc_clean": clean, "pairs_clean": clean_pairs}
  return out


def evaluation(verifier: Verifier, ref_logps: dict, pools: dict, beta: float) -> dict:
  out = {}
  for split, pool in pools.items():
    lp = verifier.logps(verifier.state.params, pool)
    out[split] = rankings({"likelihood": ref_logps[split], "dpo_likelihood": lp,
                           "dpo_implicit_reward": beta * (lp - ref_logps[split])}, pool)
  return out


def run_seed(settings: Settings, seed: int, policy: Path, workdir: Path) -> dict:
  """The seed's pools (cached under `workdir`), DPO training and its evaluations."""
  # pylint: disable=import-outside-toplevel
  from restrl_jax import models
  from restrl_jax.data.registry import load_problems
  from restrl_jax.execution import ExecutionPool
  from restrl_jax.sampling import Sampler, SamplingParams
  from restrl_jax.tokenizer import load_tokenizer
  config, params = models.load_hf(policy)
  sampler = Sampler(config, params, load_tokenizer(policy), max_batch=256)
  sp = SamplingParams(temperature=0.7, max_new_tokens=128)
  sets = {"test": ("id_test", settings.num_test, settings.pool_size),
          "val": ("id_validation", settings.val_problems, settings.val_samples),
          "train": ("train", settings.train_problems, settings.train_samples)}
  problems, pools = {}, {}
  with ExecutionPool() as pool:
    for name, (split, n, size) in sets.items():
      probs = load_problems("synthetic", None, split=split, limit=n)
      problems.update({p.id: p for p in probs})
      pools[name] = table2.cached(workdir / f"pool_{name}_{n}x{size}.json", lambda: executed_pool(
          sampler, pool, probs, size, seed, sp))
  triples = correct_wrong_pairs(pools.pop("train"), settings.pairs_per_problem, seed)
  verifier = Verifier(policy, problems, settings)
  ref_logps = {k: verifier.logps(verifier.ref, p) for k, p in pools.items()}
  rng = np.random.default_rng(seed)
  evals = [{"step": 0, **evaluation(verifier, ref_logps, pools, settings.beta)}]
  start = time.perf_counter()
  for step in range(1, settings.steps + 1):
    metrics = verifier.step([triples[i] for i in rng.integers(len(triples),
                                                              size=settings.pairs_per_step)])
    if step % settings.eval_every == 0 or step == settings.steps:
      evals.append({"step": step, "train_accuracy": metrics["rewards/accuracies"],
                    **evaluation(verifier, ref_logps, pools, settings.beta)})
      logging.info("seed %d step %d: %s", seed, step, json.dumps(evals[-1]))
  return {"seed": seed, "policy": str(policy), "settings": dataclasses.asdict(settings),
          "num_pairs": len(triples), "train_seconds": round(time.perf_counter() - start, 1),
          "test_rewards": pools["test"]["rewards"], "evals": evals}


def run(args: argparse.Namespace) -> None:
  settings = Settings(**{f.name: type(f.default)(getattr(args, f.name))
                         for f in dataclasses.fields(Settings)})
  table2.record_seeds(args, lambda seed, policy, workdir: run_seed(settings, seed, policy,
                                                                 workdir))


# -- report --------------------------------------------------------------------------------------

def chosen_eval(record: dict) -> dict:
  """The evaluation with the best validation AUC of the implicit reward (ties: the earliest);
  step 0 (no training) is not a candidate."""
  trained = [e for e in record["evals"] if e["step"] > 0]
  return max(trained, key=lambda e: (e["val"]["dpo_implicit_reward"]["auc"] or 0.0, -e["step"]))


def summarize(records: Sequence[dict]) -> dict:
  """Per scorer: test AUC (all pairs and clean pairs) at the chosen step, over seeds."""
  rows = {}
  for name in SCORERS:
    per_seed = [chosen_eval(r)["test"][name] for r in records]
    rows[name] = {key: {"mean": float(np.mean([s[key] for s in per_seed])),
                        "std": float(np.std([s[key] for s in per_seed], ddof=1))
                        if len(per_seed) > 1 else 0.0,
                        "per_seed": [round(float(s[key]), 4) for s in per_seed]}
                  for key in ("auc", "auc_clean")}
    rows[name]["pairs"] = [int(s["pairs"]) for s in per_seed]
  return {"seeds": [r["seed"] for r in records], "steps": [chosen_eval(r)["step"] for r in records],
          "scorers": rows}


def table(summary: dict) -> str:
  def cell(d):
    if len(d["per_seed"]) == 1:   # no spread to show
      return f"{d['mean']:.3f} (one seed)"
    return (f"{d['mean']:.3f} ± {d['std']:.3f} ("
            + ", ".join(f"{v:.3f}" for v in d["per_seed"]) + ")")
  seeds = ", ".join(f"seed {s}: step {t}" for s, t in zip(summary["seeds"], summary["steps"]))
  lines = [f"Training step chosen on id_validation: {seeds}.", "",
           "| scorer | within-problem AUC, id_test | both programs ran clean |",
           "|---|---|---|"]
  for name in SCORERS:
    row = summary["scorers"][name]
    lines.append(f"| {NAMES[name]} | {cell(row['auc'])} | {cell(row['auc_clean'])} |")
  return "\n".join(lines) + "\n"


def report(args: argparse.Namespace) -> dict:
  records = [json.loads(p.read_text()) for p in sorted(Path(args.record).glob("seed*.json"))]
  if not records:
    raise FileNotFoundError(f"no seed records under {args.record}")
  summary = summarize(records)
  docs = Path(args.docs)
  results_md = docs / "results.md"
  io_utils.atomic_write_text(results_md, io_utils.replace_marked_block(
      results_md.read_text(), BEGIN, END, table(summary), append=True))
  results_json = docs / "results.json"
  results = json.loads(results_json.read_text()) if results_json.is_file() else {}
  results["verifiers"] = summary
  io_utils.atomic_write_text(results_json, json.dumps(results, indent=1, sort_keys=True) + "\n")
  return summary


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  r = sub.add_parser("run")
  r.add_argument("--learning", default="runs/learning/main")
  r.add_argument("--out", default="runs/verifiers")
  r.add_argument("--seeds", default="0,1,2")
  for f in dataclasses.fields(Settings):
    r.add_argument(f"--{f.name}", type=type(f.default), default=f.default)
  rep = sub.add_parser("report")
  rep.add_argument("--docs", default="docs")
  for p in (r, rep):
    p.add_argument("--record", default="docs/runs/verifiers")
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO)
  (run if args.command == "run" else report)(args)


if __name__ == "__main__":
  main()
