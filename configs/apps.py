"""The paper's APPS recipe (docs/method.md): a local HF policy, APPS data, the paper's
hyper-parameters.

python -m restrl_jax.main --config=configs/apps.py \
    --config.model.hf_path=/path/to/Qwen2.5-Coder-7B-Instruct \
    --config.evaluate.data_path=/path/to/apps_test.jsonl

Stages available today: `evaluate`. The ReST-GRPO, value-collection and value-training stages
(rest_grpo, collect_values, train_value) read the `rest`, `grpo`, `mcts` and `value` sections below
once they land; the values are the paper's (docs/method.md sections 4-7).
"""
import ml_collections

from restrl_jax import config_defaults


def get_config():
  c = config_defaults.base()
  c.workdir = "runs/apps"
  c.stages = ("evaluate",)
  c.required_paths = ("model.hf_path", "evaluate.data_path")
  c.model.dtype = "bfloat16"
  c.mesh.shape = (1, -1, 1)                 # FSDP over all devices
  c.sampling.temperature = 0.7
  c.sampling.max_new_tokens = 1024
  c.evaluate.benchmark = "apps"
  c.evaluate.num_problems = None
  c.evaluate.num_samples = 1
  c.evaluate.ks = (1,)
  # Stage 1: ReST data assembly (section 4.2) and GRPO (section 4.3).
  c.rest = ml_collections.ConfigDict(dict(
      num_samples=5, sigma0=0.05, r0=0.9, alpha=0.95, beta=0.5, rounds=2))
  c.grpo = ml_collections.ConfigDict(dict(
      group_size=8, learning_rate=1e-7, schedule="linear", beta_kl=0.04, kl_estimator="k3",
      epsilon=0.2, num_iterations=1, loss_aggregation="token-mean", epochs=1,
      symbol_reward=1e-3, trailing_penalty=1e-6, grad_clip=1.0, weight_decay=0.0))
  # Stage 2: value-target collection (section 5), value model (6), VM-MCTS decoding (7).
  c.mcts = ml_collections.ConfigDict(dict(
      collect_iterations=100, collect_samples=5, collect_width=3, collect_c=0.2,
      decode_iterations=15, decode_samples=5, decode_width=5, decode_c=0.1, eps=0.1))
  c.value = ml_collections.ConfigDict(dict(
      learning_rate=1e-7, epochs=2, max_length=2048, eval_fraction=0.05, accuracy_tol=0.05))
  return c
