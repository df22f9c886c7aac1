"""A policy as a Hugging Face folder (config.json + model.safetensors + tokenizer files), written
whole or not at all (`io_utils.atomic_dir`): the one export warm start and ReST rounds use."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from restrl_jax import io_utils, models
from restrl_jax.tokenizer import save_tokenizer


def export_policy(config: models.ModelConfig, params: Any, tokenizer: Any,
                  path: str | Path) -> Path:
  path = Path(path)
  with io_utils.atomic_dir(path) as tmp:
    models.save_hf(config, params, tmp)
    save_tokenizer(tokenizer, tmp)
  return path
