"""`ModelConfig`: the static description of a decoder (Llama / Qwen2 / Qwen3 families).

The config is a frozen, hashable dataclass so it can be a static `jax.jit` argument. It converts
to and from a Hugging Face `config.json` dict (both the legacy `rope_theta`/`rope_scaling` keys
and the transformers-5 `rope_parameters` key are read).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax

FAMILIES = ("llama", "qwen2", "qwen3")
CACHE_LAYOUTS = ("auto", "bhsd", "bhsd_kt", "bshd")
LAYER_LOOPS = ("auto", "scan", "unroll")
ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
}
ROPE_TYPES = ("default", "linear", "llama3")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Hyper-parameters of a decoder-only transformer; see module docstring."""
  family: str = "llama"
  vocab_size: int = 1024
  hidden_size: int = 128
  num_layers: int = 4
  num_heads: int = 4
  num_kv_heads: int = 2
  head_dim: int = 32
  intermediate_size: int = 384
  rope_theta: float = 10000.0
  rope_scaling: tuple[tuple[str, Any], ...] | None = None
  rms_norm_eps: float = 1e-6
  tie_word_embeddings: bool = False
  attention_bias: bool = False
  qk_norm: bool = False
  max_position_embeddings: int = 2048
  bos_token_id: int | None = None
  eos_token_id: int | tuple[int, ...] | None = None
  pad_token_id: int | None = None
  dtype: str = "float32"
  param_dtype: str = "float32"
  cache_layout: str = "auto"
  layer_loop: str = "auto"   # how the layers run: `resolve_layer_loop`

  def __post_init__(self):
    if self.family not in FAMILIES:
      raise ValueError(f"ModelConfig.family must be one of {FAMILIES}, got {self.family!r}")
    if self.cache_layout not in CACHE_LAYOUTS:
      raise ValueError(
          f"ModelConfig.cache_layout must be one of {CACHE_LAYOUTS}, got {self.cache_layout!r}")
    if self.layer_loop not in LAYER_LOOPS:
      raise ValueError(
          f"ModelConfig.layer_loop must be one of {LAYER_LOOPS}, got {self.layer_loop!r}")
    if self.num_heads % self.num_kv_heads:
      raise ValueError(f"ModelConfig.num_heads ({self.num_heads}) must be a multiple of "
                       f"num_kv_heads ({self.num_kv_heads})")
    if self.family == "qwen2" and not self.attention_bias:
      raise ValueError("ModelConfig.attention_bias must be True for family 'qwen2' "
                       "(Qwen2 always has q/k/v biases)")
    if self.qk_norm != (self.family == "qwen3"):
      raise ValueError(f"ModelConfig.qk_norm must be {self.family == 'qwen3'} for family "
                       f"{self.family!r} (q/k RMSNorm is a Qwen3 feature)")
    if isinstance(self.rope_scaling, dict):  # accept a dict, store a hashable tuple
      object.__setattr__(self, "rope_scaling", _freeze(self.rope_scaling))
    if isinstance(self.eos_token_id, list):
      object.__setattr__(self, "eos_token_id", tuple(self.eos_token_id))
    rope_type = self.rope_type
    if rope_type not in ROPE_TYPES:
      raise ValueError(f"ModelConfig.rope_scaling: unsupported rope_type {rope_type!r}; "
                       f"supported: {ROPE_TYPES}")

  @property
  def rope_type(self) -> str:
    return self.rope_scaling_dict.get("rope_type", self.rope_scaling_dict.get("type", "default"))

  @property
  def rope_scaling_dict(self) -> dict[str, Any]:
    return dict(self.rope_scaling or ())

  @property
  def eos_token_ids(self) -> tuple[int, ...]:
    if self.eos_token_id is None:
      return ()
    return self.eos_token_id if isinstance(self.eos_token_id, tuple) else (self.eos_token_id,)

  @property
  def architecture(self) -> str:
    return ARCHITECTURES[self.family]

  @classmethod
  def from_hf_config(cls, hf: dict[str, Any], **overrides) -> "ModelConfig":
    return from_hf_config(hf, **overrides)

  def to_hf_config(self) -> dict[str, Any]:
    return to_hf_config(self)


def _freeze(d: dict[str, Any] | None) -> tuple[tuple[str, Any], ...] | None:
  if not d:
    return None
  return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in d.items()))


def resolve_cache_layout(config: ModelConfig) -> str:
  """"bhsd_kt" on CPU (measured faster there), "bshd" on TPU/GPU, unless the config fixes one.

  Layouts of one layer's keys / values: "bshd" [B, S, KVH, Dh] both; "bhsd" [B, KVH, S, Dh]
  both; "bhsd_kt" values [B, KVH, S, Dh] and keys transposed, [B, KVH, Dh, S], so that both
  attention matmuls of a decode step contract a dim that is the rows of the cache operand (the
  contraction XLA:CPU runs fastest).
  """
  if config.cache_layout != "auto":
    return config.cache_layout
  return "bhsd_kt" if jax.default_backend() == "cpu" else "bshd"


