"""Wall-time estimates of the recipe's stages, from FLOP and byte counts (nothing measured).

    python -m restrl_jax.time_plan --model qwen2.5-coder-7b-instruct --hardware v5p-8

Every device step is timed at its roofline, max(FLOPs / peak bf16 FLOP/s, bytes / HBM
bandwidth) with the vendors' per-device figures (`mesh_presets.Hardware`), and multiplied by the
number of steps the recipe's settings take at their token limits (`memory_plan.Workload`: 16-row
sampling calls of 1024 prompt + 1024 new tokens, 16 x 2048 GRPO updates, 1 x 2048 value steps).

* Decoding a token is bandwidth-bound: each device reads its weights (gathered over fsdp,
  sharded over tensor, as XLA hoists the all-gather out of the decode loop) and its rows' KV
  cache at the mean context; the prefill is FLOP-bound.
* Training is FLOP-bound: 2 FLOPs per matmul weight and token forward, 4 backward, 2 more for
  the layer recomputation (remat), the attention's 4 L H Dh T per token likewise, plus the
  reference model's forward (the KL term); the optimizer update reads and writes ~32 bytes per
  local parameter (bf16 weights, fp32 master copy and moments, the gradient).
* evaluate, collect_values and decode sample, search and score on the mesh over one host's
  own devices (`Hardware.host_mesh_shape`, `config.mesh.host_shape`), so they are timed on that
  mesh, and not at all (NaN) where the memory plan says they do not fit it; collect_values and
  decode split their problems over the hosts (their time divides by the number of hosts),
  evaluate samples every problem on every host.

Left out, so a real run takes longer: kernels below peak (XLA reaches a fraction of it), FSDP
and tensor-parallel communication (overlapped with compute where XLA can), host work between
device calls, and the sandbox (it runs on the hosts' CPUs while the next chunk decodes). A run
takes less where completions end before the token limit (the decode loop stops when its longest
row ends).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Sequence

from restrl_jax import io_utils, mesh_presets, models
from restrl_jax import memory_plan as mp

UPDATE_BYTES_PER_PARAM = 32   # read + write: bf16 weight, fp32 master, fp32 mu and nu; gradient
ACCUM_BYTES_PER_PARAM = 8     # read + write of the fp32 accumulator, per micro-batch


@dataclasses.dataclass(frozen=True)
class Counts:
  """How much work a run does: the recipe's search settings (config_defaults) and the user's
  problem counts (defaults: per 1000 training problems; the six benchmarks' sizes)."""
  train_problems: int = 1000       # rest.num_problems: sampled N times per round
  rounds: int = 2                  # rest.rounds
  samples_per_problem: int = 5     # rest.num_samples
  grpo_steps_per_round: int = 500  # (problems kept by the sigma0 filter + partial states) / 2
  collect_problems: int = 1000     # mcts.collect_num_problems
  collect_iterations: int = 100    # mcts.collect_iterations
  collect_samples: int = 5         # mcts.collect_samples
  batch_trees: int = 8             # mcts.batch_trees
  value_records: int = 100_000     # records collect_values writes
  value_epochs: int = 2            # value.epochs
  decode_problems: int = 500       # mcts.decode_num_problems (APPS-500)
  decode_iterations: int = 15      # mcts.decode_iterations
  decode_samples: int = 5          # mcts.decode_samples (budget: iterations x samples)
  decode_width: int = 5            # mcts.decode_width (nodes the value model scores)
  decode_methods: int = 4          # sampling, best-of-N, ORM-MCTS, VM-MCTS
  eval_problems: int = 2766        # HE 164 + HE+ 164 + MBPP 399 + MBPP+ 399 + APPS 500 + BCB 1140
  eval_samples: int = 1            # evaluate.num_samples


def seconds(hw: mesh_presets.Hardware, flops: float, nbytes: float) -> float:
  """Roofline time of one device step."""
  return max(flops / (hw.peak_bf16_tflops * 1e12), nbytes / (hw.hbm_gbps * 1e9))


def matmul_params(config: models.ModelConfig, logits: bool = True) -> int:
  """Weights used in matmuls (the input embedding is a gather; no unembedding without logits)."""
  embedding = config.vocab_size * config.hidden_size
  n = mp.param_elements(config) - (0 if config.tie_word_embeddings else embedding)
  return n if logits else n - embedding


def attention_flops(config: models.ModelConfig, queries: float, context: float) -> float:
  """q k^T and probabilities x v, all heads and layers."""
  return 4.0 * config.num_layers * config.num_heads * config.head_dim * queries * context


def _rows_per_device(mesh_shape: Sequence[int], rows: int) -> int:
  """Rows a device computes: split over the batch shards when they divide, else replicated."""
  shards = mesh_shape[0] * mesh_shape[1]
  return rows // shards if rows % shards == 0 else rows


def _busy_devices(mesh_shape: Sequence[int], rows: int) -> int:
  """Devices doing distinct work on `rows` rows: all when the rows split over the batch shards,
  else the tensor axis alone (every batch shard repeats the same rows)."""
  return math.prod(mesh_shape) if _rows_per_device(mesh_shape, rows) < rows or \
      mesh_shape[0] * mesh_shape[1] == 1 else mesh_shape[2]


def decode_seconds(config, hw, mesh_shape, rows: int, prompt: int, new: int) -> float:
  """One sampling call: prefill of `prompt` tokens, then `new` steps of one token per row."""
  b, tensor = _rows_per_device(mesh_shape, rows), mesh_shape[2]
  weights = matmul_params(config) / tensor
  prefill = seconds(hw, 2 * weights * b * prompt + attention_flops(config, b * prompt, prompt)
                    / tensor, 2 * weights)
  context = prompt + new / 2
  kv_heads = max(config.num_kv_heads / tensor, 1.0)
  kv_bytes = 2 * config.num_layers * b * context * kv_heads * config.head_dim * 2
  step = seconds(hw, 2 * weights * b + attention_flops(config, b, context) / tensor,
                 2 * weights + kv_bytes)
  return prefill + new * step


def train_seconds(config, hw, mesh_shape, rows: int, length: int, accum: int = 1,
                  reference: bool = True, logits: bool = True) -> float:
  """One update of `rows` x `length` tokens (remat), its reference forward, the optimizer."""
  tokens = rows * length
  nm, attention = matmul_params(config, logits), attention_flops(config, tokens, length)
  flops = 8 * nm * tokens + 4 * attention
  if reference:
    flops += 2 * nm * tokens + attention
  devices = _busy_devices(mesh_shape, rows // accum)
  local = mp.param_elements(config, mp.abstract_mesh(mesh_shape))
  update = local * (UPDATE_BYTES_PER_PARAM + (ACCUM_BYTES_PER_PARAM * accum if accum > 1 else 0))
  return seconds(hw, flops / devices, 0) + seconds(hw, 0, update)


def score_seconds(config, hw, texts: float, length: int) -> float:
  """Value-model forward passes over `texts` texts of `length` tokens on one device (a host
  mesh divides them over its devices)."""
  tokens = texts * length
  return seconds(hw, 2 * matmul_params(config, False) * tokens
                 + attention_flops(config, tokens, length), 0)


def stage_seconds(config: models.ModelConfig, hw: mesh_presets.Hardware,
                  wl: mp.Workload = mp.Workload(), c: Counts = Counts()) -> dict[str, float]:
  """Estimated seconds of each stage of the recipe (module docstring)."""
  mesh, host = hw.mesh_shape, hw.host_mesh_shape
  call = lambda m: decode_seconds(config, hw, m, wl.sample_batch, wl.prompt_len, wl.new_tokens)
  calls = lambda rows: math.ceil(rows / wl.sample_batch)
  collect = calls(c.train_problems * c.samples_per_problem) * call(mesh)
  update = train_seconds(config, hw, mesh, wl.train_batch, wl.train_len, wl.grad_accum_steps)
  grpo = c.grpo_steps_per_round * (call(mesh) + update)
  trees = math.ceil(c.collect_problems / c.batch_trees)
  search_calls = calls(c.batch_trees * c.collect_samples)
  value_step = train_seconds(config, hw, mesh, wl.value_batch, wl.value_len, reference=False,
                             logits=False)
  decode_trees = math.ceil(c.decode_problems / c.batch_trees)
  decode_calls = c.decode_iterations * calls(c.batch_trees * c.decode_samples)
  scored = c.decode_iterations * (c.decode_samples + c.decode_width)   # programs + nodes
  fits = mp.fits(mp.analytic_plan(config, mesh, wl, host), hw)
  sample_ok = 1.0 if fits[mp.HOST_SAMPLE_PEAK] else math.nan
  decode_ok = 1.0 if fits[mp.HOST_DECODE_PEAK] else math.nan
  share = 1.0 / hw.hosts        # the search stages: each host its share of the problems
  return {
      "rest_grpo: collect (per round)": collect,
      "rest_grpo: GRPO steps (per round)": grpo,
      "rest_grpo (all rounds)": c.rounds * (collect + grpo),
      "collect_values": share * sample_ok * trees * c.collect_iterations * search_calls
                        * call(host),
      "train_value": c.value_records * c.value_epochs * value_step,
      "decode": share * decode_ok * (c.decode_methods * decode_trees * decode_calls * call(host)
                             + (c.decode_methods - 1) * c.decode_problems
                             * score_seconds(config, hw, scored, wl.value_len)
                             / math.prod(host)),
      "evaluate": sample_ok * calls(c.eval_problems * c.eval_samples) * call(host),
  }


def per_step_seconds(config, hw, wl: mp.Workload = mp.Workload()) -> dict[str, float]:
  """The unit times the stages are made of."""
  return {
      "sampling call, 16 rows, on the mesh": decode_seconds(
          config, hw, hw.mesh_shape, wl.sample_batch, wl.prompt_len, wl.new_tokens),
      "sampling call, 16 rows, on one host's mesh": decode_seconds(
          config, hw, hw.host_mesh_shape, wl.sample_batch, wl.prompt_len, wl.new_tokens),
      "GRPO update (+ reference forward)": train_seconds(
          config, hw, hw.mesh_shape, wl.train_batch, wl.train_len, wl.grad_accum_steps),
      "value-model step": train_seconds(config, hw, hw.mesh_shape, wl.value_batch, wl.value_len,
                                        reference=False, logits=False),
  }


def format_estimate(name: str, hw: mesh_presets.Hardware, steps: dict[str, float],
                    stages: dict[str, float], c: Counts) -> str:
  lines = [f"{name} on {hw.name} ({hw.devices} devices, {hw.peak_bf16_tflops:g} TFLOP/s and "
           f"{hw.hbm_gbps:g} GB/s each), roofline at the token limits:"]
  lines += [f"  {k:<44s}{v:10.2f} s" for k, v in steps.items()]
  lines.append("  stages (" + ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(c).items())
               + "):")
  lines += [f"  {k:<44s}" + (f"{v / 3600:10.1f} h" if v == v else "  does not fit")
            for k, v in stages.items()]
  return "\n".join(lines)


# docs/reproduce.md's table: the model and the rows' wording (columns named as the memory plan's)
DOCS_MODEL = "qwen2.5-coder-7b-instruct"
STEP_LABELS = {
    "sampling call, 16 rows, on the mesh":
        "one sampling call ({rows} x {new} new tokens), on the mesh",
    "sampling call, 16 rows, on one host's mesh": "one sampling call, on one host's mesh",
    "GRPO update (+ reference forward)": "one GRPO update (+ reference forward)",
    "value-model step": "one value-model step"}
STAGE_LABELS = {
    "rest_grpo: collect (per round)":
        "`rest_grpo`, per round: sampling {samples_per_problem} x {train_problems:,} problems",
    "rest_grpo: GRPO steps (per round)": "`rest_grpo`, per round: {grpo_steps_per_round} updates",
    "rest_grpo (all rounds)": "`rest_grpo`, {rounds} rounds",
    "collect_values": "`collect_values`, {collect_problems:,} problems",
    "train_value": "`train_value`, {value_records:,} records x {value_epochs} epochs",
    "decode": "`decode`, {decode_problems} problems x {decode_methods} methods",
    "evaluate": "`evaluate`, six benchmarks (every host all of them)"}
BEGIN, END = "<!-- time-plan:begin -->", "<!-- time-plan:end -->"


def _step_cell(v: float) -> str:
  return f"{v:.1f} s" if v >= 1 else f"{v:.2f} s"


def _stage_cell(v: float) -> str:
  return "does not fit" if v != v else f"{v / 3600:.1f} h"


def markdown_table(model: str = DOCS_MODEL, hardware: Sequence[str] = mp.PAPER_HARDWARE,
                   c: Counts = Counts()) -> str:
  """docs/reproduce.md's wall-time table: the unit steps and the stages of `model` on each of
  `hardware` at its preset's settings."""
  config, hws = models.get_preset(model), [mesh_presets.get(h) for h in hardware]
  wls = [mp.preset_workload(hw) for hw in hws]
  steps = [per_step_seconds(config, hw, wl) for hw, wl in zip(hws, wls)]
  stages = [stage_seconds(config, hw, wl, c) for hw, wl in zip(hws, wls)]
  fields = dict(dataclasses.asdict(c), rows=wls[0].sample_batch, new=wls[0].new_tokens)
  lines = ["| | " + " | ".join(mp.HARDWARE_NAMES.get(h, h) for h in hardware) + " |",
           "|---|" + "---:|" * len(hardware)]
  for key in steps[0]:
    lines.append(f"| {STEP_LABELS[key].format(**fields)} | "
                 + " | ".join(_step_cell(s[key]) for s in steps) + " |")
  for key in stages[0]:
    lines.append(f"| {STAGE_LABELS[key].format(**fields)} | "
                 + " | ".join(_stage_cell(s[key]) for s in stages) + " |")
  return "\n".join(lines)


def update_docs(path: str) -> None:
  """Rewrite the `<!-- time-plan:begin -->` ... `end -->` block of the markdown file at `path`
  with `markdown_table()`."""
  text = Path(path).read_text()
  try:
    text = io_utils.replace_marked_block(text, BEGIN, END, markdown_table() + "\n")
  except ValueError as exc:
    raise ValueError(f"{path}: {exc}") from None
  Path(path).write_text(text)


def main(argv: Sequence[str] | None = None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--model", default="qwen2.5-coder-7b-instruct", choices=sorted(models.PRESETS))
  ap.add_argument("--hardware", default="v5p-8", choices=sorted(mesh_presets.PRESETS))
  for field in dataclasses.fields(Counts):
    ap.add_argument("--" + field.name.replace("_", "-"), type=int, default=field.default)
  ap.add_argument("--update-docs", metavar="PATH",
                  help="rewrite the time-plan table of this markdown file (docs/reproduce.md) "
                       f"for {DOCS_MODEL} on {', '.join(mp.PAPER_HARDWARE)} and exit")
  args = ap.parse_args(argv)
  if args.update_docs:
    update_docs(args.update_docs)
    return
  config, hw = models.get_preset(args.model), mesh_presets.get(args.hardware)
  counts = Counts(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Counts)})
  wl = mp.preset_workload(hw)
  print(format_estimate(args.model, hw, per_step_seconds(config, hw, wl),
                        stage_seconds(config, hw, wl, counts), counts))


if __name__ == "__main__":
  main()
