"""Embedded default: the whole ReST-RL pipeline on CPU with the tiny model and the synthetic suite.

python -m restrl_jax.main --config=configs/demo.py [--config.quick=True]

Stages: warmstart (the shipped base policy, evaluated) -> rest_grpo (ReST-GRPO rounds) ->
collect_values (MCTS value targets by execution) -> train_value (value model) -> decode
(sampling, best-of-N, ORM-MCTS and VM-MCTS at equal sample budgets, with the ReST-GRPO policy).
"""
from restrl_jax import config_defaults


def get_config():
  c = config_defaults.base()
  c.workdir = "runs/demo"
  c.stages = ("warmstart", "rest_grpo", "collect_values", "train_value", "decode")
  c.warmstart = config_defaults.warmstart()
  c.rest = config_defaults.demo_rest()
  c.grpo = config_defaults.demo_grpo()
  c.mcts = config_defaults.demo_mcts()
  c.value = config_defaults.demo_value()
  c.sampling.max_new_tokens = 128   # the longest reference solution is ~105 tokens
  c.sampling.batch_size = 256
  return c
