"""Config sections shared by every pipeline config (configs/*.py build on these).

Defaults are the paper's hyper-parameters (RESTRL_SPEC.md); the demo config shrinks sizes.
"""
import ml_collections
from ml_collections import config_dict


def model() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      preset="tiny",                              # restrl_jax.models.PRESETS name, or
      hf_path=config_dict.placeholder(str),       # a local Hugging Face folder (wins over preset)
      dtype="float32",
      tokenizer_path=config_dict.placeholder(str),
  ))


def mesh() -> ml_collections.ConfigDict:
  # (data, fsdp, tensor); -1 takes the remaining devices
  return ml_collections.ConfigDict(dict(shape=(1, -1, 1)))


def sampling() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      temperature=0.7, top_p=1.0, top_k=0, max_new_tokens=1024, max_prompt_tokens=1024,
      batch_size=16))


def execution() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(num_workers=0, isolation="auto", timeout_s=4.0))


def distributed() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      enabled=False,
      coordinator_address=config_dict.placeholder(str),
      num_processes=config_dict.placeholder(int),
      process_id=config_dict.placeholder(int)))


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.workdir = config_dict.placeholder(str)
  c.seed = 0
  c.quick = False
  c.stages = ()
  c.model = model()
  c.mesh = mesh()
  c.sampling = sampling()
  c.execution = execution()
  c.distributed = distributed()
  c.required_fields = ()
  c.required_paths = ()
  return c
