"""Embedded default: the whole ReST-RL pipeline on CPU with the tiny model and the synthetic suite.

python -m restrl_jax.main --config=configs/demo.py [--config.quick=True]

Stages: warmstart (the shipped base policy, evaluated on the compositional test split) ->
rest_grpo (one ReST-GRPO round: 300 GRPO steps of 2 prompts x 8 completions on 600 train
problems, LR 1e-4 (docs/results.md, Stage 1), with a held-out learning curve every 75 steps,
plotted to workdir/plots/) -> evaluate
(the trained policy and the base on the same 300 in-distribution held-out problems, 4 samples
each, same sampling seed: paired gains with their standard errors) -> collect_values (MCTS value
targets by execution) -> train_value (value model) -> decode (sampling, best-of-N, ORM-MCTS and
VM-MCTS at equal sample budgets, with the ReST-GRPO policy).
"""
from restrl_jax import config_defaults


# The sections at CPU sizes (tiny model, synthetic problems); the tests and experiments that run
# the demo's stages start from these, and `get_config` sizes the demo run on top of them.

def rest():
  """`rest`: 4 samples of <= 64 tokens per problem, 64 problems, 16 steps a round."""
  c = config_defaults.rest()
  c.update(dict(num_samples=4, max_new_tokens=64, num_problems=64, max_steps_per_round=16,
                checkpoint_every=8, dpo_learning_rate=1e-4, dpo_max_completion_tokens=64))
  return c


def grpo():
  """`grpo`: 2 prompts x 4 completions of <= 64 tokens per step, constant LR 5e-5."""
  c = config_defaults.grpo()
  c.update(dict(group_size=4, prompts_per_step=2, max_prompt_tokens=256, max_new_tokens=64,
                learning_rate=5e-5, schedule="constant"))
  return c


def mcts():
  """`mcts`: small searches on 32 problems each."""
  c = config_defaults.mcts()
  c.update(dict(collect_iterations=12, collect_num_problems=32, decode_iterations=4,
                decode_num_problems=32))
  return c


def value():
  """`value`: LR 3e-4, batches of 16 examples of <= 512 tokens (for the implicit PRM: prompts
  of <= 256 tokens, programs of <= 256)."""
  c = config_defaults.value()
  c.update(dict(learning_rate=3e-4, batch_size=16, max_length=512, min_eval=32,
                implicit_max_prompt_tokens=256))
  return c


def get_config():
  c = config_defaults.base()
  c.workdir = "runs/demo"
  c.stages = ("warmstart", "rest_grpo", "evaluate", "collect_values", "train_value", "decode")
  c.warmstart = config_defaults.warmstart()
  c.warmstart.update(dict(eval_num_problems=100, eval_samples=4))
  c.rest = rest()
  c.rest.update(dict(rounds=1, num_problems=600, max_steps_per_round=300, checkpoint_every=50,
                     curve_every=75, curve_split="id_validation", curve_num_problems=100,
                     curve_num_samples=2))
  c.grpo = grpo()
  c.grpo.update(dict(group_size=8, learning_rate=1e-4, max_new_tokens=128))
  c.evaluate.update(dict(split="id_test", num_problems=300, num_samples=4, ks=(1, 4),
                         compare_base=True, method="ReST-GRPO policy"))
  c.mcts = mcts()
  c.value = value()
  c.sampling.max_new_tokens = 128   # the longest reference solution is ~105 tokens
  c.sampling.batch_size = 256
  return c
