"""Decoder models (Llama / Qwen2 / Qwen3), the value head, presets and HF safetensors I/O."""
from restrl_jax.models.config import ModelConfig, resolve_cache_layout
from restrl_jax.models.decoder import (KVCache, forward_step, hidden_states, init_cache,
                                       init_params, logits, param_logical_axes, param_shapes,
                                       params_layout)
from restrl_jax.models.layer_layout import LAYOUTS as LAYER_LAYOUTS, layout_of, to_layout
from restrl_jax.models.hf_io import hf_tensors, load_hf, read_hf_config, save_hf
from restrl_jax.models.presets import PRESETS, get_preset
from restrl_jax.models.value_head import (init_value_head, last_real_index, value_from,
                                          value_head_logical_axes, values)

__all__ = [
    "ModelConfig", "resolve_cache_layout", "KVCache", "forward_step", "hidden_states",
    "init_cache", "init_params", "logits", "param_logical_axes", "param_shapes",
    "params_layout", "LAYER_LAYOUTS", "layout_of", "to_layout", "PRESETS",
    "get_preset", "init_value_head", "last_real_index", "value_from",
    "value_head_logical_axes", "values", "hf_tensors", "load_hf", "read_hf_config", "save_hf",
]
