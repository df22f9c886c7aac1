"""One command for an accelerator: train-step MFU, decode tokens/s against the HBM roofline, and
a GRPO step's time split, on a ~1B Qwen2-shaped model in bf16 (random weights).

  python bench/accelerator.py [--model_size 1b|tiny] [--budget_s 240] [--out PATH]
                              [--peak_flops F] [--hbm_bw B] [--parts train,decode,grpo]
                              [--sandbox auto|bwrap|rlimits]
  python bench/accelerator.py --rows_from RESULTS.json [--update-docs]

Parts, in this order (each prints its figures as it ends and rewrites the results file):
  train   one train step (forward + backward + AdamW with an fp32 master copy, as the recipe's
          bf16 runs) at `train_batch` x `train_seq` tokens: tokens/s and MFU = model FLOPs per
          token x tokens/s / the device's peak dense bf16 FLOP/s (`train_part`'s comment gives
          the FLOP count).
  decode  the Sampler's decode tokens/s at B = 1 and B = 64: two generations of the same shapes
          that differ only in their number of new tokens, so the difference of their times is
          decode steps alone (no prefill, no host work around the call). Against the HBM
          roofline: a step reads every parameter byte and the KV cache of the rows' contexts
          (bytes per step = parameter bytes + B x KV bytes per token x mean context), so at
          best tokens/s = B x HBM bandwidth / bytes per step.
  grpo    GRPO steps of the project's trainer (`rl.trainer.GRPOTrainer`) on synthetic train
          problems (`data.synthetic`) with the sandboxed execution pool: seconds per step and
          its split (sampling, reference log-probs while the sandbox runs, the sandbox's own
          span, the wait on it after the reference pass, the update). The prompts are encoded
          by `ByteTokenizer` (UTF-8 bytes; transformers is not needed).

The device's peak and bandwidth come from `restrl_jax.chip_specs` by `jax.devices()[0]
.device_kind` (or --peak_flops / --hbm_bw); on a CPU or an unlisted chip the raw figures are
printed and the fractions are null. The issue's targets on an H100: MFU >= 40%, decode at B = 1
>= 60% of the roofline.

--budget_s (default 240, compile included) is respected: a part starts only with enough of it
left (else it is listed under "skipped" with the reason), timing loops stop early when it runs
low, and a watchdog ends the run at the budget, after writing what was measured. A part that
fails is recorded under "errors" and the next one runs; the exit status is then 1.
`--rows_from` turns a results file (a device run's, copied back) into the results-table rows
`accelerator_train_mfu_<chip>` and `accelerator_decode_b1_roofline_<chip>` (ratio: MFU, fraction
of the roofline), which the targets table (bench/targets.py) reads.
Imports neither transformers nor torch (a stock CUDA JAX image runs it).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import threading
import time
import traceback
from typing import Callable, NamedTuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

START = time.perf_counter()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench import common, train_step  # noqa: E402
from bench.grpo import TIMES, one_bucket  # noqa: E402
from bench.model_sizes import bench_config, flops_per_token, num_params  # noqa: E402
from restrl_jax import chip_specs, models  # noqa: E402
from restrl_jax.data.synthetic import load_synthetic  # noqa: E402
from restrl_jax.execution import ExecutionPool, isolation  # noqa: E402
from restrl_jax.rl import rounds  # noqa: E402
from restrl_jax.rl.trainer import GRPOConfig, GRPOTrainer, Request  # noqa: E402
from restrl_jax.rollout import encode_prompt  # noqa: E402
from restrl_jax.sampling import Buckets, Sampler, SamplingParams  # noqa: E402
from restrl_jax.training import init_train_state  # noqa: E402

DEFAULT_OUT = common.RESULTS / "accelerator.json"
PARTS = ("train", "decode", "grpo")
TARGETS = {"device": "H100", "train_mfu_min": 0.40, "decode_batch_1_roofline_min": 0.60}


class Shapes(NamedTuple):
  """The work of each part at one model size."""
  train_batch: int
  train_seq: int
  prompt: int                    # decode: prompt tokens (a bucket: no padding)
  new_short: int                 # decode: new tokens of the shorter call
  new_long: int                  # ... and of the longer one (same bucket: same programs)
  decode_batches: tuple[int, ...]
  grpo_prompts: int              # B
  grpo_group: int                # G
  grpo_prompt_tokens: int
  grpo_new_tokens: int
  reserve_s: float               # budget a part needs left to start (compiles + a few calls)


SHAPES = {
    "1b": Shapes(train_batch=4, train_seq=1024, prompt=128, new_short=64, new_long=256,
                 decode_batches=(1, 64), grpo_prompts=2, grpo_group=8, grpo_prompt_tokens=256,
                 grpo_new_tokens=256, reserve_s=30.0),
    "tiny": Shapes(train_batch=2, train_seq=64, prompt=16, new_short=8, new_long=32,
                   decode_batches=(1, 64), grpo_prompts=2, grpo_group=2, grpo_prompt_tokens=128,
                   grpo_new_tokens=16, reserve_s=0.0),
}
# how many reserves each part needs left to start: the GRPO step compiles four programs
RESERVES = {"train": 0, "decode": 1, "grpo": 2}


@dataclasses.dataclass(frozen=True)
class Budget:
  total_s: float
  start: float = START

  def left(self) -> float:
    return self.total_s - (time.perf_counter() - self.start)


class Device(NamedTuple):
  platform: str
  device_kind: str
  chip: str | None
  peak_bf16_flops: float | None
  hbm_bytes_per_s: float | None


def device_figures(peak_flops: float | None, hbm_bw: float | None) -> Device:
  """This device and its peak / bandwidth: the flags, else `chip_specs` (None on a CPU)."""
  dev = jax.devices()[0]
  spec = None if dev.platform == "cpu" else chip_specs.for_device_kind(dev.device_kind)
  return Device(dev.platform, dev.device_kind, spec.name if spec else None,
                peak_flops or (spec.peak_bf16_flops if spec else None),
                hbm_bw or (spec.hbm_bytes_per_s if spec else None))


def model_config(size: str) -> models.ModelConfig:
  """The size's config in bf16 (weights, activations, KV cache); no EOS, so every generation
  runs to its token limit. "tiny" keeps 2 of the preset's 4 layers (the CPU smoke test's
  compiles take half as long)."""
  config = bench_config(size)
  if size == "tiny":
    config = dataclasses.replace(config, num_layers=2)
  return dataclasses.replace(config, dtype="bfloat16", param_dtype="bfloat16", eos_token_id=None)


def timed_calls(fn: Callable[[], object], budget: Budget, max_calls: int,
                reserve_s: float = 0.0) -> list[float]:
  """Seconds of up to `max_calls` calls of `fn` (at least one); stops when the next call would
  leave less than `reserve_s` of the budget."""
  times: list[float] = []
  while len(times) < max_calls and (not times or budget.left() - times[-1] > reserve_s):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times


def ratio(x: float, over: float | None) -> float | None:
  return None if over is None else x / over


# ---- train step ------------------------------------------------------------------------------

def train_part(config, shapes: Shapes, device: Device, budget: Budget) -> dict:
  run = train_step.ours_step_runner(config, shapes.train_batch, shapes.train_seq)
  start = time.perf_counter()
  run()                                                                 # compiles
  first_s = time.perf_counter() - start
  step_s = common.median(timed_calls(run, budget, max_calls=5))
  tokens = shapes.train_batch * shapes.train_seq
  # Model FLOPs per token of a train step = 3 x the forward's (the backward does two matmuls per
  # forward one) = 6 x matmul params + 12 x layers x heads x head_dim x seq: the attention's
  # scores and values over the whole T x T square (PaLM's MFU convention). Matmul params: all
  # but an untied input embedding (a gather); a tied one counts once, as the LM head.
  flops_per_tok = 3 * flops_per_token(config, shapes.train_seq)
  achieved = flops_per_tok * tokens / step_s
  return dict(batch=shapes.train_batch, seq=shapes.train_seq, first_step_s=first_s,
              step_s=step_s, tokens_per_s=tokens / step_s, model_flops_per_token=flops_per_tok,
              model_flops_per_s=achieved, mfu=ratio(achieved, device.peak_bf16_flops))


# ---- decode ----------------------------------------------------------------------------------

def cache_bytes(config, batch: int, slots: int) -> int:
  cache = jax.eval_shape(lambda: models.init_cache(config, batch, slots))
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(cache))


def decode_step_bytes(config, params, batch: int, context: float) -> float:
  """Bytes one decode step reads at best: every parameter, and each row's KV cache of
  `context` tokens."""
  kv_per_token = cache_bytes(config, 1, 2) - cache_bytes(config, 1, 1)   # one row, one slot
  param_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
  return param_bytes + batch * kv_per_token * context


def generation_runner(config, params, shapes: Shapes, batch: int) -> Callable[[int], None]:
  """A call generating n new tokens for `batch` random prompts (distinct, so no shared
  prefill), temperature 1 as in RL sampling; every n up to `new_long` reuses the programs."""
  sampler = Sampler(config, params, buckets=Buckets(min_prompt=shapes.prompt,
                                                   min_new_tokens=shapes.new_long))
  rng = np.random.default_rng(batch)
  prompts = rng.integers(3, config.vocab_size, (batch, shapes.prompt), dtype=np.int32)  # [B, P]
  mask = np.ones_like(prompts, dtype=bool)                                              # [B, P]

  def generate(n: int) -> None:
    out = sampler.sample_tokens(prompts, mask, SamplingParams(max_new_tokens=n, temperature=1.0))
    assert int(out.lengths.min()) == n, (out.lengths, n)

  return generate


def decode_part(config, params, shapes: Shapes, batch: int, device: Device,
                budget: Budget) -> dict:
  generate = generation_runner(config, params, shapes, batch)
  start = time.perf_counter()
  generate(shapes.new_long)                                             # compiles
  first_s = time.perf_counter() - start
  short, long_ = [], []
  for _ in range(3):   # in turn, so that a slow stretch of the machine reaches both
    short += timed_calls(lambda: generate(shapes.new_short), budget, 1)
    long_ += timed_calls(lambda: generate(shapes.new_long), budget, 1)
    if budget.left() < 2 * (short[-1] + long_[-1]):
      break
  steps = shapes.new_long - shapes.new_short
  step_s = (common.median(long_) - common.median(short)) / steps
  method = "difference of two generations"
  if step_s <= 0:   # timing noise larger than the extra steps (a tiny model on a busy CPU)
    step_s, method = common.median(long_) / shapes.new_long, "whole generation (prefill in)"
  context = shapes.prompt + (shapes.new_short + shapes.new_long) / 2   # mean over those steps
  step_bytes = decode_step_bytes(config, params, batch, context)
  tokens_per_s = batch / step_s
  roofline = ratio(batch * device.hbm_bytes_per_s, step_bytes) if device.hbm_bytes_per_s else None
  return dict(batch=batch, prompt=shapes.prompt, new_tokens=[shapes.new_short, shapes.new_long],
              first_call_s=first_s, step_s=step_s, tokens_per_s=tokens_per_s, method=method,
              step_bytes=step_bytes, mean_context=context, roofline_tokens_per_s=roofline,
              roofline_fraction=ratio(tokens_per_s, roofline), calls=len(long_))


# ---- GRPO step -------------------------------------------------------------------------------

class ByteTokenizer:
  """UTF-8 bytes as tokens 3..258 after three specials (0 end of text and padding); ids a larger
  model vocabulary samples beyond them decode to nothing. No chat template: prompts render as
  plain text (`data.prompts.render_chat`)."""
  SPECIALS = 3

  def __len__(self) -> int:
    return 256 + self.SPECIALS

  def encode(self, text: str) -> list[int]:
    return [b + self.SPECIALS for b in text.encode("utf-8")]

  def decode(self, ids) -> str:
    data = bytes(int(i) - self.SPECIALS for i in ids if self.SPECIALS <= int(i) < len(self))
    return data.decode("utf-8", errors="replace")


def sandbox_level(requested: str) -> tuple[str, str | None]:
  """The execution pool's isolation and, when "auto" falls back to rlimits, why."""
  if requested != "auto":
    return requested, None
  usable, reason = isolation.bwrap_usable()
  if usable:
    return "bwrap", None
  return "rlimits", f"bwrap unusable here ({reason}); the programs are a random model's"


