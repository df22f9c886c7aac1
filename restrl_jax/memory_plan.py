"""Memory plan per device for a model on a hardware preset: analytic bytes, checked by XLA.

    python -m restrl_jax.memory_plan --model qwen2.5-coder-7b-instruct --hardware v5e-16

Two views of the same training set-up (bf16 weights; fp32 master copy and fp32 Adam moments;
bf16 reference weights for the KL term; layer rematerialisation; sharded by `parallel` rules;
the GRPO step in the preset's micro-batches, `preset_workload`; the value model of the
`train_value` stage sharded on the same mesh):

* `analytic_plan`: bytes per device of every part, from the parameter shapes, the logical-axis
  rules and the mesh shape alone (exact for state; a stated formula for activations).
* `compiled_plan`: `jax.jit(...).lower(abstract args).compile().memory_analysis()` of the real
  sharded train step (`training.make_accum_train_step` on `sft_loss`, the same forward/backward
  as the GRPO policy loss, in the workload's micro-batches) and sample step (`sampling.token_loop`
  prefill + decode loop) on the devices at hand, with `jax.ShapeDtypeStruct` inputs (no weights
  are allocated), in the TPU form
  (`plan_config`: rolled layer scan, TPU cache layout). Depth can be reduced and extrapolated
  linearly (`extrapolate`), since every per-layer array grows with the layer count.

Precision note: with the paper's learning rate (1e-7) a bf16-only AdamW step is lost to rounding
(bf16 spacing near a weight of 0.02 is ~1e-4), so the plan keeps an fp32 master copy in the
optimizer state (`training.master_weights.fp32_master`, which the ReST rounds use for bf16
runs), as DeepSpeed's bf16 mode does.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import AbstractMesh, Mesh

from restrl_jax import io_utils, mesh_presets, models, parallel
from restrl_jax.sampling import token_loop
from restrl_jax.sampling.transforms import SamplingMode
from restrl_jax.training import TrainState, sft_loss
from restrl_jax.training.accumulate import make_accum_train_step
from restrl_jax.training.master_weights import MasterState, fp32_master  # noqa: F401 (re-export)

GIB = 1024**3


class Workload(NamedTuple):
  """Batch shapes of one GRPO step (defaults: the paper's 2 prompts x 8 samples, 1024 + 1024)
  and of one value-model step (the paper's 1 sequence of 2048 tokens)."""
  train_batch: int = 16          # rows of one GRPO update
  train_len: int = 2048
  sample_batch: int = 16
  prompt_len: int = 1024
  new_tokens: int = 1024
  grad_accum_steps: int = 1      # micro-batches per update (config.grpo.grad_accum_steps)
  value_batch: int = 1           # config.value.batch_size
  value_len: int = 2048          # config.value.max_length
  score_batch: int = 16          # config.value.score_batch_size (value-model scoring, decode)

  @property
  def micro_batch(self) -> int:  # rows of one forward/backward of the GRPO update
    return self.train_batch // self.grad_accum_steps


def preset_workload(hw: mesh_presets.Hardware, wl: Workload = Workload()) -> Workload:
  """`wl` with the micro-batches the hardware preset picks for its train step."""
  return wl._replace(grad_accum_steps=mesh_presets.grad_accum_steps(hw, wl.train_batch))


# -- the optimizer the plan assumes -------------------------------------------------------------

def plan_optimizer() -> optax.GradientTransformation:
  return fp32_master(optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-7)))


# -- analytic bytes -----------------------------------------------------------------------------

