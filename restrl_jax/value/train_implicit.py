"""Training the implicit PRM (docs/method.md §6): a copy of the policy, trained with the
ReST-DPO trainer (`rl.trainer.DPOTrainer`, sigmoid DPO loss against the policy itself) on
(strictly correct, wrong) pairs of the executed programs of the same problem.

  summary = train_implicit_prm(cfg, groups, problems, policy_path, out_dir)

`groups` are the executed programs per problem (`preferences.group_program_records` of the
`collect_values` records). `cfg.eval_problems` problems, drawn with `cfg.seed`, are held out;
the pairs (at most `cfg.pairs_per_problem` per problem) come from the rest. Each step trains on
`cfg.pairs_per_step` pairs drawn with replacement (a function of the seed and the step, so a
resumed run repeats its steps). Every `cfg.eval_every` steps the held-out programs are scored
and the within-problem AUC of the implicit reward (P(a correct program outscores a wrong one of
the same problem)) is measured; the trained model with the best one (the earliest of equals;
the last one where no held-out problem has both kinds) is kept at `<out_dir>/best`
(`implicit_prm.save_implicit_prm`). The loop is `training.loop`: metrics.jsonl, checkpoints at
each evaluation, resume.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from restrl_jax import distributed, io_utils, models, training
from restrl_jax.data.problem import Problem
from restrl_jax.evaluation.metrics import within_problem_auc
from restrl_jax.rl.dpo import CLOSING_MARKER, DPOPair
from restrl_jax.rl.trainer import DPOConfig, DPOTrainer
from restrl_jax.training import loop
from restrl_jax.value.implicit_prm import ImplicitPRM, save_implicit_prm, state_completion
from restrl_jax.value.preferences import ProgramGroup, correct_wrong_pairs

BEST_DIR, CHECKPOINT_DIR = "best", "checkpoints"


@dataclasses.dataclass(frozen=True)
class ImplicitPRMConfig:
  """The `value.implicit_*` keys (and `value.seed`, `max_length`, `score_batch_size`)."""
  beta: float = 0.1
  learning_rate: float = 1e-4
  steps: int = 750
  pairs_per_step: int = 32
  pairs_per_problem: int = 8
  eval_every: int = 50
  eval_problems: int = 200            # held-out problems (at most half of them)
  max_prompt_tokens: int = 1024
  max_length: int = 2048              # prompt + program tokens
  score_batch_size: int = 16
  seed: int = 0
  dtype: str = "float32"

  def __post_init__(self):
    for name in ("steps", "pairs_per_step", "pairs_per_problem", "eval_every", "eval_problems",
                 "score_batch_size"):
      if int(getattr(self, name)) < 1:
        raise ValueError(f"value.implicit_{name} must be >= 1, got {getattr(self, name)}")
    if self.beta <= 0 or self.learning_rate <= 0:
      raise ValueError(f"value.implicit_beta and value.implicit_learning_rate must be > 0, got "
                       f"{self.beta}, {self.learning_rate}")
    if not 0 < self.max_prompt_tokens < self.max_length:
      raise ValueError(f"value.implicit_max_prompt_tokens must be in (0, max_length="
                       f"{self.max_length}), got {self.max_prompt_tokens}")


def split_groups(groups: Sequence[ProgramGroup], eval_problems: int, seed: int
                 ) -> tuple[list[ProgramGroup], list[ProgramGroup]]:
  """(train, held-out) groups: `eval_problems` drawn at random, at most half of them."""
  if len(groups) < 2:
    raise ValueError(f"implicit PRM: need programs of at least 2 problems, got {len(groups)}")
  held = set(np.random.default_rng(seed).permutation(len(groups))[
      :min(eval_problems, len(groups) // 2)].tolist())
  return ([g for i, g in enumerate(groups) if i not in held],
          [g for i, g in enumerate(groups) if i in held])


class _Run:
  """The trainer, the reference, the pairs and the held-out programs of one run."""

  def __init__(self, cfg: ImplicitPRMConfig, groups: Sequence[ProgramGroup],
               problems: dict[str, Problem], policy_path: Path):
    from restrl_jax.tokenizer import load_tokenizer  # pylint: disable=import-outside-toplevel
    self.cfg, self.problems = cfg, problems
    missing = sorted({g.problem_id for g in groups} - set(problems))
    if missing:
      raise ValueError(f"implicit PRM: programs of {len(missing)} problems not given, e.g. "
                       f"{missing[:3]}")
    train, self.held = split_groups(groups, cfg.eval_problems, cfg.seed)
    self.pairs = [DPOPair(pid, problems[pid].starter_code,
                          state_completion(problems[pid], c) + CLOSING_MARKER,
                          state_completion(problems[pid], w) + CLOSING_MARKER, 1.0, 0.0)
                  for pid, c, w in correct_wrong_pairs(train, cfg.pairs_per_problem, cfg.seed)]
    if not self.pairs:
      raise ValueError("implicit PRM: no (correct, wrong) program pair in the training problems: "
                       "collect on more problems or with more samples")
    self.tokenizer = load_tokenizer(policy_path)
    self.config, self.ref = models.load_hf(policy_path, dtype=cfg.dtype)
    optimizer = training.make_optimizer(cfg.learning_rate, cfg.steps, schedule="constant")
    self.trainer = DPOTrainer(
        self.config, self.tokenizer,
        DPOConfig(beta=cfg.beta, pairs_per_step=cfg.pairs_per_step,
                  max_prompt_tokens=cfg.max_prompt_tokens,
                  max_completion_tokens=cfg.max_length - cfg.max_prompt_tokens),
        optimizer, problems)
    # the train step donates the state's buffers: the trained copy must not share the reference's
    self.state = training.init_train_state(jax.tree.map(jnp.copy, self.ref), optimizer)
    self.prm = ImplicitPRM(self.config, self.ref, self.ref, self.tokenizer, cfg.beta,
                           cfg.score_batch_size, cfg.max_prompt_tokens, cfg.max_length)
    self.held_problems = [problems[g.problem_id] for g in self.held for _ in g.texts]
    self.held_states = [t for g in self.held for t in g.texts]
    self.held_ref = self.prm.sequence_logps(self.ref, self.held_problems, self.held_states)

  def batch(self, step: int) -> list[DPOPair]:
    rng = np.random.default_rng([self.cfg.seed, step])
    return [self.pairs[i] for i in rng.integers(len(self.pairs), size=self.cfg.pairs_per_step)]

  def step(self, state: training.TrainState, pairs: list[DPOPair]):
    return self.trainer.step(state, self.ref, pairs)

  def held_auc(self, params: Any) -> tuple[float | None, int]:
    """Within-problem AUC of the implicit reward on the held-out programs."""
    r = self.cfg.beta * (self.prm.sequence_logps(params, self.held_problems, self.held_states)
                         - self.held_ref)                                        # [programs]
    return within_problem_auc(_split(r, self.held), [g.rewards for g in self.held])


def train_implicit_prm(cfg: ImplicitPRMConfig, groups: Sequence[ProgramGroup],
                       problems: dict[str, Problem], policy_path: str | Path,
                       out_dir: str | Path) -> dict[str, Any]:
  """Trains (or resumes) an implicit PRM; returns a summary with the best model's path."""
  out_dir, policy_path = Path(out_dir), Path(policy_path)
  start_time = time.time()
  run = _Run(cfg, groups, problems, policy_path)
  likelihood_auc = within_problem_auc(_split(run.held_ref, run.held),
                                      [g.rewards for g in run.held])[0]
  io_utils.recover_dir(out_dir / BEST_DIR)
  every_eval = loop.every(cfg.eval_every, cfg.steps)
  plan = loop.LoopPlan(cfg.steps, out_dir / CHECKPOINT_DIR, out_dir, checkpoint_at=every_eval,
                       log_at=loop.every(max(1, cfg.eval_every // 5), cfg.steps),
                       # not at step 0: the policy itself gives every program reward 0
                       eval_at=lambda done: done > 0 and every_eval(done))
  start = loop.resume(plan, run.state)
  meta = start.meta or {"best_auc": None, "best_step": None}

  def evaluate(done: int, state: training.TrainState) -> dict:
    nonlocal meta
    auc, pairs = run.held_auc(state.params)
    better = auc is not None and (meta["best_auc"] is None or auc > meta["best_auc"])
    if better or (done == cfg.steps and meta["best_step"] is None):
      save_implicit_prm(out_dir / BEST_DIR, run.config, state.params, run.tokenizer, policy_path,
                        cfg.beta, cfg.max_prompt_tokens, cfg.max_length,
                        {"step": done, "eval_auc": auc})
      meta = {"best_auc": auc, "best_step": done}
    return {"eval_auc": auc, "eval_pairs": pairs}

  loop.run(plan, start, run.step, run.batch, evaluate=evaluate, meta=lambda done: meta,
           row=lambda done, m: {k: v for k, v in loop.host_row(done, m).items()
                                if k in ("loss", "rewards/accuracies", "rewards/margins")})
  distributed.sync(f"{out_dir}: implicit PRM trained")
  return {"value_model_path": str(out_dir / BEST_DIR), "kind": "implicit_prm",
          "best_step": meta["best_step"], "best_eval_auc": meta["best_auc"],
          "eval_auc_policy_likelihood": likelihood_auc, "num_pairs": len(run.pairs),
          "num_train_problems": len(groups) - len(run.held), "num_eval_problems": len(run.held),
          "steps": cfg.steps, "resumed_from": start.step,
          "train_seconds": round(time.time() - start_time, 1)}


def _split(values: np.ndarray, groups: Sequence[ProgramGroup]) -> list[np.ndarray]:
  out, k = [], 0
  for g in groups:
    out.append(values[k:k + len(g.texts)])
    k += len(g.texts)
  return out