def resolve_layer_loop(layer_loop: str = "auto", config: ModelConfig | None = None) -> str:
  """How the decoder's stacked layers run: "scan" (a rolled `jax.lax.scan`: one compiled layer
  body, fast compiles for 7B models on TPU/GPU) or "unroll" (the same scan fully unrolled: each
  layer's weights a static slice). `layer_loop` if it is not "auto", else `config.layer_loop`
  if that is not, else "unroll" on CPU and "scan" on TPU/GPU: inside a rolled scan XLA:CPU
  copies each layer's weight slice and keeps the saved activations in stacked [L, ...] buffers
  (dynamic slices/updates and their zero fills in the backward pass)."""
  if layer_loop not in LAYER_LOOPS:
    raise ValueError(f"layer_loop must be one of {LAYER_LOOPS}, got {layer_loop!r}")
  if layer_loop == "auto" and config is not None:
    layer_loop = config.layer_loop
  if layer_loop != "auto":
    return layer_loop
  return "unroll" if jax.default_backend() == "cpu" else "scan"


def _family_of(hf: dict[str, Any]) -> str:
  model_type = hf.get("model_type")
  archs = hf.get("architectures") or []
  for family, arch in ARCHITECTURES.items():
    if model_type == family or arch in archs:
      return family
  raise ValueError(f"config.json: unsupported architecture (model_type={model_type!r}, "
                   f"architectures={archs}); supported: {list(ARCHITECTURES.values())}")


def _rope_from_hf(hf: dict[str, Any]) -> tuple[float, dict[str, Any] | None]:
  params = dict(hf.get("rope_parameters") or {})
  legacy = dict(hf.get("rope_scaling") or {})
  theta = float(params.pop("rope_theta", None) or hf.get("rope_theta") or 10000.0)
  scaling = {**legacy, **params}
  scaling.pop("rope_theta", None)
  if "type" in scaling and "rope_type" not in scaling:
    scaling["rope_type"] = scaling.pop("type")
  scaling.pop("type", None)
  if scaling.get("rope_type", "default") == "default":
    return theta, None
  return theta, scaling


def _check_hf_supported(hf: dict[str, Any], family: str) -> None:
  if hf.get("hidden_act", "silu") != "silu":
    raise ValueError(f"config.json: hidden_act={hf['hidden_act']!r} unsupported (only 'silu')")
  if hf.get("mlp_bias"):
    raise ValueError("config.json: mlp_bias=True is unsupported")
  if hf.get("use_sliding_window"):
    raise ValueError("config.json: use_sliding_window=True is unsupported")
  for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
              "intermediate_size"):
    if key not in hf:
      raise ValueError(f"config.json: missing field {key!r} (family {family})")


def from_hf_config(hf: dict[str, Any], **overrides) -> ModelConfig:
  """A `ModelConfig` from a Hugging Face config dict; `overrides` replace fields (e.g. dtype)."""
  family = _family_of(hf)
  _check_hf_supported(hf, family)
  heads = int(hf["num_attention_heads"])
  theta, scaling = _rope_from_hf(hf)
  eos = hf.get("eos_token_id")
  fields = dict(
      family=family,
      vocab_size=int(hf["vocab_size"]),
      hidden_size=int(hf["hidden_size"]),
      num_layers=int(hf["num_hidden_layers"]),
      num_heads=heads,
      num_kv_heads=int(hf.get("num_key_value_heads") or heads),
      head_dim=int(hf.get("head_dim") or hf["hidden_size"] // heads),
      intermediate_size=int(hf["intermediate_size"]),
      rope_theta=theta,
      rope_scaling=_freeze(scaling),
      rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
      tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
      attention_bias=True if family == "qwen2" else bool(hf.get("attention_bias", False)),
      qk_norm=family == "qwen3",
      max_position_embeddings=int(hf.get("max_position_embeddings", 2048)),
      bos_token_id=hf.get("bos_token_id"),
      eos_token_id=tuple(eos) if isinstance(eos, list) else eos,
      pad_token_id=hf.get("pad_token_id"),
  )
  fields.update(overrides)
  return ModelConfig(**fields)


def to_hf_config(config: ModelConfig) -> dict[str, Any]:
  """A Hugging Face config dict that `transformers.AutoConfig` reads back to the same model."""
  rope = {"rope_type": "default", **config.rope_scaling_dict}
  eos = config.eos_token_id
  hf = {
      "architectures": [config.architecture],
      "model_type": config.family,
      "vocab_size": config.vocab_size,
      "hidden_size": config.hidden_size,
      "num_hidden_layers": config.num_layers,
      "num_attention_heads": config.num_heads,
      "num_key_value_heads": config.num_kv_heads,
      "head_dim": config.head_dim,
      "intermediate_size": config.intermediate_size,
      "hidden_act": "silu",
      "rope_theta": config.rope_theta,
      "rope_scaling": None if config.rope_scaling is None else dict(config.rope_scaling_dict),
      "rope_parameters": {**rope, "rope_theta": config.rope_theta},
      "rms_norm_eps": config.rms_norm_eps,
      "tie_word_embeddings": config.tie_word_embeddings,
      "max_position_embeddings": config.max_position_embeddings,
      "bos_token_id": config.bos_token_id,
      "eos_token_id": list(eos) if isinstance(eos, tuple) else eos,
      "pad_token_id": config.pad_token_id,
      "torch_dtype": config.param_dtype,
      "dtype": config.param_dtype,
  }
  if config.family == "llama":
    hf.update(attention_bias=config.attention_bias, mlp_bias=False)
  if config.family == "qwen3":
    hf.update(attention_bias=config.attention_bias)
  if config.family in ("qwen2", "qwen3"):
    hf.update(use_sliding_window=False, max_window_layers=config.num_layers)
  return hf
