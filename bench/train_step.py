"""One train step (forward + backward + AdamW) as closures to time: ours and a PyTorch
(transformers) step. bench/sampler.py times each alone in a child process.
"""
from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp

from restrl_jax import models
from restrl_jax.training import init_train_state, make_optimizer, make_train_step, sft_loss


def _ours_setup(config, batch: int, seq: int):
  """Params, AdamW (with an fp32 master copy of bf16 params, as the recipe's), one batch."""
  params = models.init_params(config, jax.random.key(0))
  optimizer = make_optimizer(1e-4, 1000, schedule="constant", param_dtype=config.param_dtype)
  tokens = jax.random.randint(jax.random.key(1), (batch, seq), 3, config.vocab_size)
  data = dict(tokens=tokens, attention_mask=jnp.ones_like(tokens), loss_mask=jnp.ones_like(tokens))
  return params, optimizer, data


def ours_step_runner(config, batch: int, seq: int):
  params, optimizer, data = _ours_setup(config, batch, seq)
  state = init_train_state(params, optimizer)
  step = make_train_step(functools.partial(sft_loss, config), optimizer)
  holder = [state]

  def run():
    holder[0], metrics = step(holder[0], data)
    jax.block_until_ready(metrics["loss"])

  return run


def _torch_setup(config, batch: int, seq: int):
  import torch
  import transformers
  hf = transformers.AutoConfig.for_model(**config.to_hf_config())
  hf._attn_implementation = "sdpa"
  model = transformers.AutoModelForCausalLM.from_config(hf).train()
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
  tokens = torch.randint(3, config.vocab_size, (batch, seq))

  def autocast():
    if config.dtype == "float32":
      return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=getattr(torch, config.dtype))

  def gradient():
    optimizer.zero_grad(set_to_none=True)
    with autocast():
      loss = model(input_ids=tokens, labels=tokens).loss
    loss.backward()

  def update():
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()

  return torch, model, tokens, autocast, gradient, update


def torch_step_runner(config, batch: int, seq: int):
  """The PyTorch step; fp32 parameters, with the forward under bf16 autocast when
  `config.dtype` is bfloat16 (the same mixed precision as ours)."""
  *_, gradient, update = _torch_setup(config, batch, seq)

  def run():
    gradient()
    update()

  return run
