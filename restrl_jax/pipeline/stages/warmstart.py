"""Stage `warmstart`: place the base policy, then evaluate it on the test split.

With `config.warmstart.use_shipped` (the demo default) the shipped checkpoint
(`restrl_jax/assets/demo_policy`, or `config.warmstart.policy_path`) is copied to
`<stage_dir>/policy`; otherwise one is trained there (`warmstart.train_policy`, resumable).
Either way the policy is then loaded like any Hugging Face model (`load_hf` + `AutoTokenizer`)
and sampled `eval_samples` times on `eval_num_problems` synthetic test problems with
`config.sampling`; the scores go to `<stage_dir>/eval.json` and a "base (warm start)" row.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import ml_collections

from restrl_jax import io_utils
from restrl_jax.data.synthetic import load_synthetic
from restrl_jax.pipeline.registry import StageContext, register_stage
from restrl_jax.pipeline.sections import dataclass_from, section
from restrl_jax.pipeline.stages.common import execution_pool, load_on_host, sampling_params
from restrl_jax.rollout import policy_scores
from restrl_jax.sampling import Sampler
from restrl_jax.tokenizer import check_fits_model, load_tokenizer
from restrl_jax.warmstart import WarmstartConfig, shipped_policy_path, train_policy
from restrl_jax.warmstart.train import POLICY_DIR

STAGE = "warmstart"
READS = ("seed", "warmstart", "sampling", "execution.isolation")
METHOD = "base (warm start)"
ROW_KEYS = ("strict_accuracy", "test_case_average", "pass@1")
# `warmstart` keys in no WarmstartConfig field: whether to copy a policy instead of training
# one, and the evaluation of the placed policy, both done here
STAGE_KEYS = ("use_shipped", "policy_path", "eval_num_problems", "eval_samples", "eval_seed")


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
  """(policy folder, facts): the shipped (or given) policy copied, or one trained here."""
  dest = stage_dir / POLICY_DIR
  if cfg.use_shipped:
    source = Path(cfg.policy_path) if cfg.policy_path else shipped_policy_path()
    if not (dest / "config.json").is_file():
      copy_policy(source, dest)
    return dest, {"source": str(source)}
  facts = train_policy(dataclass_from(cfg, WarmstartConfig), stage_dir)
  return Path(facts.pop("policy_path")), {"source": "trained", **facts}


def warm_start_scores(config: ml_collections.ConfigDict, policy: Path) -> dict[str, Any]:
  """Scores of `policy` on the synthetic test split, sampled with `config.sampling`."""
  cfg, s = section(config, STAGE), config.sampling
  model_config, params, mesh = load_on_host(config, policy, "float32")
  tokenizer = load_tokenizer(policy)
  check_fits_model(tokenizer, model_config.vocab_size, policy, policy)
  sampler = Sampler(model_config, params, tokenizer, mesh=mesh, max_batch=s.batch_size)
  problems = load_synthetic("test", cfg.eval_num_problems, verify=False)
  with execution_pool(config) as pool:
    scores = policy_scores(sampler, pool, problems, sampling_params(s), cfg.eval_samples,
                           ks=(1, cfg.eval_samples), rng=cfg.eval_seed)
  return {**scores, "isolation": pool.isolation}


@register_stage(STAGE, reads=READS)
def run(ctx: StageContext) -> dict[str, Any]:
  """Summary with the policy path and a "base (warm start)" row."""
  cfg = section(ctx.config, STAGE)
  policy, facts = place_policy(cfg, Path(ctx.stage_dir))
  scores = warm_start_scores(ctx.config, policy)
  io_utils.atomic_write_json(Path(ctx.stage_dir) / "eval.json", scores)
  keys = ROW_KEYS + (f"pass@{cfg.eval_samples}",)
  row = {"method": METHOD, **{k: scores[k] for k in keys if k in scores}}
  extra = {k: v for k, v in scores.items() if k not in keys}
  return {"policy_path": str(policy), **facts, **extra, "rows": [row]}
