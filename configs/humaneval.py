"""Evaluation only: sample a local Hugging Face policy on HumanEval and score it in the sandbox.

python -m restrl_jax.main --config=configs/humaneval.py --config.model.hf_path=/path/to/model
"""
from restrl_jax import config_defaults


def get_config():
  c = config_defaults.base()
  c.workdir = "runs/humaneval"
  c.stages = ("evaluate",)
  c.required_paths = ("model.hf_path",)
  c.model.dtype = "bfloat16"
  c.sampling.max_new_tokens = 512
  c.sampling.temperature = 0.7       # the paper evaluates pass@1 at T = 0.7
  c.evaluate.benchmark = "humaneval"
  c.evaluate.split = "test"
  c.evaluate.num_problems = None     # all 164
  c.evaluate.num_samples = 1
  c.evaluate.ks = (1,)
  return c
