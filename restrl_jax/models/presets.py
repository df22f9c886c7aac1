"""Named model configs: the paper's code LLMs and a tiny model for tests and the CPU demo."""
from __future__ import annotations

from restrl_jax.models.config import ModelConfig

_QWEN_BOS, _QWEN_EOS = 151643, 151645

PRESETS: dict[str, ModelConfig] = {
    "qwen2.5-coder-7b-instruct": ModelConfig(
        family="qwen2", vocab_size=152064, hidden_size=3584, num_layers=28, num_heads=28,
        num_kv_heads=4, head_dim=128, intermediate_size=18944, rope_theta=1e6,
        rms_norm_eps=1e-6, tie_word_embeddings=False, attention_bias=True,
        max_position_embeddings=32768, bos_token_id=_QWEN_BOS, eos_token_id=_QWEN_EOS,
        pad_token_id=_QWEN_BOS, dtype="bfloat16", param_dtype="bfloat16"),
    "deepseek-coder-6.7b-instruct": ModelConfig(
        family="llama", vocab_size=32256, hidden_size=4096, num_layers=32, num_heads=32,
        num_kv_heads=32, head_dim=128, intermediate_size=11008, rope_theta=100000.0,
        rope_scaling=(("factor", 4.0), ("rope_type", "linear")), rms_norm_eps=1e-6,
        max_position_embeddings=16384, bos_token_id=32013, eos_token_id=32021,
        dtype="bfloat16", param_dtype="bfloat16"),
    "llama-3-8b": ModelConfig(
        family="llama", vocab_size=128256, hidden_size=4096, num_layers=32, num_heads=32,
        num_kv_heads=8, head_dim=128, intermediate_size=14336, rope_theta=500000.0,
        rms_norm_eps=1e-5, max_position_embeddings=8192, bos_token_id=128000,
        eos_token_id=128001, dtype="bfloat16", param_dtype="bfloat16"),
    "qwen3-8b": ModelConfig(
        family="qwen3", vocab_size=151936, hidden_size=4096, num_layers=36, num_heads=32,
        num_kv_heads=8, head_dim=128, intermediate_size=12288, rope_theta=1e6,
        rms_norm_eps=1e-6, qk_norm=True, max_position_embeddings=40960,
        bos_token_id=_QWEN_BOS, eos_token_id=_QWEN_EOS, dtype="bfloat16",
        param_dtype="bfloat16"),
    # ~1.05M parameters, qwen2-style (q/k/v bias, GQA 4:2); override vocab_size with
    # dataclasses.replace to match a tokenizer.
    "tiny": ModelConfig(
        family="qwen2", vocab_size=1024, hidden_size=128, num_layers=4, num_heads=4,
        num_kv_heads=2, head_dim=32, intermediate_size=384, rope_theta=10000.0,
        rms_norm_eps=1e-6, attention_bias=True, max_position_embeddings=2048,
        bos_token_id=1, eos_token_id=2, pad_token_id=0),
}


def get_preset(name: str) -> ModelConfig:
  if name not in PRESETS:
    raise KeyError(f"unknown model preset {name!r}; known: {sorted(PRESETS)}")
  return PRESETS[name]
