"""The value model (docs/method.md §6): data from MCTS records, batched scoring, MSE training."""
from restrl_jax.models.value_head import value_logical_axes
from restrl_jax.value.data import (ValueExample, dedupe_examples, examples_from_records, make_batch,
                                   read_examples, split_examples)
from restrl_jax.value.model import (ValueModel, init_value_params, load_value_model,
                                    save_value_model)
from restrl_jax.value.train import ValueTrainConfig, eval_metrics, mse_loss, train_value

__all__ = [
    "ValueExample", "dedupe_examples", "examples_from_records", "make_batch", "read_examples", "split_examples",
    "ValueModel", "init_value_params", "load_value_model", "save_value_model",
    "value_logical_axes", "ValueTrainConfig", "eval_metrics", "mse_loss", "train_value",
]
