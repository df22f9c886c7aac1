"""Warm-start SFT: train the tiny policy on the synthetic train split's reference solutions.

`train_policy(cfg, out_dir)` runs `cfg.steps` optimizer steps (AdamW, schedule from `cfg`),
appends metrics to `out_dir/metrics.jsonl`, saves orbax checkpoints to `out_dir/checkpoints`
every `cfg.checkpoint_every` steps and at the end, and resumes from the newest one when re-run
(`training.loop`; batches are a function of the step, so a resumed run matches an uninterrupted
one). Finally it
writes the policy as a Hugging Face folder (`out_dir/policy`: config.json, safetensors,
tokenizer files) that loads with `models.load_hf` + `transformers.AutoTokenizer`.

`cfg` is a `WarmstartConfig` (the pipeline fills it from the `warmstart` config section).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

import jax

from restrl_jax import models, training
from restrl_jax.checkpoint import Checkpointer
from restrl_jax.data.synthetic import load_synthetic
from restrl_jax.policy_folder import export_policy
from restrl_jax.training import loop
from restrl_jax.tokenizer import embedded_tokenizer, load_tokenizer, save_tokenizer
from restrl_jax.warmstart import data

POLICY_DIR, CHECKPOINT_DIR = "policy", "checkpoints"
SERVED_TOKENIZER_DIR = "served_tokenizer"
StepCallback = Callable[[int, dict], None]


@dataclasses.dataclass(frozen=True)
class WarmstartConfig:
  """SFT of a `preset` policy on the synthetic train split's reference solutions. The defaults
  re-create the shipped demo policy (the same values as `config_defaults.warmstart()`)."""
  tokenizer_path: str | None = None   # None: the embedded synthetic-suite tokenizer
  init_policy_path: str | None = None  # continue SFT from this HF folder (else a fresh preset)
  preset: str = "tiny"
  num_train_problems: int = 2000
  difficulty: int | str = "mixed"
  data_seed: int = 0
  max_len: int = 256                  # tokens of prompt + completion
  pad_multiple: int = 32
  steps: int = 800
  batch_size: int = 32
  learning_rate: float = 3e-3
  warmup_steps: int = 100
  schedule: str = "constant"
  weight_decay: float = 0.0
  grad_clip: float = 1.0
  seed: int = 0
  checkpoint_every: int = 200
  keep_checkpoints: int = 2
  log_every: int = 25
  tensorboard: bool = False


def policy_config(tokenizer: Any, preset: str = "tiny") -> models.ModelConfig:
  """`preset` with the tokenizer's vocabulary size and special-token ids."""
  return dataclasses.replace(
      models.get_preset(preset), vocab_size=len(tokenizer),
      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
      pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else
      tokenizer.eos_token_id)


def warmstart_tokenizer(cfg: WarmstartConfig):
  """The tokenizer folder `cfg.tokenizer_path`, or the embedded synthetic-suite tokenizer."""
  if cfg.tokenizer_path:
    return load_tokenizer(cfg.tokenizer_path)
  return embedded_tokenizer()


def served_tokenizer(config: models.ModelConfig, tokenizer: Any, folder: str | Path):
  """`tokenizer` as a consumer of the exported policy will load it: saved next to the model's
  config.json and read back with `load_tokenizer`, so the warm start trains on exactly the token
  ids the policy later sees (a guard against loaders that re-segment text)."""
  folder = Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "config.json").write_text(json.dumps(config.to_hf_config(), indent=2))
  save_tokenizer(tokenizer, folder)
  served = load_tokenizer(folder)
  if len(served) != len(tokenizer) or served.eos_token_id != tokenizer.eos_token_id:
    raise ValueError(f"{folder}: the tokenizer reloaded with AutoTokenizer has a different "
                     "vocabulary or EOS than the one saved")
  return served


def make_optimizer(cfg: WarmstartConfig):
  return training.make_optimizer(cfg.learning_rate, cfg.steps, cfg.warmup_steps, cfg.schedule,
                                 cfg.weight_decay, cfg.grad_clip)


def _check(cfg: WarmstartConfig) -> None:
  for field in ("steps", "batch_size", "checkpoint_every", "log_every", "max_len",
                "pad_multiple"):
    if int(getattr(cfg, field)) < 1:
      raise ValueError(f"config.warmstart.{field} must be >= 1, got {getattr(cfg, field)}")


def restore_params(cfg: WarmstartConfig, config: models.ModelConfig,
                   out_dir: str | Path, step: int | None = None) -> tuple[Any, int]:
  """(params, step) of a warm-start checkpoint under `out_dir` (default: the newest)."""
  like = training.init_train_state(models.init_params(config, jax.random.key(0)),
                                   make_optimizer(cfg))
  with Checkpointer(Path(out_dir) / CHECKPOINT_DIR, max_to_keep=cfg.keep_checkpoints) as ckpt:
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"{Path(out_dir) / CHECKPOINT_DIR}: no warm-start checkpoint")
    state, _ = ckpt.restore(step, like)
  return state.params, step


def train_policy(cfg: WarmstartConfig, out_dir: str | Path,
                 on_step: StepCallback | None = None) -> dict:
  """Run (or resume) the warm start; returns a summary dict with the exported policy path."""
  _check(cfg)
  out_dir = Path(out_dir)
  if cfg.init_policy_path:   # continued SFT of an existing policy (its tokenizer)
    config, params = models.load_hf(cfg.init_policy_path)
    tokenizer = load_tokenizer(cfg.init_policy_path)
  else:
    config = policy_config(warmstart_tokenizer(cfg), cfg.preset)
    tokenizer = served_tokenizer(config, warmstart_tokenizer(cfg), out_dir / SERVED_TOKENIZER_DIR)
    params = models.init_params(config, jax.random.key(cfg.seed))
  problems = load_synthetic("train", cfg.num_train_problems, cfg.data_seed, cfg.difficulty)
  examples, dropped = data.make_examples(problems, tokenizer, cfg.max_len)
  optimizer = make_optimizer(cfg)
  state = training.init_train_state(params, optimizer)
  step_fn = training.make_train_step(functools.partial(training.sft_loss, config), optimizer)
  start_time = time.time()
  plan = loop.LoopPlan(cfg.steps, out_dir / CHECKPOINT_DIR, out_dir,
                       checkpoint_at=loop.every(cfg.checkpoint_every, cfg.steps),
                       log_at=loop.every(cfg.log_every, cfg.steps),
                       keep_checkpoints=cfg.keep_checkpoints, tensorboard=cfg.tensorboard)
  start = loop.resume(plan, state)
  if start.step:
    logging.info("warm start: resuming from checkpoint step %d", start.step)

  def logged(done: int, metrics: dict) -> None:
    logging.info("warm start step %d: loss %.4f", done, metrics["loss"])
    if on_step is not None:
      on_step(done, metrics)

  state = loop.run(
      plan, start, step_fn,
      lambda step: data.batch_for_step(examples, step, cfg.batch_size, cfg.seed,
                                       config.pad_token_id, cfg.pad_multiple),
      meta=lambda done: {"num_examples": len(examples)}, on_row=logged)
  policy = export_policy(config, state.params, tokenizer, out_dir / POLICY_DIR)
  return {"policy_path": str(policy), "steps": int(cfg.steps), "resumed_from": start.step,
          "num_examples": len(examples), "dropped_examples": dropped,
          "num_params": sum(x.size for x in jax.tree.leaves(state.params)),
          "train_seconds": round(time.time() - start_time, 1)}
