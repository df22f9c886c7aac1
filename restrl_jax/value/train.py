"""Value-model training (docs/method.md §6): MSE on targets in [0, 1], AdamW, held-out MSE and accuracy.

`train_value(cfg, examples, backbone_path, out_dir)` (cfg: a `ValueTrainConfig`, which the
pipeline fills from the `value` config section) splits the examples 95/5 (>= `min_eval`
held out, at most half), trains `cfg.epochs` epochs of `cfg.batch_size` examples per step,
evaluates `cfg.evals` times evenly over the run (the released code's "every 50 %" is evals=2), keeps the
best-by-held-out-loss value model at `out_dir/best` (orbax params + `value_model.json`), saves a
resumable orbax train state at every evaluation under `out_dir/checkpoints`, and appends metrics
to `out_dir/metrics.jsonl`. Re-running resumes from the newest checkpoint (`training.loop`: the
rows past it are dropped and written again); batches are a function of (seed, step), so a
resumed run matches an uninterrupted one.

Several processes train one model on a mesh over all their devices: every process runs the same
steps on the same batches (each places its devices' rows), evaluates the same held-out set, and
saves checkpoints and the best model together through orbax; process 0 writes the metrics and
the JSON.

Held-out metrics: `eval_loss` = MSE of the raw outputs (what the trainer minimises),
`eval_accuracy` = share of items with |clip(pred, 0, 1) - y| < `accuracy_tol` (0.05, docs/method.md §6).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from restrl_jax import distributed, io_utils, models, parallel, training
from restrl_jax.tokenizer import load_tokenizer
from restrl_jax.training import loop
from restrl_jax.value import data
from restrl_jax.value.model import (ValueModel, init_value_params, place_value_params,
                                    save_value_model)

BEST_DIR, CHECKPOINT_DIR = "best", "checkpoints"


@dataclasses.dataclass(frozen=True)
class ValueTrainConfig:
  """Value-model training (docs/method.md §6); the defaults are the paper's (the values of
  `config_defaults.value()`, whose dtype None the pipeline replaces by the policy's)."""
  learning_rate: float = 1e-7
  epochs: int = 2
  batch_size: int = 1
  max_length: int = 2048              # tokens per example (longer ones keep their end)
  eval_fraction: float = 0.05         # held out, at least `min_eval`, at most half
  min_eval: int = 100
  accuracy_tol: float = 0.05          # |clip(pred, 0, 1) - y| below it counts as accurate
  evals: int = 2                      # evaluations evenly over the run
  weight_decay: float = 0.0
  grad_clip: float = 1.0
  schedule: str = "constant"
  warmup_steps: int = 0
  seed: int = 0
  dtype: str = "float32"              # of the backbone and head as trained
  remat: bool = False
  score_batch_size: int = 16
  pad_multiple: int = 32
  keep_checkpoints: int = 2
  log_every: int = 50


def mse_loss(config: models.ModelConfig, params: Any, batch: dict,
             remat: bool = False) -> tuple[jax.Array, dict]:
  """Weighted mean of (V(x) - y)^2 over the real rows of the batch."""
  v = models.value_from(config, params, batch["tokens"], batch["mask"], remat)  # [B]
  w = batch["weight"]  # [B]
  loss = jnp.sum(w * jnp.square(v - batch["target"])) / jnp.maximum(jnp.sum(w), 1.0)
  return loss, {"loss": loss}


def eval_metrics(pred: np.ndarray, target: np.ndarray, tol: float = 0.05) -> dict[str, float]:
  """Held-out MSE (raw outputs), MSE and accuracy of the clipped outputs (docs/method.md §6)."""
  pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
  clipped = np.clip(pred, 0.0, 1.0)
  return {"eval_loss": float(np.mean((pred - target) ** 2)),
          "eval_mse_clipped": float(np.mean((clipped - target) ** 2)),
          "eval_accuracy": float(np.mean(np.abs(clipped - target) < tol))}


def _check(cfg: ValueTrainConfig) -> None:
  for field in ("epochs", "batch_size", "evals", "max_length"):
    if int(getattr(cfg, field)) < 1:
      raise ValueError(f"config.value.{field} must be >= 1, got {getattr(cfg, field)}")


def value_optimizer(cfg: ValueTrainConfig, total: int) -> optax.GradientTransformation:
  """AdamW over `total` steps; bf16/fp16 value params (`cfg.dtype`) get an fp32 master copy that
  the optimizer updates (at the paper's LR 1e-7 a bf16-only update rounds back to the old
  weight). fp32 params: the plain optimizer, unchanged."""
  return training.make_optimizer(cfg.learning_rate, total, cfg.warmup_steps, cfg.schedule,
                                 cfg.weight_decay, cfg.grad_clip, param_dtype=cfg.dtype)


def eval_steps(total: int, evals: int) -> set[int]:
  return {max(1, round(total * k / evals)) for k in range(1, evals + 1)}


