"""The paper's Table-1 row of any local HF model folder: pass@1 at T = 0.7 (one sample per
problem, the paper's prompt templates) on HumanEval, HumanEval+, MBPP, MBPP+, APPS-500 and
BigCodeBench, and Avg = 1/4 [(HE + HE+)/2 + (MBPP + MBPP+)/2 + APPS-500 + BCB].

python -m restrl_jax.main --config=configs/eval_suite.py --config.data_dir=data \
    --config.model.hf_path=/path/to/model --config.workdir=runs/eval-base

Files: each benchmark's test.jsonl of the data root (python -m restrl_jax.data.prepare,
docs/data.md). The row is printed at the end (summary.md) and written to
`<workdir>/evaluate_suite/table1.md`; run it once per model (base, trained) with one workdir
each to put them side by side.
"""
from restrl_jax import config_defaults


def get_config():
  c = config_defaults.base()
  c.workdir = "runs/eval_suite"
  c.stages = ("evaluate_suite",)
  c.required_fields = ("data_dir",)
  c.required_paths = ("model.hf_path",)
  c.model.dtype = "bfloat16"
  c.sampling.temperature = 0.7
  c.sampling.max_new_tokens = 1024
  c.suite = config_defaults.suite()
  return c
