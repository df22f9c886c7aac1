"""One train step (forward + backward + AdamW) as closures to time: ours and a PyTorch
(transformers) step. bench/sampler.py and bench/host_memory.py time each alone in a child process.
`*_phase_runners` split the same step into forward, forward + backward and optimizer
(bench/train_phases.py).
"""
from __future__ import annotations

import argparse
import contextlib
import functools

import jax
import jax.numpy as jnp
import optax

from restrl_jax import models
from restrl_jax.training import init_train_state, make_optimizer, make_train_step, sft_loss


def parse_bench_args(add_arguments=None, argv=None):
  """The command line shared by the train-step scripts (train_phases.py, train_parts.py,
  host_memory.py); `add_arguments(parser)` adds a script's own."""
  parser = argparse.ArgumentParser()
  parser.add_argument("--sizes", default="tiny,100m")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--seq", type=int, default=256)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  parser.add_argument("--no_save", action="store_true", help="print only")
  parser.add_argument("--layout", default="auto", choices=("auto",) + models.LAYER_LAYOUTS,
                      help="our train state's layer layout (auto: what the pipeline uses)")
  if add_arguments is not None:
    add_arguments(parser)
  return parser.parse_args(argv)


def _ours_setup(config, batch: int, seq: int, layout: str = "auto"):
  """Params in `layout` ("auto": the pipeline's, `models.params_layout`), AdamW, one batch."""
  params = models.init_params(config, jax.random.key(0))
  layout = models.params_layout(config) if layout == "auto" else layout
  params = jax.tree.map(jnp.copy, models.to_layout(params, layout))  # no shared buffers
  optimizer = make_optimizer(1e-4, 1000, schedule="constant")
  tokens = jax.random.randint(jax.random.key(1), (batch, seq), 3, config.vocab_size)
  data = dict(tokens=tokens, attention_mask=jnp.ones_like(tokens), loss_mask=jnp.ones_like(tokens))
  return params, optimizer, data


def ours_step_runner(config, batch: int, seq: int, layout: str = "auto"):
  params, optimizer, data = _ours_setup(config, batch, seq, layout)
  state = init_train_state(params, optimizer)
  step = make_train_step(functools.partial(sft_loss, config), optimizer)
  holder = [state]

  def run():
    holder[0], metrics = step(holder[0], data)
    jax.block_until_ready(metrics["loss"])

  return run


def ours_phase_runners(config, batch: int, seq: int) -> dict:
  """{"forward": the loss, "gradient": loss and gradient, "optimizer": clipping + AdamW update
  applied to fixed gradients}, each its own jitted call (`make_train_step` fuses them into one,
  with the state donated)."""
  params, optimizer, data = _ours_setup(config, batch, seq)
  loss = jax.jit(lambda p: sft_loss(config, p, data)[0])
  grad = jax.jit(jax.value_and_grad(lambda p: sft_loss(config, p, data)[0]))
  grads = grad(params)[1]
  opt_state = optimizer.init(params)
  update = jax.jit(lambda g, s, p: optax.apply_updates(p, optimizer.update(g, s, p)[0]))
  return {"forward": lambda: jax.block_until_ready(loss(params)),
          "gradient": lambda: jax.block_until_ready(grad(params)),
          "optimizer": lambda: jax.block_until_ready(update(grads, opt_state, params))}


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


def torch_phase_runners(config, batch: int, seq: int) -> dict:
  """The PyTorch step's phases as in `ours_phase_runners`: the forward without autograd, the
  forward and backward, and clipping + AdamW on the gradients of one backward."""
  torch, model, tokens, autocast, gradient, update = _torch_setup(config, batch, seq)

  def forward():
    with torch.no_grad(), autocast():
      model(input_ids=tokens, labels=tokens).loss

  gradient()  # the optimizer phase steps on these gradients
  return {"forward": forward, "gradient": gradient, "optimizer": update}
