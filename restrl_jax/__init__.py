"""restrl_jax: ReST-RL for code LLMs, JAX/Flax-native.

Stage 1 (ReST-GRPO) trains the policy with GRPO on a variance-filtered prompt set extended with
partial-program prompts; stage 2 (VM-MCTS) trains a value model on line-level MCTS targets and uses
it to guide test-time search. See README.md and docs/.
"""

__version__ = "0.1.0"
