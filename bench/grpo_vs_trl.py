"""A whole GRPO step against TRL's `GRPOTrainer` on the same HF policy folder.

Both sides: the same folder (float32, CPU), the same prompts of the synthetic suite in the same
order (one prompt-length bucket, so our timed steps reuse compiled programs), G = 8 completions
per prompt, the same max new tokens, temperature, k3 KL β, learning rate (constant), AdamW with
the same weight decay and gradient clip, token-mean loss, μ = 1, and the project's own sandboxed
reward (`rewards.shape_completion` + the `ExecutionPool`). TRL generates with transformers'
`generate`; we with our sampler. Every setting of TRL's `GRPOConfig` that differs from its
default is recorded in the row (`trl_settings`), gradient checkpointing among them (TRL turns it
on by default; neither side rematerialises here).

Sizes:
  tiny  the shipped demo policy (restrl_jax/assets/demo_policy).
  100m  a random ~100M Qwen2 (`bench/grpo.py`'s: width 768, 16 layers, the demo tokenizer's
        vocabulary), written once to bench/results/policies/qwen2_100m.

Each side runs alone in its own process (`--child ours|trl`), the two in turn over `--rounds`;
a child times `--steps` steps after `--warmup` steps (ours: every completion-length bucket is
compiled before timing). Nothing is logged, evaluated or saved inside a timed step. Per step:
  gen_s     sampling (ours: sampler + shaping + handing programs to the sandbox; TRL: `_generate`)
  ref_s     the reference log-prob pass (ours runs it while the sandbox executes)
  reward_s  waiting on the reward (ours: after the reference pass; TRL: its reward call)
  update_s  the rest of the step: advantages, loss, backward, optimizer
  step_s    the whole step
Row `grpo_vs_trl_<size>`: ours = our median s/step, peer = TRL's, ratio = TRL / ours (> 1: we
are faster); the medians of every phase of both sides, the shapes and the load average.

python bench/grpo_vs_trl.py [--sizes tiny,100m] [--rounds 2] [--steps 4] [--warmup 2]
                            [--prompts 2] [--new_tokens 128] [--no-save] [--update-docs]
Needs the `bench` extra (trl, torch). Results go to the git-ignored bench/results/grpo_vs_trl.json;
`--update-docs` also puts the rows into docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common

GROUP = 8
TEMPERATURE, BETA_KL, LEARNING_RATE = 0.7, 0.04, 5e-5
MAX_PROMPT_TOKENS = 256
PHASES = ("gen_s", "ref_s", "reward_s", "update_s", "step_s")
POLICY_100M = common.RESULTS / "policies" / "qwen2_100m"


# -- shared by both children ---------------------------------------------------------------------

def policy_folder(size: str) -> Path:
  """The HF folder of `size`, written first for "100m"."""
  from restrl_jax.warmstart import shipped_policy_path
  if size == "tiny":
    return shipped_policy_path()
  if size != "100m":
    raise ValueError(f"unknown size {size!r}; choose tiny or 100m")
  if not (POLICY_100M / "config.json").is_file():
    import jax
    from bench.grpo import _model
    from restrl_jax.policy_folder import export_policy
    from restrl_jax.tokenizer import load_tokenizer
    tokenizer = load_tokenizer(shipped_policy_path())
    config, params = _model("100m", tokenizer)
    export_policy(config, jax.device_get(params), tokenizer, POLICY_100M)
  return POLICY_100M


def step_requests(folder: Path, prompts_per_step: int, steps: int):
  """The requests of every step in order: synthetic train problems whose prompts fall in the
  most common prompt-length bucket, repeated as needed."""
  from restrl_jax.data.synthetic import load_synthetic
  from restrl_jax.rl.trainer import Request
  from restrl_jax.rollout import encode_prompt
  from restrl_jax.sampling import Buckets
  from restrl_jax.tokenizer import load_tokenizer
  tokenizer = load_tokenizer(folder)
  requests = [Request(p, p.starter_code) for p in load_synthetic("train", 64, verify=False)]
  bucket = [Buckets().prompt_len(len(encode_prompt(tokenizer, r.problem, r.state,
                                                   MAX_PROMPT_TOKENS)))
            for r in requests]
  kept = [r for r, b in zip(requests, bucket) if b == statistics.mode(bucket)]
  return [kept[i % len(kept)] for i in range(prompts_per_step * steps)], tokenizer


def sandbox_rewards(pool, requests, texts: list[str]) -> list[float]:
  """The project's reward of each completion of `requests` (one request per text): the shaping
  bonus plus the sandbox's reward of `state + valid code`."""
  from restrl_jax.data.prompts import template_for
  from restrl_jax.rl.rewards import shape_completion
  shaped = [shape_completion(r.state, t, template_for(r.problem).stops, 1e-3, 1e-6)
            for r, t in zip(requests, texts)]
  results = pool.submit([s.program for s in shaped], [r.problem.tests for r in requests]).result()
  return [s.bonus + x.reward for s, x in zip(shaped, results)]