def grpo_config(shapes: Shapes) -> GRPOConfig:
  """The recipe's GRPO settings (config_defaults.grpo: T 0.7, beta_kl 0.04, PPO clip) at the
  size's shapes."""
  return GRPOConfig(group_size=shapes.grpo_group, prompts_per_step=shapes.grpo_prompts,
                    max_prompt_tokens=shapes.grpo_prompt_tokens,
                    max_new_tokens=shapes.grpo_new_tokens, temperature=0.7, beta_kl=0.04)


def request_stream(requests: list[Request]) -> Callable[[int], list[Request]]:
  position = [0]

  def take(n: int) -> list[Request]:
    out = [requests[(position[0] + i) % len(requests)] for i in range(n)]
    position[0] += n
    return out
  return take


def distinct_prompts(requests: list[Request], tokenizer, limit: int) -> list[Request]:
  """The first request of each distinct (truncated) prompt: two equal prompts in one step would
  share a prefill, and that step's smaller prefill batch would compile another program."""
  seen: dict[tuple[int, ...], Request] = {}
  for r in requests:
    seen.setdefault(tuple(encode_prompt(tokenizer, r.problem, r.state, limit)), r)
  return list(seen.values())


def grpo_steps(trainer: GRPOTrainer, optimizer, params, requests, budget: Budget) -> list[dict]:
  """The timings of a warm-up step (compiles) and of up to 3 more while the budget lasts."""
  # the policy's own copy: the train step donates its state, the reference keeps `params`
  state = init_train_state(jax.tree.map(jnp.copy, params), optimizer)
  take, runs = request_stream(requests), []
  while len(runs) < 4 and (not runs or budget.left() > 1.5 * runs[-1]["step_s"]):
    state, metrics, ro = trainer.step(state, params, take, jax.random.key(len(runs)))
    runs.append(dict({k: float(metrics[k]) for k in TIMES},
                     tokens=sum(len(c) for c in ro.completions)))
  return runs


