"""Embedded default: the whole pipeline on CPU with the tiny model and the synthetic suite.

python -m restrl_jax.main --config=configs/demo.py [--config.quick=True]
"""
from restrl_jax import config_defaults


def get_config():
  c = config_defaults.base()
  c.workdir = "runs/demo"
  c.stages = ("warmstart",)
  c.warmstart = config_defaults.warmstart()
  c.sampling.max_new_tokens = 128   # the longest reference solution is ~105 tokens
  c.sampling.batch_size = 256
  return c
