"""Writes tests/fixtures/<family>/: a tiny random HF checkpoint + logits computed by transformers.

Run `python tests/make_golden_fixtures.py` (needs torch + transformers). The fixtures let
`tests/test_models_golden.py` check our forward against the PyTorch reference without torch.
The helpers here are also used by the live parity test.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FAMILIES = ("qwen2", "llama", "qwen3")
BATCH_LENGTHS = (7, 3, 5)  # real tokens per row; rows are left-padded to max(BATCH_LENGTHS)


def hf_config(family: str):
  """Tiny transformers configs covering GQA, q/k/v bias, llama3 rope scaling, q/k norm, tying."""
  import transformers
  common = dict(vocab_size=101, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
                rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2, pad_token_id=0)
  if family == "qwen2":
    return transformers.Qwen2Config(**common, rope_theta=1000.0, tie_word_embeddings=False)
  if family == "llama":
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
    return transformers.LlamaConfig(**common, rope_theta=500.0, rope_scaling=scaling,
                                    tie_word_embeddings=False)
  if family == "qwen3":
    return transformers.Qwen3Config(**{**common, "num_key_value_heads": 1}, head_dim=16,
                                    rope_theta=1000.0, tie_word_embeddings=True)
  raise ValueError(f"unknown family {family!r}")


def hf_model(family: str, seed: int = 0):
  """A float32 eager-attention transformers model with every weight randomised (norms ~ 1)."""
  import torch
  import transformers
  torch.manual_seed(seed)
  config = hf_config(family)
  config._attn_implementation = "eager"
  model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
  with torch.no_grad():
    for name, p in model.named_parameters():
      base = 1.0 if "norm" in name else 0.0
      p.copy_(base + 0.15 * torch.randn_like(p))
  return model.float().eval()


def token_batch(vocab_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Left-padded tokens [B, T] int32 and mask [B, T] bool."""
  rng = np.random.default_rng(seed)
  width = max(BATCH_LENGTHS)
  tokens = np.zeros((len(BATCH_LENGTHS), width), np.int32)
  mask = np.zeros_like(tokens, dtype=bool)
  for b, n in enumerate(BATCH_LENGTHS):
    tokens[b, width - n:] = rng.integers(3, vocab_size, n)
    mask[b, width - n:] = True
  return tokens, mask


def hf_row_logits(model, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Logits [B, T, V] from running each row UNPADDED through transformers (zeros at pads)."""
  import torch
  out = np.zeros(tokens.shape + (model.config.vocab_size,), np.float32)
  with torch.no_grad():
    for b in range(tokens.shape[0]):
      real = tokens[b][mask[b]]
      ids = torch.as_tensor(real[None].astype(np.int64))
      out[b, mask[b]] = model(input_ids=ids).logits[0].float().numpy()
  return out


def write_fixture(family: str) -> Path:
  folder = FIXTURES / family
  model = hf_model(family)
  model.save_pretrained(folder, safe_serialization=True)
  tokens, mask = token_batch(model.config.vocab_size)
  np.savez_compressed(folder / "expected.npz", tokens=tokens, mask=mask,
                      logits=hf_row_logits(model, tokens, mask))
  for extra in folder.glob("generation_config.json"):
    extra.unlink()
  return folder


def main() -> None:
  for family in FAMILIES:
    folder = write_fixture(family)
    size = sum(f.stat().st_size for f in folder.iterdir())
    print(f"{folder}: {size / 1024:.1f} KiB", file=sys.stderr)


if __name__ == "__main__":
  main()
