"""Generic training pieces shared by SFT (warm start), GRPO/DPO and the value model."""
from restrl_jax.training.optim import make_optimizer
from restrl_jax.training.state import TrainState, init_train_state, state_shardings
from restrl_jax.training.step import make_train_step
from restrl_jax.training.token_logprobs import sft_loss, token_logprobs

__all__ = ["make_optimizer", "TrainState", "init_train_state", "state_shardings", "make_train_step", "sft_loss",
           "token_logprobs"]
