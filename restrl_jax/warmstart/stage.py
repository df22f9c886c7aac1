"""The `warmstart` pipeline stage: place the base policy, then evaluate it on the test split.

With `config.warmstart.use_shipped` (the demo default) the shipped checkpoint
(`restrl_jax/assets/demo_policy`, or `config.warmstart.policy_path`) is copied to
`<stage_dir>/policy`; otherwise one is trained there (`train_policy`, resumable). Either way the
policy is then loaded like any Hugging Face model (`load_hf` + `AutoTokenizer`) and sampled
`eval_samples` times on `eval_num_problems` synthetic test problems with `config.sampling`.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import ml_collections

from restrl_jax import config_defaults, io_utils, models
from restrl_jax.data.synthetic import load_synthetic
from restrl_jax.execution import ExecutionPool
from restrl_jax.rollout import evaluate_policy
from restrl_jax.sampling import Sampler
from restrl_jax.sampling.params import from_config as sampling_from_config
from restrl_jax.tokenizer import check_fits_model, load_tokenizer
from restrl_jax.warmstart.train import POLICY_DIR, train_policy

METHOD = "base (warm start)"
ROW_KEYS = ("strict_accuracy", "test_case_average", "pass@1")


def shipped_policy_path() -> Path:
  """The demo policy that ships with the package (an HF folder)."""
  return Path(__file__).resolve().parent.parent / "assets" / "demo_policy"


def warmstart_section(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  return config.warmstart if "warmstart" in config else config_defaults.warmstart()


def copy_policy(source: str | Path, dest: Path) -> Path:
  """Copy an HF policy folder to `dest` (whole or not at all: `io_utils.atomic_dir`)."""
  source = Path(source)
  if not (source / "config.json").is_file():
    raise FileNotFoundError(f"{source}: not a policy folder (no config.json); set "
                            "config.warmstart.policy_path or use_shipped=False to train one")
  with io_utils.atomic_dir(dest) as tmp:
    shutil.copytree(source, tmp, dirs_exist_ok=True)
  return dest


def place_policy(cfg: ml_collections.ConfigDict, stage_dir: Path) -> tuple[Path, dict]:
  dest = stage_dir / POLICY_DIR
  if cfg.use_shipped:
    source = Path(cfg.policy_path) if cfg.policy_path else shipped_policy_path()
    if not (dest / "config.json").is_file():
      copy_policy(source, dest)
    return dest, {"source": str(source)}
  facts = train_policy(cfg, stage_dir)
  return Path(facts.pop("policy_path")), {"source": "trained", **facts}


def evaluate_base(config: ml_collections.ConfigDict, policy: Path) -> dict[str, Any]:
  cfg, s = warmstart_section(config), config.sampling
  model_config, params = models.load_hf(policy)
  tokenizer = load_tokenizer(policy)
  check_fits_model(tokenizer, model_config.vocab_size, policy, policy)
  sampler = Sampler(model_config, params, tokenizer, max_batch=s.batch_size)
  problems = load_synthetic("test", cfg.eval_num_problems, verify=False)
  sp = sampling_from_config(s)
  workers = config.execution.num_workers or None
  with ExecutionPool(num_workers=workers, isolation=config.execution.isolation) as pool:
    scores = evaluate_policy(sampler, pool, problems, sp, cfg.eval_samples,
                             ks=(1, cfg.eval_samples), rng=cfg.eval_seed)
  return {**scores, "isolation": pool.isolation}


def warmstart_stage(ctx) -> dict[str, Any]:
  """Pipeline stage `warmstart`: summary with the policy path and a "base (warm start)" row."""
  cfg = warmstart_section(ctx.config)
  policy, facts = place_policy(cfg, Path(ctx.stage_dir))
  scores = evaluate_base(ctx.config, policy)
  io_utils.atomic_write_json(Path(ctx.stage_dir) / "eval.json", scores)
  keys = ROW_KEYS + (f"pass@{cfg.eval_samples}",)
  row = {"method": METHOD, **{k: scores[k] for k in keys if k in scores}}
  extra = {k: v for k, v in scores.items() if k not in keys}
  return {"policy_path": str(policy), **facts, **extra, "rows": [row]}
