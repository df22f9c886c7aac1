"""ModelConfig <-> HF config.json dicts as real checkpoints write them (legacy and v5 keys)."""
import pytest

from restrl_jax import models as M

DEEPSEEK_CODER_6_7B = {  # abridged from deepseek-ai/deepseek-coder-6.7b-instruct/config.json
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "bos_token_id": 32013,
    "eos_token_id": 32021, "hidden_act": "silu", "hidden_size": 4096,
    "intermediate_size": 11008, "max_position_embeddings": 16384, "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 32, "rms_norm_eps": 1e-06,
    "rope_scaling": {"factor": 4.0, "type": "linear"}, "rope_theta": 100000,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "vocab_size": 32256}
LLAMA_3_1 = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
    "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "vocab_size": 128256, "rope_theta": 500000.0,
    "eos_token_id": [128001, 128008, 128009], "bos_token_id": 128000,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-05}
QWEN2_5_CODER_7B = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 3584,
    "intermediate_size": 18944, "num_attention_heads": 28, "num_hidden_layers": 28,
    "num_key_value_heads": 4, "vocab_size": 152064, "rope_theta": 1000000.0,
    "rope_scaling": None, "sliding_window": 131072, "use_sliding_window": False,
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-06, "tie_word_embeddings": False,
    "bos_token_id": 151643, "eos_token_id": 151645}


def test_legacy_deepseek_config_equals_preset():
  config = M.ModelConfig.from_hf_config(DEEPSEEK_CODER_6_7B, dtype="bfloat16",
                                        param_dtype="bfloat16")
  assert config == M.get_preset("deepseek-coder-6.7b-instruct")
  assert config.rope_type == "linear" and config.rope_scaling_dict["factor"] == 4.0


def test_qwen2_5_coder_config_equals_preset():
  config = M.ModelConfig.from_hf_config(QWEN2_5_CODER_7B, dtype="bfloat16",
                                        param_dtype="bfloat16", pad_token_id=151643)
  assert config == M.get_preset("qwen2.5-coder-7b-instruct")
  assert config.attention_bias and config.head_dim == 128


def test_llama_3_1_rope_and_eos_list():
  config = M.ModelConfig.from_hf_config(LLAMA_3_1)
  assert config.rope_type == "llama3" and config.rope_theta == 500000.0
  assert config.eos_token_ids == (128001, 128008, 128009)
  hash(config)  # usable as a static jit argument
  again = M.ModelConfig.from_hf_config(config.to_hf_config())
  assert again == config


def test_v5_rope_parameters_are_read():
  hf = dict(LLAMA_3_1, rope_scaling=None, rope_theta=None,
            rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1234.0})
  config = M.ModelConfig.from_hf_config(hf)
  assert config.rope_theta == 1234.0 and config.rope_type == "linear"


@pytest.mark.parametrize("bad,field", [
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"use_sliding_window": True}, "use_sliding_window"),
    ({"model_type": "mistral", "architectures": ["MistralForCausalLM"]}, "MistralForCausalLM"),
])
def test_unsupported_configs_name_the_field(bad, field):
  with pytest.raises(ValueError, match=field):
    M.ModelConfig.from_hf_config(dict(QWEN2_5_CODER_7B, **bad))
