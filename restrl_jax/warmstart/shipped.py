"""The demo policy that ships with the package: an HF folder (config.json, safetensors, tokenizer)
that `python -m restrl_jax.warmstart --out DIR` re-creates."""
from __future__ import annotations

from pathlib import Path


def shipped_policy_path() -> Path:
  """The shipped demo policy's folder (`restrl_jax/assets/demo_policy`)."""
  return Path(__file__).resolve().parent.parent / "assets" / "demo_policy"