def grpo_part(config, params, shapes: Shapes, sandbox: str, budget: Budget) -> dict:
  tokenizer = ByteTokenizer()
  config = dataclasses.replace(config, eos_token_id=0, pad_token_id=0, bos_token_id=None)
  cfg = grpo_config(shapes)
  optimizer = rounds.round_optimizer(rounds.RoundsConfig(
      learning_rate=1e-6, schedule="constant", dtype=config.param_dtype))
  level, note = sandbox_level(sandbox)
  with ExecutionPool(num_workers=min(8, os.cpu_count() or 1), isolation=level) as pool:
    trainer = GRPOTrainer(config, tokenizer, cfg, optimizer, pool)
    problems = load_synthetic("train", 32, verify=False)
    requests = distinct_prompts([Request(p, p.starter_code) for p in problems], tokenizer,
                                cfg.max_prompt_tokens)
    requests = one_bucket(requests, tokenizer, trainer)
    runs = grpo_steps(trainer, optimizer, params, requests, budget)
  timed = runs[1:] or runs   # without a step after the warm-up, its own (compiles in)
  mean = {k: float(np.mean([r[k] for r in timed])) for k in TIMES}
  return dict(prompts=cfg.prompts_per_step, group=cfg.group_size,
              max_new_tokens=cfg.max_new_tokens, first_step_s=runs[0]["step_s"],
              steps_timed=len(runs) - 1, tokens_per_step=float(np.mean([r["tokens"] for r in timed])),
              sandbox=level, sandbox_note=note, **mean)


