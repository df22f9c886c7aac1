"""Which policy a stage uses: the newest one an earlier stage wrote, else the base HF folder."""
from __future__ import annotations

import hashlib
from pathlib import Path

import ml_collections

from restrl_jax.config_checks import ConfigError
from restrl_jax.tokenizer import check_fits_model, load_tokenizer

# Stages that leave a policy as an HF folder at <workdir>/<stage>/policy, newest last.
POLICY_STAGES = ("warmstart", "rest_grpo")


def newest_stage_policy(workdir: Path) -> Path | None:
  """The policy folder of the newest stage in POLICY_STAGES that wrote one under `workdir`."""
  for stage in reversed(POLICY_STAGES):
    path = workdir / stage / "policy"
    if (path / "config.json").is_file():
      return path
  return None


def resolve_policy(config: ml_collections.ConfigDict, workdir: Path) -> Path:
  """The newest policy an earlier stage wrote; else `config.model.hf_path`, the base policy."""
  newest = newest_stage_policy(workdir)
  if newest is not None:
    return newest
  if config.model.hf_path:
    path = Path(config.model.hf_path).expanduser()
    if not (path / "config.json").is_file():
      raise ConfigError(f"config.model.hf_path={str(path)!r}: no config.json there "
                        "(expected a local Hugging Face model folder)")
    return path
  raise ConfigError("no policy to use: set --config.model.hf_path=<local HF folder>, or run a "
                    f"stage that writes one first ({', '.join(POLICY_STAGES)})")


def base_policy(config: ml_collections.ConfigDict, workdir: Path) -> Path:
  """The base policy: the warm start's, else `config.model.hf_path`."""
  warm = workdir / POLICY_STAGES[0] / "policy"
  if (warm / "config.json").is_file():
    return warm
  if config.model.hf_path:
    return Path(config.model.hf_path).expanduser()
  raise ConfigError("evaluate.compare_base: no base policy (run the warmstart stage or set "
                    "--config.model.hf_path)")


def weights_digest(policy: Path) -> str:
  """sha256 over the policy folder's safetensors files (in name order): which weights a stage
  loaded, recorded in its summary."""
  digest = hashlib.sha256()
  files = sorted(Path(policy).glob("*.safetensors"))
  if not files:
    raise ConfigError(f"{policy}: no *.safetensors weights in the policy folder")
  for path in files:
    digest.update(path.name.encode("utf-8"))
    with open(path, "rb") as f:
      for block in iter(lambda: f.read(1 << 24), b""):
        digest.update(block)
  return digest.hexdigest()


def resolve_tokenizer(config: ml_collections.ConfigDict, policy: Path) -> Path:
  return Path(config.model.tokenizer_path).expanduser() if config.model.tokenizer_path else policy


def policy_tokenizer(config: ml_collections.ConfigDict, policy: Path):
  """The tokenizer to use with `policy`, checked against its vocabulary (a `DataError` names a
  tokenizer of another model)."""
  from restrl_jax import models  # pylint: disable=import-outside-toplevel
  path = resolve_tokenizer(config, policy)
  tokenizer = load_tokenizer(path)
  check_fits_model(tokenizer, models.read_hf_config(policy).vocab_size, path, policy)
  return tokenizer
