"""Warm start: SFT of the base policy on the synthetic suite, and the shipped demo policy.

`train_policy(WarmstartConfig(...), out_dir)` trains (and resumes) one; `shipped_policy_path()` is
the checkpoint that ships with the package; `python -m restrl_jax.warmstart --out DIR` re-creates
it. The pipeline stage is `restrl_jax.pipeline.stages.warmstart`.
"""
from restrl_jax.warmstart.data import (Example, batch_for_step, batch_indices, collate,
                                       completion_text, make_example, make_examples)
from restrl_jax.warmstart.shipped import shipped_policy_path
from restrl_jax.warmstart.train import (WarmstartConfig, export_policy, policy_config,
                                        train_policy, warmstart_tokenizer)

__all__ = ["Example", "batch_for_step", "batch_indices", "collate", "completion_text",
           "make_example", "make_examples", "WarmstartConfig", "export_policy", "policy_config",
           "shipped_policy_path", "train_policy", "warmstart_tokenizer"]
