"""Declarative Hugging Face <-> restrl_jax parameter name tables.

Each row is `(hf_key, param_path, transform)`. `hf_key` may contain `{i}` (the layer index); such
rows map the L per-layer HF tensors onto one parameter stacked on a leading [L] axis.
Transforms:
  "copy"        unchanged (embeddings, norm scales)
  "bias"        [N * Dh] -> [N, Dh] (q/k/v biases)
  "kernel"      HF Linear weight [out, in] -> transpose -> reshape to the param shape, where the
                param's first dim is the input ("in1": q/k/v/gate/up/down/lm_head kernels)
  "kernel_in2"  same, but the param's first TWO dims are the input (o_proj: [H, Dh, D])
Llama, Qwen2 and Qwen3 share one HF naming scheme; the families differ only in which optional
rows exist (q/k/v biases, q/k norms, the untied lm_head).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from restrl_jax.models.config import ModelConfig


class Row(NamedTuple):
  hf_key: str
  path: tuple[str, ...]
  transform: str


def _row(hf_key: str, path: str, transform: str = "copy") -> Row:
  return Row(hf_key, tuple(path.split("/")), transform)


_LAYER = "model.layers.{i}."

BASE_ROWS = (
    _row("model.embed_tokens.weight", "embed/embedding"),
    _row("model.norm.weight", "final_norm/scale"),
    _row(_LAYER + "input_layernorm.weight", "layers/attn_norm/scale"),
    _row(_LAYER + "self_attn.q_proj.weight", "layers/attn/q/kernel", "kernel"),
    _row(_LAYER + "self_attn.k_proj.weight", "layers/attn/k/kernel", "kernel"),
    _row(_LAYER + "self_attn.v_proj.weight", "layers/attn/v/kernel", "kernel"),
    _row(_LAYER + "self_attn.o_proj.weight", "layers/attn/o/kernel", "kernel_in2"),
    _row(_LAYER + "post_attention_layernorm.weight", "layers/mlp_norm/scale"),
    _row(_LAYER + "mlp.gate_proj.weight", "layers/mlp/gate/kernel", "kernel"),
    _row(_LAYER + "mlp.up_proj.weight", "layers/mlp/up/kernel", "kernel"),
    _row(_LAYER + "mlp.down_proj.weight", "layers/mlp/down/kernel", "kernel"),
)
BIAS_ROWS = (
    _row(_LAYER + "self_attn.q_proj.bias", "layers/attn/q/bias", "bias"),
    _row(_LAYER + "self_attn.k_proj.bias", "layers/attn/k/bias", "bias"),
    _row(_LAYER + "self_attn.v_proj.bias", "layers/attn/v/bias", "bias"),
)
QK_NORM_ROWS = (
    _row(_LAYER + "self_attn.q_norm.weight", "layers/attn/q_norm/scale"),
    _row(_LAYER + "self_attn.k_norm.weight", "layers/attn/k_norm/scale"),
)
LM_HEAD_ROWS = (_row("lm_head.weight", "lm_head/kernel", "kernel"),)

# HF keys that may be present and carry nothing we need.
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def rows_for(config: ModelConfig) -> tuple[Row, ...]:
  rows = BASE_ROWS
  if config.attention_bias:
    rows += BIAS_ROWS
  if config.qk_norm:
    rows += QK_NORM_ROWS
  if not config.tie_word_embeddings:
    rows += LM_HEAD_ROWS
  return rows


def optional_keys(config: ModelConfig) -> tuple[str, ...]:
  """HF keys tolerated but unused (a tied model's saved lm_head copy)."""
  return ("lm_head.weight",) if config.tie_word_embeddings else ()


def hf_shape(transform: str, shape: tuple[int, ...]) -> tuple[int, ...]:
  """The HF tensor shape for one (per-layer) parameter of `shape`."""
  if transform == "copy":
    return tuple(shape)
  if transform == "bias":
    return (math.prod(shape),)
  n_in = {"kernel": 1, "kernel_in2": 2}[transform]
  return (math.prod(shape[n_in:]), math.prod(shape[:n_in]))


def to_param(transform: str, hf: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  """HF tensor -> parameter layout (per layer)."""
  if transform in ("kernel", "kernel_in2"):
    hf = hf.T
  return np.ascontiguousarray(hf.reshape(shape))


def to_hf(transform: str, param: np.ndarray) -> np.ndarray:
  """Parameter (per layer) -> HF tensor."""
  flat = param.reshape(hf_shape(transform, param.shape)[::-1] if transform.startswith("kernel")
                       else hf_shape(transform, param.shape))
  return np.ascontiguousarray(flat.T if transform.startswith("kernel") else flat)
