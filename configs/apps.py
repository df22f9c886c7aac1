"""The paper's whole recipe on a local HF code model (docs/method.md, docs/reproduce.md).

python -m restrl_jax.main --config=configs/apps.py --config.data_dir=data \
    --config.model.hf_path=/path/to/Qwen2.5-Coder-7B-Instruct [--config.quick=True]

`--config.data_dir` is a data root (python -m restrl_jax.data.prepare, docs/data.md) with
apps/train.jsonl, apps/test.jsonl, bigcodebench/train.jsonl, bigcodebench/test.jsonl,
humaneval/, humanevalplus/, mbpp/ and mbppplus/test.jsonl. Stages, each with the newest policy an
earlier one wrote (`model.hf_path` is the base, used by the first):

1. rest_grpo: ReST-GRPO rounds (§4) on the APPS training problems and the BigCodeBench
   training problems; a BigCodeBench training task whose text is that of an evaluation task
   (bigcodebench/test.jsonl) is held out (`rest.held_out`, the count in the summary);
2. collect_values: value targets from execution-scored MCTS (§5) on APPS training problems;
3. train_value: the value model, initialised from the ReST-GRPO policy (§6);
4. decode: sampling, best-of-N, ORM-MCTS and VM-MCTS at an equal budget on APPS-500 (§7,
   the Table-2 row);
5. evaluate_suite: pass@1 at T = 0.7 on HumanEval, HumanEval+, MBPP, MBPP+, APPS-500 and
   BigCodeBench, and the paper's Avg. (§8, the Table-1 row).

Not included: DS-1000, the paper's third training source. It has no loader here (its rows:
`prompt`, `reference_code`, `code_context`, `metadata`) and no harness (a program is checked by
the row's `code_context`, `test_execution(solution)` / `test_string(solution)`, which needs
numpy, pandas, scipy, scikit-learn, matplotlib, tensorflow and pytorch importable inside the
sandbox; scikit-learn and tensorflow are not installed with this package). Its prompt template
(`data.prompts.TEMPLATES["ds1000"]`) is there.
"""
from restrl_jax import config_defaults


def get_config():
  c = config_defaults.base()
  c.workdir = "runs/apps"
  c.stages = ("rest_grpo", "collect_values", "train_value", "decode", "evaluate_suite")
  c.required_fields = ("data_dir",)
  c.required_paths = ("model.hf_path",)
  c.model.dtype = "bfloat16"
  c.mesh.shape = (1, -1, 1)                 # FSDP over all devices
  c.sampling.temperature = 0.7              # the paper samples and evaluates at T = 0.7
  c.sampling.max_new_tokens = 1024
  # Stage 1 (§4): the paper's ReST and GRPO values (config_defaults.rest / grpo).
  c.rest = config_defaults.rest()
  c.rest.update(dict(benchmark="apps", split="train", extra_benchmarks=("bigcodebench",),
                     held_out=("bigcodebench",)))
  c.grpo = config_defaults.grpo()
  # Stage 2 (§5-7): value targets on APPS training problems, decoding on APPS-500.
  c.mcts = config_defaults.mcts()
  c.mcts.update(dict(collect_benchmark="apps", collect_split="train",
                     decode_benchmark="apps", decode_split="test", decode_num_problems=500))
  c.value = config_defaults.value()
  # Table 1 (§8).
  c.suite = config_defaults.suite()
  c.suite.method = "ReST-RL policy"
  return c