def load_avg() -> float:
  return os.getloadavg()[0]


# -- our side ------------------------------------------------------------------------------------

def compile_buckets(trainer, state, ref_params, prompt_len: int) -> None:
  """Compile the reference pass and the update for every completion bucket up to
  max_new_tokens (a real run compiles each the first time it meets it)."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from restrl_jax.rl import grpo_step
  rows, n, seen = trainer.cfg.prompts_per_step * GROUP, 1, set()
  while True:
    n_bucket = min(trainer.buckets.new_tokens(n), trainer.cfg.max_new_tokens)
    if n_bucket not in seen:
      seen.add(n_bucket)
      arrays = grpo_step.pack_sequences([[1] * prompt_len] * rows, [[1] * n_bucket] * rows,
                                        prompt_len, n_bucket, trainer.pad_id)
      batch = grpo_step.place_batch(arrays, None)
      batch["ref_logp"] = trainer.logprob_fn(ref_params, batch["tokens"],
                                             batch["attention_mask"], n_bucket)
      batch["advantages"] = jnp.asarray(np.zeros(rows, np.float32))
      jax.block_until_ready(trainer.train_step(jax.tree.map(jnp.copy, state), batch))
    if n_bucket >= trainer.cfg.max_new_tokens:
      return
    n = n_bucket + 1


def run_ours(folder: Path, prompts_per_step: int, new_tokens: int, steps: int,
             warmup: int) -> dict:
  import jax
  import jax.numpy as jnp
  from restrl_jax import config_defaults, models
  from restrl_jax.execution import ExecutionPool
  from restrl_jax.pipeline.stages import rest_grpo
  from restrl_jax.rl import rounds
  from restrl_jax.rl.trainer import GRPOTrainer
  from restrl_jax.rollout import encode_prompt
  from restrl_jax.training import init_train_state
  requests, tokenizer = step_requests(folder, prompts_per_step, warmup + steps)
  config, params = models.load_hf(folder)
  section = config_defaults.grpo()
  section.update(dict(group_size=GROUP, prompts_per_step=prompts_per_step,
                      max_prompt_tokens=MAX_PROMPT_TOKENS, max_new_tokens=new_tokens,
                      temperature=TEMPERATURE, beta_kl=BETA_KL, loss_aggregation="token-mean"))
  cfg = rest_grpo.grpo_config(section)
  optimizer = rounds.round_optimizer(rounds.RoundsConfig(learning_rate=LEARNING_RATE,
                                                         schedule="constant"))
  position = [0]

  def take(n):
    position[0] += n
    return requests[position[0] - n:position[0]]

  records = []
  with ExecutionPool() as pool:
    trainer = GRPOTrainer(config, tokenizer, cfg, optimizer, pool)
    state = jax.device_put(init_train_state(jax.tree.map(jnp.copy, params), optimizer),
                           jax.devices()[0])
    first = requests[0]
    prompt_len = trainer.buckets.prompt_len(len(encode_prompt(tokenizer, first.problem,
                                                              first.state, MAX_PROMPT_TOKENS)))
    compile_buckets(trainer, state, params, prompt_len)
    for i in range(warmup + steps):
      state, m, ro = trainer.step(state, params, take, jax.random.key(i))
      if i >= warmup:
        records.append(dict(gen_s=m["sample_s"], ref_s=m["ref_s"], reward_s=m["exec_wait_s"],
                            update_s=m["train_s"], step_s=m["step_s"],
                            prompt_len=max(map(len, ro.prompts)),
                            completion_len=max(map(len, ro.completions)),
                            tokens=sum(map(len, ro.completions)), load=load_avg()))
  return dict(records=records, params=sum(x.size for x in jax.tree.leaves(params)))


# -- TRL's side ----------------------------------------------------------------------------------

def trl_settings(prompts_per_step: int, new_tokens: int, steps: int, out_dir: str) -> dict:
  """The GRPOConfig arguments of the peer (every one differs from TRL's default)."""
  from restrl_jax.rl import rounds
  ours = rounds.RoundsConfig()
  return dict(output_dir=out_dir, use_cpu=True, bf16=False, per_device_train_batch_size=
              prompts_per_step * GROUP, num_generations=GROUP, max_completion_length=new_tokens,
              temperature=TEMPERATURE, beta=BETA_KL, learning_rate=LEARNING_RATE,
              lr_scheduler_type="constant", weight_decay=ours.weight_decay,
              max_grad_norm=ours.grad_clip, adam_epsilon=ours.adam_eps, loss_type="dapo",
              gradient_checkpointing=False, shuffle_dataset=False, max_steps=steps,
              logging_strategy="no", save_strategy="no", report_to=[], disable_tqdm=True)


def non_defaults(settings: dict) -> dict:
  """The entries of `settings` whose value differs from GRPOConfig's default (as strings)."""
  from trl import GRPOConfig
  made = GRPOConfig(**settings)
  default = GRPOConfig(output_dir=settings["output_dir"], use_cpu=True, bf16=False)
  return {k: str(getattr(made, k)) for k in settings
          if k != "output_dir" and str(getattr(made, k)) != str(getattr(default, k))}


def run_trl(folder: Path, prompts_per_step: int, new_tokens: int, steps: int,
            warmup: int) -> dict:
  import tempfile
  import torch
  from datasets import Dataset
  from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
  from trl import GRPOConfig, GRPOTrainer
  from restrl_jax.data.prompts import build_prompt
  from restrl_jax.execution import ExecutionPool
  requests, tokenizer = step_requests(folder, prompts_per_step, warmup + steps)
  rows = [{"prompt": build_prompt(r.problem, r.state, tokenizer), "request": i}
          for i, r in enumerate(requests)]
  clock = {k: 0.0 for k in ("gen_s", "ref_s", "reward_s")}
  records, lengths = [], {}

  class Timed(GRPOTrainer):
    def _generate(self, prompts):
      start = time.perf_counter()
      out = super()._generate(prompts)
      clock["gen_s"] += time.perf_counter() - start
      lengths.update(prompt_len=max(map(len, out[0])), completion_len=max(map(len, out[1])),
                     tokens=sum(map(len, out[1])))
      return out

    def _get_per_token_logps_and_entropies(self, *args, **kwargs):
      start = time.perf_counter()
      out = super()._get_per_token_logps_and_entropies(*args, **kwargs)
      if not torch.is_grad_enabled():
        clock["ref_s"] += time.perf_counter() - start
      return out

    def _calculate_rewards(self, *args, **kwargs):
      start = time.perf_counter()
      out = super()._calculate_rewards(*args, **kwargs)
      clock["reward_s"] += time.perf_counter() - start
      return out

  class Steps(TrainerCallback):
    def on_step_begin(self, args, state, control, **kw):
      clock.update(gen_s=0.0, ref_s=0.0, reward_s=0.0, start=time.perf_counter())

    def on_step_end(self, args, state, control, **kw):
      step = time.perf_counter() - clock["start"]
      records.append(dict(gen_s=clock["gen_s"], ref_s=clock["ref_s"],
                          reward_s=clock["reward_s"],
                          update_s=step - clock["gen_s"] - clock["ref_s"] - clock["reward_s"],
                          step_s=step, load=load_avg(), **lengths))

  with ExecutionPool() as pool, tempfile.TemporaryDirectory() as out_dir:
    def sandbox_reward(prompts, completions, request, **kwargs):
      return sandbox_rewards(pool, [requests[i] for i in request], completions)

    settings = trl_settings(prompts_per_step, new_tokens, warmup + steps, out_dir)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    hf_tokenizer = AutoTokenizer.from_pretrained(folder)
    if hf_tokenizer.pad_token is None:
      hf_tokenizer.pad_token = hf_tokenizer.eos_token
    trainer = Timed(model=model, reward_funcs=sandbox_reward, args=GRPOConfig(**settings),
                    train_dataset=Dataset.from_list(rows), processing_class=hf_tokenizer,
                    callbacks=[Steps()])
    trainer.train()
    changed = non_defaults(settings)
  return dict(records=records[warmup:], params=sum(p.numel() for p in model.parameters()),
              trl_settings=changed, torch_threads=torch.get_num_threads())


# -- the parent ----------------------------------------------------------------------------------

def child_command(side: str, size: str, args) -> list[str]:
  return [sys.executable, os.path.abspath(__file__), "--child", side, "--sizes", size,
          "--prompts", str(args.prompts), "--new_tokens", str(args.new_tokens), "--steps",
          str(args.steps), "--warmup", str(args.warmup)]


def summarize(runs: list[dict]) -> dict:
  """Medians over every timed step of every round of one side."""
  steps = [r for run in runs for r in run["records"]]
  return {k: statistics.median(s[k] for s in steps) for k in steps[0]}


def bench_size(report: common.Report, size: str, args) -> None:
  folder = policy_folder(size)
  env = dict(os.environ, PYTHONPATH=str(common.REPO))
  tasks = {side: (lambda side=side: common.run_child(child_command(side, size, args),
                                                     f"{side} {size}", env=env))
           for side in ("ours", "trl")}
  results = common.in_rounds(tasks, args.rounds)
  ours, trl = summarize(results["ours"]), summarize(results["trl"])
  shape = f"B={args.prompts} G={GROUP} new<={args.new_tokens}"
  params_m = round(results["ours"][0]["params"] / 1e6, 2)
  extra = dict(params_m=params_m, shape=shape, rounds=args.rounds, steps=args.steps,
               **{f"ours_{k}": round(v, 4) for k, v in ours.items()},
               **{f"trl_{k}": round(v, 4) for k, v in trl.items()},
               trl_settings=results["trl"][0]["trl_settings"],
               torch_threads=results["trl"][0]["torch_threads"], folder=str(folder))
  report.add(f"grpo_vs_trl_{size}", ours["step_s"], trl["step_s"],
             f"s/GRPO step ({params_m}M params, {shape}, T={TEMPERATURE} k3 β={BETA_KL} "
             f"LR {LEARNING_RATE}); peer: TRL GRPOTrainer", higher_is_better=False, **extra)


PHASE_NAMES = {"gen_s": "generation", "ref_s": "reference pass",
               "reward_s": "waiting on the reward", "update_s": "update", "step_s": "step"}
PHASES_BEGIN, PHASES_END = "<!-- grpo_vs_trl_phases:begin -->", "<!-- grpo_vs_trl_phases:end -->"


def phase_table(rows: list[dict]) -> str:
  """The per-phase medians of the rows, ours / TRL's in seconds, a line per size."""
  fig = lambda x: f"{x:.3g}" if x >= 0.01 else f"{x:.1g}"
  lines = ["| size | " + " | ".join(PHASE_NAMES[k] for k in PHASES) + " |",
           "|---|" + "---|" * len(PHASES)]
  for r in rows:
    lines.append(f"| {r['bench'].removeprefix('grpo_vs_trl_')} ({r['params_m']}M) | " + " | ".join(
        f"{fig(r['ours_' + k])} / {fig(r['trl_' + k])}" for k in PHASES) + " |")
  return "\n".join(lines) + "\n"


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--sizes", default="tiny,100m")
  ap.add_argument("--rounds", type=int, default=2)
  ap.add_argument("--steps", type=int, default=4, help="timed steps per child")
  ap.add_argument("--warmup", type=int, default=2, help="untimed steps first, per child")
  ap.add_argument("--prompts", type=int, default=2, help="prompts per step (B)")
  ap.add_argument("--new_tokens", type=int, default=128)
  ap.add_argument("--child", choices=("ours", "trl"), help=argparse.SUPPRESS)
  ap.add_argument("--no-save", action="store_true", help="print only (no results file)")
  common.add_update_docs_flag(ap)
  args = ap.parse_args()
  if args.child:
    run = run_ours if args.child == "ours" else run_trl
    common.emit_result(run(policy_folder(args.sizes), args.prompts, args.new_tokens, args.steps,
                           args.warmup))
    return
  report = common.Report("grpo_vs_trl")
  for size in args.sizes.split(","):
    bench_size(report, size, args)
  report.add_block(PHASES_BEGIN, PHASES_END, phase_table(report.rows))
  if not args.no_save:
    report.save(update_docs=args.update_docs)


if __name__ == "__main__":
  main()