# ---- the run ---------------------------------------------------------------------------------

class Results:
  """The results record, written to `path` after every part (and by the watchdog)."""

  def __init__(self, path: str, record: dict):
    self.path, self.record, self.lock = path, record, threading.Lock()

  def write(self) -> None:
    with self.lock:
      self.record["elapsed_s"] = time.perf_counter() - START
      os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
      tmp = self.path + ".tmp"
      with open(tmp, "w", encoding="utf-8") as f:
        json.dump(self.record, f, indent=2)
        f.write("\n")
      os.replace(tmp, self.path)


def record_stop(results: Results, budget: Budget, current: list[str]) -> None:
  """Record and say where the run was when its budget ran out, and write the file."""
  results.record["stopped"] = f"the budget of {budget.total_s:g} s ran out during {current[0]}"
  print(f"\n{results.record['stopped']}: ending the run (results so far in {results.path})",
        flush=True)
  results.write()


def start_watchdog(results: Results, budget: Budget, current: list[str]) -> None:
  """At the end of the budget: record where the run was, write the file and end the process
  (exit status 3; `main` ends the same way if it gets past the budget first)."""
  def stop():
    record_stop(results, budget, current)
    os._exit(3)
  timer = threading.Timer(max(budget.left(), 0.0), stop)
  timer.daemon = True
  timer.start()