def _local(shape: Sequence[int], names: Sequence[str | None], mesh) -> int:
  """Elements of one device's shard of an array laid out by logical `names` on `mesh`."""
  spec = parallel.logical_to_spec(names, shape, mesh)
  n = 1
  for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    axes = () if axes is None else (axes,) if isinstance(axes, str) else axes
    n *= -(-dim // math.prod(mesh.shape[a] for a in axes))
  return n


def param_elements(config: models.ModelConfig, mesh=None) -> int:
  """Parameter count (per device when a mesh is given)."""
  shapes = models.param_shapes(config)
  names = models.param_logical_axes(config)
  leaves = zip(jax.tree.leaves(shapes, is_leaf=lambda x: isinstance(x, tuple)),
               jax.tree.leaves(names, is_leaf=lambda x: isinstance(x, tuple)))
  if mesh is None:
    return sum(math.prod(s) for s, _ in leaves)
  return sum(_local(s, n, mesh) for s, n in leaves)


def abstract_mesh(shape: Sequence[int]) -> AbstractMesh:
  return AbstractMesh(tuple(shape), parallel.MESH_AXES)


def _batch_local(b: int, mesh) -> int:
  return _local((b,), ("batch",), mesh)


def backbone_activation_bytes(config: models.ModelConfig, mesh, rows: int, t: int) -> int:
  """Rematerialised decoder forward/backward of `rows` x `t` tokens, without the logits.

  saved:   L x [b, T, D] bf16 (the scan carry kept per layer by `jax.checkpoint`)
  layer:   q, k, v, attn out, 3 MLP [b, T, F] tensors in bf16, scores + probs [b, H, T, T] in
           fp32 + bf16 (the recomputed layer whose backward runs)
  """
  b = _batch_local(rows, mesh)
  h = _local((config.num_heads,), ("heads",), mesh)
  kvh = _local((config.num_kv_heads,), ("kv_heads",), mesh)
  f = _local((config.intermediate_size,), ("mlp",), mesh)
  d, dh = config.hidden_size, config.head_dim
  saved = config.num_layers * b * t * d * 2
  layer = b * t * (2 * h + 2 * kvh) * dh * 2 + 3 * b * t * f * 2 + b * h * t * t * 6
  return saved + layer


def train_activation_bytes(config: models.ModelConfig, mesh, wl: Workload) -> int:
  """One micro-batch's rematerialised forward/backward (`backbone_activation_bytes`) + its
  logits: 3 x [b, T, V] fp32 (logits, log-softmax, its gradient)."""
  b, t = _batch_local(wl.micro_batch, mesh), wl.train_len
  v = _local((config.vocab_size,), ("vocab",), mesh)
  return backbone_activation_bytes(config, mesh, wl.micro_batch, t) + 3 * b * t * v * 4


def kv_cache_bytes(config: models.ModelConfig, mesh, wl: Workload) -> int:
  """K and V: [L, B, S, KVH, Dh] bf16, batch over (data, fsdp), kv heads over tensor."""
  shape = (config.num_layers, wl.sample_batch, wl.prompt_len + wl.new_tokens,
           config.num_kv_heads, config.head_dim)
  return 2 * _local(shape, ("layers", "batch", "cache_seq", "kv_heads", "head_dim"), mesh) * 2


def sample_activation_bytes(config: models.ModelConfig, mesh, wl: Workload) -> int:
  """Prefill of one layer (the largest step): q/k/v, MLP [b, P, F], scores [b, H, P, S] fp32."""
  b, p = _batch_local(wl.sample_batch, mesh), wl.prompt_len
  s = wl.prompt_len + wl.new_tokens
  h = _local((config.num_heads,), ("heads",), mesh)
  f = _local((config.intermediate_size,), ("mlp",), mesh)
  return b * p * config.hidden_size * 2 * 2 + 3 * b * p * f * 2 + b * h * p * s * 6


TRAIN_PEAK = "peak: train step"
SAMPLE_PEAK = "peak: sample step (train state resident)"
VALUE_PEAK = "peak: value model train step"
HOST_SAMPLE_PEAK = "peak: host-mesh sampling (evaluate, collect)"
HOST_DECODE_PEAK = "peak: host-mesh search + value model (decode)"
SHARDED_PEAKS = (TRAIN_PEAK, SAMPLE_PEAK, VALUE_PEAK)
HOST_PEAKS = (HOST_SAMPLE_PEAK, HOST_DECODE_PEAK)
PEAKS = SHARDED_PEAKS + HOST_PEAKS
STATE_ROWS = ("params (bf16)", "reference params (bf16, KL)", "fp32 master copy",
              "Adam mu + nu (fp32)")
TRAIN_ROWS = ("grads + fp32 update temporaries", "fp32 gradient accumulator",
              "train activations (remat)")
SAMPLE_ROWS = ("KV cache (sampling)", "weights gathered over fsdp (sampling)",
               "sample activations (prefill)")
VALUE_ROWS = ("value model: params + master + Adam", "value model: grads + update temporaries",
              "value model: activations (remat)")
HOST_ROWS = ("host mesh: policy (bf16)", "host mesh: value model (bf16)",
             "host mesh: weights gathered over fsdp", "host mesh: KV cache + prefill",
             "host mesh: value scoring forward")


def scoring_activation_bytes(config: models.ModelConfig, mesh, rows: int, t: int) -> int:
  """A forward pass without a backward (value scoring): the largest layer's working set,
  q, k, v, attn out, 3 MLP [b, T, F] bf16 and scores + probs [b, H, T, T] fp32 + bf16."""
  b = _batch_local(rows, mesh)
  h = _local((config.num_heads,), ("heads",), mesh)
  kvh = _local((config.num_kv_heads,), ("kv_heads",), mesh)
  f = _local((config.intermediate_size,), ("mlp",), mesh)
  return (b * t * (2 * h + 2 * kvh) * config.head_dim * 2 + 3 * b * t * f * 2
          + b * h * t * t * 6)


def host_mesh_rows(config: models.ModelConfig, host_shape: Sequence[int],
                   wl: Workload) -> dict[str, int]:
  """The stages where each process samples or searches its own problems (evaluate,
  evaluate_suite, collect_values, decode) hold the policy, and decode the value model beside
  it, on the mesh over one host's devices (`config.mesh.host_shape`; (1, 1, 1): one device):
  bf16 weights sharded by their logical axes, the weights gathered over its fsdp axis while
  sampling, a KV cache of one sampling batch and its prefill, the value model's scoring
  forward."""
  host = abstract_mesh(host_shape)
  n = param_elements(config, host)
  return {
      HOST_ROWS[0]: 2 * n,
      HOST_ROWS[1]: 2 * (n + config.hidden_size),
      HOST_ROWS[2]: 2 * (gathered_elements(config, host_shape) - n),
      HOST_ROWS[3]: kv_cache_bytes(config, host, wl) + sample_activation_bytes(config, host, wl),
      HOST_ROWS[4]: scoring_activation_bytes(config, host, wl.score_batch, wl.value_len),
  }


def analytic_plan(config: models.ModelConfig, mesh_shape: Sequence[int],
                  wl: Workload = Workload(), host_shape: Sequence[int] = (1, 1, 1)
                  ) -> dict[str, int]:
  """Bytes per device of each part of a GRPO set-up on a mesh of `mesh_shape`, of the
  value-model training that follows it (`train_value` stage: the policy state is gone), and of
  the stages that sample or search on each host's mesh of `host_shape`."""
  mesh = abstract_mesh(mesh_shape)
  n = param_elements(config, mesh)
  rows = {
      "params (bf16)": 2 * n,
      "reference params (bf16, KL)": 2 * n,
      "fp32 master copy": 4 * n,
      "Adam mu + nu (fp32)": 8 * n,
      # bf16 grads, their fp32 cast and the bf16 update are alive together in the update
      "grads + fp32 update temporaries": 8 * n,
      # micro-batches: the fp32 sum of their gradients (training/accumulate.py)
      "fp32 gradient accumulator": 4 * n if wl.grad_accum_steps > 1 else 0,
      "train activations (remat)": train_activation_bytes(config, mesh, wl),
      "KV cache (sampling)": kv_cache_bytes(config, mesh, wl),
      # XLA hoists the loop-invariant FSDP all-gather out of the decode loop: each device holds
      # the weights gathered over fsdp (sharded over tensor only) while sampling
      "weights gathered over fsdp (sampling)": 2 * (gathered_elements(config, mesh_shape) - n),
      "sample activations (prefill)": sample_activation_bytes(config, mesh, wl),
      # the value model is the whole backbone (its unused unembedding included) + a [D, 1] head,
      # bf16 with an fp32 master copy and Adam (value/train.py); no reference model, no logits
      VALUE_ROWS[0]: 14 * (n + config.hidden_size),
      VALUE_ROWS[1]: 8 * (n + config.hidden_size),
      VALUE_ROWS[2]: backbone_activation_bytes(config, mesh, wl.value_batch, wl.value_len),
  }
  rows.update(host_mesh_rows(config, host_shape, wl))
  state = sum(rows[k] for k in STATE_ROWS)
  rows[TRAIN_PEAK] = state + sum(rows[k] for k in TRAIN_ROWS)
  rows[SAMPLE_PEAK] = state + sum(rows[k] for k in SAMPLE_ROWS)
  rows[VALUE_PEAK] = sum(rows[k] for k in VALUE_ROWS)
  policy, value, gathered, sample, score = (rows[k] for k in HOST_ROWS)
  rows[HOST_SAMPLE_PEAK] = policy + gathered + sample
  rows[HOST_DECODE_PEAK] = policy + value + gathered + max(sample, score)   # one at a time
  return rows


def fits(rows: dict[str, int], hw: mesh_presets.Hardware) -> dict[str, bool]:
  """{peak row: whether it is within the preset's memory per device}."""
  return {key: rows[key] <= hw.hbm_bytes for key in PEAKS}


def gathered_elements(config: models.ModelConfig, mesh_shape: Sequence[int]) -> int:
  """Parameter elements per device once FSDP shards are gathered (tensor sharding kept)."""
  d, _, t = mesh_shape
  return param_elements(config, abstract_mesh((d, 1, t)))


# -- compiled memory analysis -------------------------------------------------------------------

class Compiled(NamedTuple):
  argument: int   # bytes per device
  output: int
  alias: int
  temp: int
  seconds: float  # lower + compile time

  @property
  def peak(self) -> int:
    return self.argument + self.output - self.alias + self.temp


def extrapolate(at: Compiled, next_layer: Compiled, layers: int, to_layers: int) -> Compiled:
  """Sizes at `to_layers` layers from compiles at `layers` and `layers + 1` (linear in depth)."""
  grow = lambda a, b: a + (to_layers - layers) * (b - a)
  return Compiled(*(grow(a, b) for a, b in zip(at[:4], next_layer[:4])), seconds=0.0)


def _analysis(lowered, start: float) -> Compiled:
  m = lowered.compile().memory_analysis()
  return Compiled(int(m.argument_size_in_bytes), int(m.output_size_in_bytes),
                  int(m.alias_size_in_bytes), int(m.temp_size_in_bytes),
                  time.perf_counter() - start)


def _abstract_params(config: models.ModelConfig, mesh: Mesh):
  shapes = nn.meta.unbox(models.abstract_params(config))
  return shapes, models.param_shardings(config, mesh)


def abstract_train_state(config: models.ModelConfig, mesh: Mesh,
                         optimizer: optax.GradientTransformation):
  """(TrainState of ShapeDtypeStructs, TrainState of shardings) from shapes alone."""
  params, p_shard = _abstract_params(config, mesh)
  opt_state = jax.eval_shape(optimizer.init, params)
  rep = parallel.replicated(mesh)
  opt_shard = optax.tree_map_params(optimizer, lambda _, s: s, opt_state, p_shard,
                                    transform_non_params=lambda _: rep)
  state = TrainState(jax.ShapeDtypeStruct((), jnp.int32), params, opt_state)
  return state, TrainState(rep, p_shard, opt_shard)


def compile_train_step(config: models.ModelConfig, mesh: Mesh, wl: Workload,
                       optimizer: optax.GradientTransformation | None = None) -> Compiled:
  """The sharded train step, in `wl.grad_accum_steps` micro-batches (training/accumulate.py)."""
  start = time.perf_counter()
  optimizer = optimizer or plan_optimizer()
  state, shardings = abstract_train_state(config, mesh, optimizer)
  loss = functools.partial(_sft_remat, config)
  step = make_accum_train_step(loss, optimizer, wl.grad_accum_steps, mesh, shardings)
  rows = jax.ShapeDtypeStruct((wl.train_batch, wl.train_len), jnp.int32)
  batch = {"tokens": rows, "attention_mask": rows, "loss_mask": rows}
  return _analysis(step.lower(state, batch), start)


def _sft_remat(config, params, batch):
  loss, metrics = sft_loss(config, params, batch, remat=True)
  return loss, dict(metrics, loss_denominator=metrics["tokens"])   # a token mean


def _sample(config: models.ModelConfig, new_tokens: int, params, tokens, mask, rng):
  """Prefill + full decode loop (temperature sampling); the sampler's device program."""
  b = tokens.shape[0]
  state = token_loop.prefill(
      config, params, tokens, mask, jnp.zeros((b,), bool), jnp.arange(b, dtype=jnp.int32), rng,
      jnp.float32(1.0), jnp.float32(1.0), jnp.int32(new_tokens), jnp.full((4,), -1, jnp.int32),
      num_new=new_tokens, pad_id=0)
  state = token_loop.decode_chunk(config, params, state, jnp.int32(new_tokens),
                              mode=SamplingMode(False, 0, False), pad_id=0)
  return state.tokens, state.logprobs


def compile_sample_step(config: models.ModelConfig, mesh: Mesh, wl: Workload) -> Compiled:
  start = time.perf_counter()
  params, p_shard = _abstract_params(config, mesh)
  rows = parallel.batch_sharding(mesh, 2)
  fn = functools.partial(_sample, config, wl.new_tokens)

  def run(*args):
    with parallel.sharding_context(mesh):
      return fn(*args)

  prompts = jax.ShapeDtypeStruct((wl.sample_batch, wl.prompt_len), jnp.int32)
  key = jax.eval_shape(lambda: jax.random.key(0))
  jitted = jax.jit(run, in_shardings=(p_shard, rows, rows, parallel.replicated(mesh)),
                   out_shardings=(rows, rows))
  return _analysis(jitted.lower(params, prompts, prompts, key), start)


def plan_config(config: models.ModelConfig) -> models.ModelConfig:
  """The model as `compiled_plan` compiles it: the TPU cache layout and layer loop (a rolled
  scan; the per-layer unrolled loop that CPU runs by default keeps far more live at depth)."""
  return dataclasses.replace(config, cache_layout="bshd", layer_loop="scan")


def compiled_plan(config: models.ModelConfig, mesh: Mesh, wl: Workload) -> dict[str, Compiled]:
  """Train and sample step memory per device of `plan_config(config)`, compiled for `mesh`."""
  config = plan_config(config)
  return {"train": compile_train_step(config, mesh, wl),
          "sample": compile_sample_step(config, mesh, wl)}


# -- simulated mesh for a hardware preset ---------------------------------------------------------

def simulated_setup(hw: mesh_presets.Hardware, wl: Workload, devices: Sequence[jax.Device]
                    ) -> tuple[tuple[int, int, int], Workload]:
  """The preset's mesh if enough devices exist, else one with fewer FSDP shards and the global
  batches cut by the same factor (the per-device batch, and micro-batch, stay those of the real
  slice)."""
  d, f, t = hw.mesh_shape
  if d * f * t <= len(devices):
    return hw.mesh_shape, wl
  fit = len(devices) // (d * t)
  if fit < 1 or f % fit:
    raise ValueError(f"cannot simulate {hw.name} mesh {hw.mesh_shape} on {len(devices)} devices")
  cut = f // fit
  if wl.train_batch % (cut * wl.grad_accum_steps):
    raise ValueError(f"cannot simulate {hw.name}: train batch {wl.train_batch} / {cut} does not "
                     f"split into {wl.grad_accum_steps} micro-batches")
  return (d, fit, t), wl._replace(train_batch=wl.train_batch // cut,
                                  sample_batch=wl.sample_batch // cut)


def cpu_upcast_bytes(config: models.ModelConfig, mesh_shape: Sequence[int]) -> int:
  """XLA:CPU has no bf16 matmul: it keeps fp32 copies of the embedding and unembedding shards
  and of the fsdp-gathered unembedding, hoisted out of the decode loop (not on TPU/GPU)."""
  d, _, t = mesh_shape
  vd = ((config.vocab_size, config.hidden_size), ("vocab", "embed"))
  local = _local(*vd, abstract_mesh(mesh_shape))
  gathered = _local(*vd, abstract_mesh((d, 1, t)))
  return 4 * (local * (1 if config.tie_word_embeddings else 2) + gathered)


def expected_compiled(config: models.ModelConfig, mesh_shape: Sequence[int], wl: Workload,
                      backend: str | None = None) -> dict[str, tuple[int, int]]:
  """Analytic (argument, temp) bytes per device to hold against `compiled_plan` (the compiled
  steps have no reference model; their arguments include the token batch)."""
  rows = analytic_plan(config, mesh_shape, wl)
  mesh = abstract_mesh(mesh_shape)
  state = sum(rows[k] for k in ("params (bf16)", "fp32 master copy", "Adam mu + nu (fp32)"))
  train_batch = 3 * _batch_local(wl.train_batch, mesh) * wl.train_len * 4
  prompts = 2 * _batch_local(wl.sample_batch, mesh) * wl.prompt_len * 4
  train_temp = sum(rows[k] for k in TRAIN_ROWS)
  sample_temp = sum(rows[k] for k in ("KV cache (sampling)", "weights gathered over fsdp (sampling)",
                                      "sample activations (prefill)"))
  if (backend or jax.default_backend()) == "cpu":
    sample_temp += cpu_upcast_bytes(config, mesh_shape)
  return {"train": (state + train_batch, train_temp),
          "sample": (rows["params (bf16)"] + prompts, sample_temp)}


def _gib(n: float) -> str:
  return f"{n / GIB:8.2f}"


def format_plan(name: str, hw: mesh_presets.Hardware, rows: dict[str, int],
                wl: Workload = Workload()) -> str:
  lines = [f"{name} on {hw.name}: mesh (data, fsdp, tensor) = {hw.mesh_shape}, host mesh "
           f"{hw.host_mesh_shape}, {hw.hbm_gib:g} GiB per device; train step {wl.train_batch} x {wl.train_len} in "
           f"{wl.grad_accum_steps} micro-batch(es) of {wl.micro_batch}, sampling "
           f"{wl.sample_batch} x ({wl.prompt_len} + {wl.new_tokens}), value model "
           f"{wl.value_batch} x {wl.value_len}; GiB per device:"]
  lines += [f"  {k:<50s}{_gib(v)}" for k, v in rows.items()]
  for key, ok in fits(rows, hw).items():
    share = f"{100 * rows[key] / hw.hbm_bytes:.0f}%"
    lines.append(f"  {'fits: ' + key.split(': ')[1]:<50s}{'yes' if ok else 'NO':>8s}  ({share} "
                 "of HBM)")
  return "\n".join(lines)


# The paper's four models and three hardware presets of docs/memory_plan.md's tables.
PAPER_MODELS = {"qwen2.5-coder-7b-instruct": "Qwen2.5-Coder-7B",
                "deepseek-coder-6.7b-instruct": "DeepSeek-Coder-6.7B", "llama-3-8b": "Llama-3-8B",
                "qwen3-8b": "Qwen3-8B"}
PAPER_HARDWARE = ("v5e-16", "v5p-8", "gpu-8")


def markdown_plan(hw: mesh_presets.Hardware, wl: Workload = Workload()) -> str:
  """The plan of the paper's four models on `hw` at its preset's settings, as docs/memory_plan.md
  shows it: a heading and a table of GiB per device, peaks in bold with their share of HBM."""
  wl = preset_workload(hw, wl)
  passes = (f"in one pass of {wl.train_batch} rows" if wl.grad_accum_steps == 1 else
            f"in {wl.grad_accum_steps} micro-batches of {wl.micro_batch} rows")
  plans = [analytic_plan(models.get_preset(m), hw.mesh_shape, wl, hw.host_mesh_shape)
           for m in PAPER_MODELS]
  lines = [f"### {hw.name}: mesh {hw.mesh_shape}, host mesh {hw.host_mesh_shape}, "
           f"{hw.hbm_gib:g} GiB per device, GRPO update {passes}", "",
           "| part (GiB per device) | " + " | ".join(PAPER_MODELS.values()) + " |",
           "|---|" + "---:|" * len(PAPER_MODELS)]
  for key in plans[0]:
    if key in PEAKS:
      cells = [f"**{r[key] / GIB:.2f}** ({100 * r[key] / hw.hbm_bytes:.0f}%)" for r in plans]
      lines.append(f"| **{key}** | " + " | ".join(cells) + " |")
    else:
      lines.append(f"| {key} | " + " | ".join(f"{r[key] / GIB:.2f}" for r in plans) + " |")
  return "\n".join(lines)


SUMMARY_MODEL = "qwen2.5-coder-7b-instruct"
SUMMARY_PEAKS = {TRAIN_PEAK: "`rest_grpo` update",
                 SAMPLE_PEAK: "`rest_grpo` sampling, train state resident",
                 VALUE_PEAK: "`train_value` step",
                 HOST_SAMPLE_PEAK: "`evaluate`, `collect_values` (host mesh)",
                 HOST_DECODE_PEAK: "`decode` with the value model (host mesh)"}
HARDWARE_NAMES = {"gpu-8": "8 x H100 (`gpu-8`)"}


def summary_table(wl: Workload = Workload()) -> str:
  """docs/reproduce.md's table: per paper preset its meshes, memory and GRPO passes, and each
  peak in GiB per device for `SUMMARY_MODEL` with the largest of the four paper models' in
  brackets."""
  hws = [mesh_presets.get(name) for name in PAPER_HARDWARE]
  wls = [preset_workload(hw, wl) for hw in hws]
  plans = [[analytic_plan(models.get_preset(m), hw.mesh_shape, w, hw.host_mesh_shape)
            for m in PAPER_MODELS] for hw, w in zip(hws, wls)]
  main = list(PAPER_MODELS).index(SUMMARY_MODEL)
  passes = lambda w: ("one pass" if w.grad_accum_steps == 1 else
                      f"{w.grad_accum_steps} micro-batches of {w.micro_batch}")
  rows = [("mesh (data, fsdp, tensor)", [str(hw.mesh_shape) for hw in hws]),
          ("host mesh (`mesh.host_shape`: evaluate, collect_values, decode)",
           [str(hw.host_mesh_shape) for hw in hws]),
          ("memory per device", [f"{hw.hbm_gib:g} GiB" for hw in hws]),
          (f"GRPO update of {wl.train_batch} x {wl.train_len}", [passes(w) for w in wls])]
  for peak, label in SUMMARY_PEAKS.items():
    rows.append((label, [f"{p[main][peak] / GIB:.1f} ({max(r[peak] for r in p) / GIB:.1f})"
                         for p in plans]))
  lines = ["| | " + " | ".join(HARDWARE_NAMES.get(n, n) for n in PAPER_HARDWARE) + " |",
           "|---|" + "---|" * len(hws)]
  lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
  return "\n".join(lines)


def update_docs(path: str) -> None:
  """Rewrite each `<!-- memory-plan:NAME:begin -->` ... `end -->` block of the markdown file at
  `path`: NAME a preset of `PAPER_HARDWARE` gets `markdown_plan` of it, `summary` gets
  `summary_table`; a file with none of them is an error."""
  text = Path(path).read_text()
  blocks = {name: (lambda n=name: markdown_plan(mesh_presets.get(n))) for name in PAPER_HARDWARE}
  blocks["summary"] = summary_table
  found = [name for name in blocks if f"<!-- memory-plan:{name}:begin -->" in text
           and f"<!-- memory-plan:{name}:end -->" in text]
  if not found:
    raise ValueError(f"{path} has no <!-- memory-plan:NAME:begin --> ... end --> block (NAME: "
                     f"{', '.join(blocks)})")
  for name in found:
    text = io_utils.replace_marked_block(text, f"<!-- memory-plan:{name}:begin -->",
                                         f"<!-- memory-plan:{name}:end -->", blocks[name]() + "\n")
  Path(path).write_text(text)


def format_compiled(config: models.ModelConfig, mesh_shape, wl: Workload,
                    got: dict[str, Compiled]) -> str:
  want = expected_compiled(config, mesh_shape, wl)
  lines = [f"compiled on {math.prod(mesh_shape)} {jax.default_backend()} devices, mesh "
           f"{tuple(mesh_shape)}, {config.num_layers} layers, train batch {wl.train_batch}, "
           f"sample batch {wl.sample_batch}; GiB per device (analytic in brackets):"]
  for name, c in got.items():
    arg, temp = want[name]
    lines.append(f"  {name:<7s} arguments {_gib(c.argument)} [{_gib(arg)}]  temp "
                 f"{_gib(c.temp)} [{_gib(temp)}]  compile {c.seconds:.1f} s")
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--model", default="qwen2.5-coder-7b-instruct", choices=sorted(models.PRESETS))
  ap.add_argument("--hardware", default="v5e-16", choices=sorted(mesh_presets.PRESETS))
  for field, default in Workload()._asdict().items():
    if field == "grad_accum_steps":
      default = None   # the preset's (mesh_presets.grad_accum_steps)
    ap.add_argument("--" + field.replace("_", "-"), type=int, default=default)
  ap.add_argument("--compile", action="store_true",
                  help="also compile the sharded steps on the local devices (simulate 8 CPU "
                       "devices with XLA_FLAGS=--xla_force_host_platform_device_count=8)")
  ap.add_argument("--layers", type=int, default=None,
                  help="with --compile: compile this many layers (default: the model's)")
  ap.add_argument("--update-docs", metavar="MARKDOWN",
                  help="rewrite the memory-plan tables in this file (docs/memory_plan.md: "
                       "per preset; docs/reproduce.md: the summary) and exit")
  args = ap.parse_args(argv)
  if args.update_docs:
    update_docs(args.update_docs)
    return
  config, hw = models.get_preset(args.model), mesh_presets.get(args.hardware)
  wl = Workload(*(getattr(args, f) for f in Workload._fields))
  if args.grad_accum_steps is None:
    wl = preset_workload(hw, wl)
  print(format_plan(args.model, hw, analytic_plan(config, hw.mesh_shape, wl, hw.host_mesh_shape),
                    wl))
  if args.compile:
    if args.layers:
      config = dataclasses.replace(config, num_layers=args.layers)
    devices = jax.devices()
    shape, sim_wl = simulated_setup(hw, wl, devices)
    mesh = parallel.make_mesh(shape, devices[:math.prod(shape)])
    print(format_compiled(config, shape, sim_wl, compiled_plan(config, mesh, sim_wl)))


if __name__ == "__main__":
  main()
