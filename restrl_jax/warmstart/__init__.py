"""Warm start: SFT of the base policy on the synthetic suite, and the shipped demo policy.

`train_policy(cfg, out_dir)` trains (and resumes) one; `shipped_policy_path()` is the checkpoint
that ships with the package; `warmstart_stage(ctx)` is the pipeline stage; `python -m
restrl_jax.warmstart --out DIR` re-creates the shipped checkpoint.
"""
from restrl_jax.warmstart.data import (Example, batch_for_step, batch_indices, collate,
                                       completion_text, make_example, make_examples)
from restrl_jax.warmstart.train import (export_policy, policy_config, train_policy,
                                        warmstart_tokenizer)

__all__ = ["Example", "batch_for_step", "batch_indices", "collate", "completion_text",
           "make_example", "make_examples", "export_policy", "policy_config", "train_policy",
           "warmstart_tokenizer"]