def run_part(name: str, fn: Callable[[], dict], need_s: float, budget: Budget,
             results: Results, current: list[str]) -> None:
  """`fn()`'s dict into the record under `name`, unless the budget has less than `need_s`
  left; an exception is recorded under "errors" and the run goes on."""
  if budget.left() < need_s:
    reason = f"{budget.left():.0f} s of the budget left, the part needs ~{need_s:.0f} s"
    results.record["skipped"][name] = reason
    print(f"{name}: skipped ({reason})", flush=True)
    return
  current[0] = name
  try:
    results.record[name] = fn()
    print(describe(name, results.record[name]), flush=True)
  except Exception as e:  # pylint: disable=broad-except
    traceback.print_exc()
    results.record["errors"][name] = f"{type(e).__name__}: {e}"[:2000]
    print(f"{name}: FAILED ({type(e).__name__}: {str(e)[:300]})", flush=True)
  results.write()


def _pct(x: float | None, target: float | None = None) -> str:
  if x is None:
    return "unavailable (no peak figures for this device: --peak_flops / --hbm_bw)"
  return f"{100 * x:.1f}%" + ("" if target is None else
                              f" (target on an H100: >= {100 * target:.0f}%)")


def describe(name: str, r: dict) -> str:
  if name == "train_step":
    return (f"train step: {r['tokens_per_s']:,.0f} tokens/s ({r['batch']} x {r['seq']} in "
            f"{r['step_s'] * 1e3:.1f} ms; first step, compile in: {r['first_step_s']:.1f} s), "
            f"{r['model_flops_per_s'] / 1e12:.2f} TFLOP/s of model FLOPs, MFU "
            f"{_pct(r['mfu'], TARGETS['train_mfu_min'])}")
  if name.startswith("decode"):
    target = TARGETS["decode_batch_1_roofline_min"] if r["batch"] == 1 else None
    roof = ("" if r["roofline_tokens_per_s"] is None
            else f", roofline {r['roofline_tokens_per_s']:,.0f} tokens/s")
    return (f"decode B={r['batch']}: {r['tokens_per_s']:,.1f} tokens/s "
            f"({r['step_s'] * 1e3:.2f} ms/step, {r['step_bytes'] / 1e9:.3f} GB read/step"
            f"{roof}; first call, compile in: {r['first_call_s']:.1f} s), of the roofline "
            f"{_pct(r['roofline_fraction'], target)}")
  return (f"GRPO step (B={r['prompts']} x G={r['group']}, <= {r['max_new_tokens']} new): "
          f"{r['step_s']:.2f} s = sampling {r['sample_s']:.2f} + reference log-probs "
          f"{r['ref_s']:.2f} (sandbox meanwhile, {r['exec_s']:.2f} busy) + waiting on the "
          f"sandbox {r['exec_wait_s']:.2f} + update {r['train_s']:.2f}; first step "
          f"{r['first_step_s']:.1f} s; {r['steps_timed']} timed; sandbox {r['sandbox']}")


def chip_slug(chip: str) -> str:
  """A chip's name in bench row names: "H100 SXM" -> "h100_sxm"."""
  return chip.lower().replace(" ", "_")


def write_docs_rows(record: dict, update_docs: bool) -> list[dict]:
  """The results-table rows of a run's record (`--rows_from`, e.g. a GPU run's file copied
  back): the train step's model FLOP/s against the chip's peak (ratio = MFU) and the decode at
  B = 1 against the HBM roofline (ratio = its fraction), named by chip; nothing for a CPU or an
  unlisted chip (no peak to divide by). Writes bench/results/accelerator_rows.json and, with
  `update_docs`, the rows of docs/benchmarks.md, with the run's command, date and device."""
  chip = record["device"]["chip"]
  report = common.Report("accelerator", "accelerator_rows")
  report.command = record["command"]
  size = f"{record['model']['params'] / 1e9:.2f}B params bf16"
  train, decode = record.get("train_step") or {}, record.get("decode_batch_1") or {}
  if chip and train.get("mfu") is not None:
    report.add(f"accelerator_train_mfu_{chip_slug(chip)}", train["model_flops_per_s"] / 1e12,
               record["device"]["peak_bf16_flops"] / 1e12,
               f"TFLOP/s (train step, {size}, {train['batch']}x{train['seq']} tokens); peer: "
               f"the chip's peak dense bf16, ratio = MFU")
  if chip and decode.get("roofline_fraction") is not None:
    report.add(f"accelerator_decode_b1_roofline_{chip_slug(chip)}", decode["tokens_per_s"],
               decode["roofline_tokens_per_s"],
               f"decode tokens/s at B=1 ({size}); peer: the HBM roofline")
  report.save(update_docs, machine_name=f"{record['device']['device_kind']} ({chip}); "
              f"host {record['machine']}", date=record["date"])
  return report.rows


