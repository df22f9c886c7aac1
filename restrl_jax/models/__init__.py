"""Decoder models (Llama / Qwen2 / Qwen3) and the value head as flax.linen modules, with the
functional API over their parameter trees, the KV cache, presets and HF safetensors I/O."""
from restrl_jax.models.config import ModelConfig, resolve_cache_layout, resolve_layer_loop
from restrl_jax.models.decoder import (Decoder, abstract_params, forward_step, hidden_states,
                                       init_boxed_params, init_params, logits,
                                       param_logical_axes, param_shapes, param_shardings)
from restrl_jax.models.decode_form import decode_params
from restrl_jax.models.hf_io import hf_tensors, load_hf, read_hf_config, save_hf
from restrl_jax.models.kv_cache import KVCache, init_cache
from restrl_jax.models.presets import PRESETS, get_preset
from restrl_jax.models.value_head import (ValueHead, init_value_head, last_real_index,
                                          value_from, value_head_logical_axes,
                                          value_logical_axes, value_param_shardings,
                                          values)

__all__ = [
    "ModelConfig", "resolve_cache_layout", "resolve_layer_loop", "Decoder", "abstract_params",
    "KVCache", "forward_step", "hidden_states", "init_cache", "init_boxed_params", "init_params",
    "logits", "param_logical_axes", "param_shapes", "param_shardings", "decode_params",
    "PRESETS", "get_preset", "ValueHead", "init_value_head", "last_real_index", "value_from",
    "value_head_logical_axes", "value_logical_axes", "value_param_shardings", "values",
    "hf_tensors", "load_hf", "read_hf_config", "save_hf",
]
