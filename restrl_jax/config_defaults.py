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


def warmstart() -> ml_collections.ConfigDict:
  """The base policy: the shipped demo checkpoint, or SFT on the synthetic train split."""
  return ml_collections.ConfigDict(dict(
      use_shipped=True,                           # copy the shipped policy instead of training
      policy_path=config_dict.placeholder(str),   # an HF folder to use instead of the shipped one
      tokenizer_path=config_dict.placeholder(str),  # None: the embedded synthetic tokenizer
      preset="tiny",
      num_train_problems=2000, difficulty="mixed", data_seed=0, max_len=256, pad_multiple=32,
      steps=1500, batch_size=32, learning_rate=3e-3, warmup_steps=100, schedule="constant",
      weight_decay=0.0, grad_clip=1.0, seed=0,
      checkpoint_every=250, keep_checkpoints=2, log_every=25, tensorboard=False,
      eval_num_problems=200, eval_samples=5, eval_seed=0))


def evaluate() -> ml_collections.ConfigDict:
  """The `evaluate` stage: sample the newest policy on a benchmark and score it in the sandbox."""
  return ml_collections.ConfigDict(dict(
      benchmark="synthetic",                      # restrl_jax.data.registry name
      data_path=config_dict.placeholder(str),     # local file/folder (None: the default source)
      split="test", num_problems=200, num_samples=5, ks=(1, 5), seed=0, method="policy"))


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
  c.evaluate = evaluate()
  c.required_fields = ()
  c.required_paths = ()
  return c