def parse_args(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--model_size", default="1b", choices=tuple(SHAPES))
  ap.add_argument("--budget_s", type=float, default=240.0,
                  help="seconds for the whole run, compile included (default 240)")
  ap.add_argument("--out", default=str(DEFAULT_OUT), help="the JSON results file")
  ap.add_argument("--peak_flops", type=float, default=None,
                  help="peak dense bf16 FLOP/s of the device (default: restrl_jax/chip_specs)")
  ap.add_argument("--hbm_bw", type=float, default=None,
                  help="HBM bandwidth of the device in bytes/s (default: chip_specs)")
  ap.add_argument("--parts", default=",".join(PARTS), help="which parts, of " + ",".join(PARTS))
  ap.add_argument("--sandbox", default="auto", choices=("auto", "bwrap", "rlimits"),
                  help="execution pool isolation (auto: bwrap, else rlimits with a note)")
  ap.add_argument("--rows_from", default=None,
                  help="measure nothing: write the results-table rows of this results file "
                       "(a run on a GPU / TPU, copied back); with --update-docs into "
                       "docs/benchmarks.md")
  common.add_update_docs_flag(ap)
  return ap.parse_args(argv)


def first_record(args, device: Device, config) -> dict:
  params = num_params(config)
  return dict(script="accelerator", command="python bench/accelerator.py " + " ".join(
      sys.argv[1:]), date=time.strftime("%Y-%m-%d %H:%M"), machine=common.machine(),
      device=device._asdict(), model=dict(size=args.model_size, params=params,
                                          param_bytes=2 * params, dtype="bfloat16",
                                          layers=config.num_layers, width=config.hidden_size,
                                          vocab=config.vocab_size),
      budget_s=args.budget_s, targets=TARGETS, skipped={}, errors={})


def main(argv=None) -> int:
  args = parse_args(argv)
  if args.rows_from:
    with open(args.rows_from, encoding="utf-8") as f:
      write_docs_rows(json.load(f), update_docs=args.update_docs)
    return 0
  parts = [p for p in args.parts.split(",") if p]
  if set(parts) - set(PARTS):
    raise SystemExit(f"--parts: unknown {sorted(set(parts) - set(PARTS))}; choose from {PARTS}")
  budget, shapes = Budget(args.budget_s), SHAPES[args.model_size]
  device, config = device_figures(args.peak_flops, args.hbm_bw), model_config(args.model_size)
  results, current = Results(args.out, first_record(args, device, config)), ["setup"]
  start_watchdog(results, budget, current)
  print(f"device: {device.device_kind} ({device.platform}; chip {device.chip}, peak "
        f"{device.peak_bf16_flops} FLOP/s, HBM {device.hbm_bytes_per_s} B/s); model "
        f"{args.model_size}: {results.record['model']['params'] / 1e9:.3f}B params, bf16; "
        f"budget {args.budget_s:g} s", flush=True)
  need = lambda part: RESERVES[part] * shapes.reserve_s
  if "train" in parts:
    run_part("train_step", lambda: train_part(config, shapes, device, budget), need("train"),
             budget, results, current)
  params = models.init_params(config, jax.random.key(0)) if {"decode", "grpo"} & set(parts) else None
  for batch in shapes.decode_batches if "decode" in parts else ():
    run_part(f"decode_batch_{batch}",
             lambda: decode_part(config, params, shapes, batch, device, budget),
             need("decode"), budget, results, current)
  if "grpo" in parts:
    run_part("grpo_step", lambda: grpo_part(config, params, shapes, args.sandbox, budget),
             need("grpo"), budget, results, current)
  if budget.left() <= 0:    # the watchdog's end, whichever thread gets there first
    record_stop(results, budget, current)
    return 3
  results.record["complete"] = not (results.record["skipped"] or results.record["errors"])
  results.write()
  print(f"done in {time.perf_counter() - START:.0f} s; results in {args.out}", flush=True)
  return 1 if results.record["errors"] else 0


if __name__ == "__main__":
  sys.exit(main())