class _Run:
  """Everything one training run needs (built once; `train_value` drives it)."""

  def __init__(self, cfg: ValueTrainConfig, examples, backbone_path, mesh):
    self.cfg = cfg
    tokenizer = load_tokenizer(backbone_path)
    self.config, backbone = models.load_hf(backbone_path, dtype=cfg.dtype)
    train, held = data.split_examples(examples, cfg.eval_fraction, cfg.min_eval, cfg.seed)
    self.train_seqs = data.encode(tokenizer, [e.text for e in train], cfg.max_length)
    self.train_y = np.array([e.target for e in train], np.float32)
    self.held_seqs = data.encode(tokenizer, [e.text for e in held], cfg.max_length)
    self.held_y = np.array([e.target for e in held], np.float32)
    self.steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    self.total = self.steps_per_epoch * cfg.epochs
    params = place_value_params(
        self.config, init_value_params(self.config, backbone, jax.random.key(cfg.seed)), mesh)
    optimizer = value_optimizer(cfg, self.total)
    self.state = training.init_train_state(params, optimizer, mesh)
    shardings = training.state_shardings(self.state) if mesh is not None else None
    loss = functools.partial(mse_loss, self.config, remat=bool(cfg.remat))
    self.step_fn = training.make_train_step(loss, optimizer, mesh, shardings)
    self.model = ValueModel(self.config, self.state.params, tokenizer, cfg.max_length,
                            cfg.score_batch_size, cfg.pad_multiple, mesh)
    self.pad_id = self.model.pad_id
    self.batch_sharding = (None if mesh is None else
                           parallel.logical_to_sharding(("batch",), None, mesh))

  def batch(self, step: int) -> dict:
    """The step's batch (every process builds all of it), on the mesh's batch axes if any."""
    epoch, index = divmod(step, self.steps_per_epoch)
    order = data.epoch_order(len(self.train_seqs), epoch, self.cfg.seed)
    rows = order[index * self.cfg.batch_size:(index + 1) * self.cfg.batch_size]
    batch = data.make_batch([self.train_seqs[i] for i in rows], self.train_y[rows],
                            self.cfg.batch_size, self.pad_id, self.cfg.pad_multiple,
                            self.cfg.max_length)
    if self.batch_sharding is None:
      return batch
    return jax.device_put(batch, self.batch_sharding)  # each process places its devices' rows

  def evaluate(self, params: Any) -> dict[str, float]:
    self.model.params = params
    pred = self.model.predict_tokens(self.held_seqs)
    return eval_metrics(pred, self.held_y, self.cfg.accuracy_tol)


def train_value(cfg: ValueTrainConfig, examples: Sequence[data.ValueExample],
                backbone_path: str | Path, out_dir: str | Path,
                mesh: jax.sharding.Mesh | None = None,
                on_eval: Callable[[int, dict], None] | None = None) -> dict[str, Any]:
  """Trains (or resumes) a value model; returns a summary with the best model's path."""
  _check(cfg)
  out_dir = Path(out_dir)
  run = _Run(cfg, examples, backbone_path, mesh)
  evals = eval_steps(run.total, cfg.evals)
  meta = {"best_loss": None, "best_step": None, "best": {}}
  start_time = time.time()
  if distributed.is_writer():
    io_utils.recover_dir(out_dir / BEST_DIR)
  distributed.sync(f"{out_dir}: recovered")
  plan = loop.LoopPlan(run.total, out_dir / CHECKPOINT_DIR, out_dir,
                       checkpoint_at=lambda done: done in evals,
                       log_at=lambda done: done == 1 or done in evals or done % cfg.log_every == 0,
                       eval_at=lambda done: done in evals, keep_checkpoints=cfg.keep_checkpoints)
  start = loop.resume(plan, run.state)
  meta = start.meta or meta
  losses: list[float] = []          # the logged training losses of this (resumed) run

  def row(done: int, metrics: dict) -> dict:
    losses.append(float(distributed.replicated_value(metrics["loss"])))
    return {"loss": losses[-1], "epoch": (done - 1) / run.steps_per_epoch}

  def evaluate(done: int, state: training.TrainState) -> dict:
    nonlocal meta
    scores = run.evaluate(state.params)
    if on_eval is not None:
      on_eval(done, scores)
    if meta["best_loss"] is None or scores["eval_loss"] < meta["best_loss"]:
      save_value_model(out_dir / BEST_DIR, state.params, backbone_path, cfg.max_length,
                       {"step": done, **scores})
      meta = {"best_loss": scores["eval_loss"], "best_step": done, "best": scores}
    return scores

  run.state = loop.run(plan, start, run.step_fn, run.batch, row=row, evaluate=evaluate,
                       meta=lambda done: meta)
  first_loss, last_loss = (losses[0], losses[-1]) if losses else (None, None)
  return {"value_model_path": str(out_dir / BEST_DIR), "best_step": meta["best_step"],
          **{f"best_{k}": v for k, v in meta["best"].items()},
          "num_train": len(run.train_seqs), "num_eval": len(run.held_seqs), "steps": run.total,
          "resumed_from": start.step, "first_train_loss": first_loss, "last_train_loss": last_loss,
          "train_seconds": round(time.time() - start_time, 1)}
