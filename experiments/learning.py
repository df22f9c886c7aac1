"""Does the RL learn? Base vs continued SFT vs naive GRPO vs ReST-GRPO, per seed, paired.

  python -m experiments.learning run --out runs/learning --record docs/runs/learning \
      --methods grpo,rest_grpo,sft --seeds 0,1,2 [--lr 5e-5] [--steps 300] [--problems 600]
  python -m experiments.learning record-stats --workdirs runs/learning/main \
      --record docs/runs/learning
  python -m experiments.learning report --record docs/runs/learning --docs docs \
      [--tags main,steps450]

`run` trains one cell per (method, seed) from the shipped policy, each in its own process and
workdir `<out>/<tag>/<method>/seed<s>/`:
  - grpo / rest_grpo: the pipeline (`warmstart`, `rest_grpo` stages; one round, `--steps` GRPO
    steps of 2 prompts x G = 8 completions on the first `--problems` train problems; a held-out
    learning curve on 100 id_validation problems x 2 samples every `--curve_every` steps);
  - sft: continued supervised fine-tuning of the same policy on the reference solutions of the
    train split (the warm start's own recipe, `python -m restrl_jax.warmstart
    --init_policy_path`), for the same number of steps.
Then every policy (and the base, once) is sampled on each evaluation split (`--eval`:
split:problems, 4 samples each, T = 0.7, <= 128 new tokens, evaluation seed 0 for every policy,
so the comparisons are paired: same problems, same sampling seed) and its per-problem scores are
written, small, to `<record>/<tag>/<method>/seed<s>.json` (the base: `<record>/<tag>/base.json`).
An RL cell's record also keeps the reward-std statistics of its training round (`reward_std`:
`experiments.reward_std.cell_summary` of `<workdir>/rest_grpo/round_0`). A cell whose
record exists is skipped; an unfinished one resumes (the pipeline skips finished stages and
resumes from checkpoints).

`record-stats` (re)computes the `reward_std` field of every existing RL record from the cell
workdirs under `--workdirs` (`<method>/seed<s>/`), leaving the other fields as they are.

`report` reads only the records of every setting named in `--tags` (a `run --tag T` record
folder each; the first is the main table, `table1`) and writes the learning-curve and reward-std
figures, the tables (markdown, between markers in `<docs>/results.md`) and the headline numbers
and reward-std statistics in `<docs>/results.json`. The headline (`rl_gain_strict_in_dist`) is
the id_test gain of the (setting, RL method) whose gain on id_validation is largest: settings are
chosen on validation, never on the split they are reported on.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from experiments import reward_std
from restrl_jax import io_utils

REPO = Path(__file__).resolve().parents[1]
DEMO_POLICY = REPO / "restrl_jax" / "assets" / "demo_policy"
RL_METHODS, METHODS = ("grpo", "rest_grpo"), ("grpo", "rest_grpo", "sft")
EVAL_SAMPLES, EVAL_SEED, EVAL_MAX_NEW_TOKENS = 4, 0, 128
DEFAULT_EVAL = "id_validation:200,id_test:500,test:200"
CURVE_PROBLEMS, CURVE_SAMPLES = 100, 2


# -- training cells ------------------------------------------------------------------------------

def rl_command(method: str, seed: int, workdir: Path, args: argparse.Namespace) -> list[str]:
  return [sys.executable, "-m", "restrl_jax.main", f"--config={REPO / 'configs' / 'demo.py'}",
          f"--config.workdir={workdir}", "--config.stages=('warmstart','rest_grpo')",
          f"--config.warmstart.policy_path={DEMO_POLICY}", "--config.warmstart.eval_num_problems=4",
          f"--config.rest.method={method}", "--config.rest.rounds=1",
          f"--config.rest.num_problems={args.problems}",
          f"--config.rest.max_steps_per_round={args.steps}", f"--config.rest.seed={seed}",
          "--config.grpo.group_size=8", f"--config.grpo.learning_rate={args.lr}",
          f"--config.grpo.max_new_tokens={args.max_new_tokens}",
          f"--config.rest.curve_every={args.curve_every}",
          f"--config.rest.curve_num_problems={CURVE_PROBLEMS}",
          f"--config.rest.curve_num_samples={CURVE_SAMPLES}"]


def sft_command(seed: int, workdir: Path, args: argparse.Namespace) -> list[str]:
  return [sys.executable, "-m", "restrl_jax.warmstart", "--out", str(workdir),
          "--init_policy_path", str(DEMO_POLICY), "--steps", str(args.steps),
          "--seed", str(seed + 1)]   # seed 0 would replay the warm start's own batch order


def train_cell(method: str, seed: int, workdir: Path, args: argparse.Namespace) -> Path:
  """Train (or resume) one cell in its own process; returns its policy folder."""
  workdir.mkdir(parents=True, exist_ok=True)
  command = (sft_command(seed, workdir, args) if method == "sft"
             else rl_command(method, seed, workdir, args))
  with open(workdir / "log.txt", "a", encoding="utf-8") as log:
    subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, env=os.environ)
  return workdir / ("policy" if method == "sft" else "rest_grpo/policy")


def round_dir(workdir: Path) -> Path:
  """The (only) training round folder of an RL cell's workdir."""
  return workdir / "rest_grpo" / "round_0"


def curve_of(method: str, workdir: Path) -> list[dict]:
  if method == "sft":
    return []
  rows = io_utils.read_jsonl(round_dir(workdir) / "eval_curve.jsonl")
  return [{k: r[k] for k in ("step", "strict_accuracy", "test_case_average")} for r in rows]


# -- evaluation ----------------------------------------------------------------------------------

def parse_eval(text: str) -> list[tuple[str, int]]:
  out = []
  for item in text.split(","):
    split, _, n = item.partition(":")
    if not n.isdigit():
      raise ValueError(f"--eval: expected split:problems items, got {item!r}")
    out.append((split, int(n)))
  return out


def score_policy(policy: Path, evals: Sequence[tuple[str, int]]) -> dict:
  """{split: {problem_id: [rewards of its EVAL_SAMPLES samples]}} at evaluation seed 0."""
  # pylint: disable=import-outside-toplevel
  from restrl_jax import models
  from restrl_jax.data.registry import load_problems
  from restrl_jax.execution import ExecutionPool
  from restrl_jax.rollout import rollout
  from restrl_jax.sampling import Sampler, SamplingParams
  from restrl_jax.tokenizer import load_tokenizer
  config, params = models.load_hf(policy)
  sampler = Sampler(config, params, load_tokenizer(policy), max_batch=256)
  sp = SamplingParams(max_new_tokens=EVAL_MAX_NEW_TOKENS, temperature=0.7)
  out = {}
  with ExecutionPool() as pool:
    for split, n in evals:
      problems = load_problems("synthetic", None, split=split, limit=n)
      records = rollout(sampler, pool, problems, sp, EVAL_SAMPLES, rng=EVAL_SEED)
      rewards: dict[str, list[float]] = {}
      for r in records:
        rewards.setdefault(r.problem_id, []).append(round(float(r.reward), 4))
      out[split] = rewards
  return out


def write_record(path: Path, record: dict) -> None:
  io_utils.atomic_write_json(path, record)


def run(args: argparse.Namespace) -> None:
  evals = parse_eval(args.eval)
  record_root, out_root = Path(args.record) / args.tag, Path(args.out) / args.tag
  setting = {"lr": args.lr, "steps": args.steps, "problems": args.problems, "group_size": 8,
             "max_new_tokens": args.max_new_tokens,
             "prompts_per_step": 2, "eval": args.eval, "eval_samples": EVAL_SAMPLES,
             "eval_seed": EVAL_SEED}
  base = record_root / "base.json"
  if not base.is_file():
    logging.info("scoring the base policy")
    write_record(base, {"method": "base", "setting": setting,
                        "scores": score_policy(DEMO_POLICY, evals)})
  for seed in [int(s) for s in args.seeds.split(",")]:
    for method in args.methods.split(","):
      if method not in METHODS:
        raise ValueError(f"--methods: {method!r} is not one of {METHODS}")
      path = record_root / method / f"seed{seed}.json"
      if path.is_file():
        continue
      workdir = out_root / method / f"seed{seed}"
      logging.info("cell %s seed %d: training in %s", method, seed, workdir)
      policy = train_cell(method, seed, workdir, args)
      cell = {"method": method, "seed": seed, "setting": setting,
              "curve": curve_of(method, workdir), "scores": score_policy(policy, evals)}
      if method in RL_METHODS:
        cell["reward_std"] = reward_std.cell_summary(round_dir(workdir))
      write_record(path, cell)


def record_stats(args: argparse.Namespace) -> list[Path]:
  """Add (or refresh) `reward_std` in every existing RL record of `<record>/<tag>` from its cell
  workdir `<workdirs>/<method>/seed<s>`; returns the records written."""
  record_root, workdirs = Path(args.record) / args.tag, Path(args.workdirs)
  written = []
  for method in RL_METHODS:
    for path in sorted((record_root / method).glob("seed*.json")):
      cell = json.loads(path.read_text())
      source = round_dir(workdirs / method / f"seed{cell['seed']}")
      if not (source / "train_samples.jsonl").is_file():
        raise FileNotFoundError(f"{path}: no training round at {source}")
      cell["reward_std"] = reward_std.cell_summary(source)
      write_record(path, cell)
      written.append(path)
  return written


# -- report --------------------------------------------------------------------------------------

STRICT = 0.999


def strict_per_problem(rewards: dict[str, list[float]]) -> dict[str, float]:
  return {p: float(np.mean([x > STRICT for x in r])) for p, r in rewards.items()}


def tca_per_problem(rewards: dict[str, list[float]]) -> dict[str, float]:
  return {p: float(np.mean(r)) for p, r in rewards.items()}


def paired_mean(after: dict[str, float], before: dict[str, float]) -> float:
  common = sorted(set(after) & set(before))
  return float(np.mean([after[p] - before[p] for p in common]))


def paired_se(after: dict[str, float], before: dict[str, float]) -> float:
  common = sorted(set(after) & set(before))
  d = np.asarray([after[p] - before[p] for p in common])
  return float(d.std(ddof=1) / np.sqrt(len(d)))


def load_records(root: Path) -> tuple[dict, dict[str, list[dict]]]:
  base = json.loads((root / "base.json").read_text())
  cells: dict[str, list[dict]] = {}
  for method in METHODS:
    for path in sorted((root / method).glob("seed*.json")):
      cells.setdefault(method, []).append(json.loads(path.read_text()))
  return base, cells


def summarize(base: dict, cells: dict[str, list[dict]]) -> dict:
  """Per method and split: the mean score over seeds and the paired gain over the base (per
  seed: mean over problems of trained - base; then mean and ddof=1 std over seeds)."""
  out = {"base": {}}
  for split, rewards in base["scores"].items():
    out["base"][split] = {"strict_accuracy": float(np.mean(list(
        strict_per_problem(rewards).values()))), "test_case_average": float(np.mean(list(
            tca_per_problem(rewards).values()))), "num_problems": len(rewards)}
  for method, records in cells.items():
    out[method] = {}
    for split, base_rewards in base["scores"].items():
      gains = {"strict_accuracy": [], "test_case_average": []}
      ses = []
      for rec in records:
        r = rec["scores"][split]
        gains["strict_accuracy"].append(paired_mean(strict_per_problem(r),
                                                    strict_per_problem(base_rewards)))
        gains["test_case_average"].append(paired_mean(tca_per_problem(r),
                                                      tca_per_problem(base_rewards)))
        ses.append(paired_se(strict_per_problem(r), strict_per_problem(base_rewards)))
      row = {"seeds": [rec["seed"] for rec in records], "problem_se_strict": ses}
      for metric, values in gains.items():
        v = np.asarray(values, np.float64)
        row[metric] = out["base"][split][metric] + float(v.mean())
        row[f"gain_{metric}"] = {"mean": float(v.mean()),
                                 "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                                 "per_seed": [float(x) for x in v]}
      out[method][split] = row
  return out


SPLIT_ORDER = ("id_test", "test", "id_validation")   # headline first, then the others
NAMES = {"base": "base (shipped warm start)", "sft": "continued SFT", "grpo": "naive GRPO",
         "rest_grpo": "ReST-GRPO"}


def table(summary: dict, setting: dict) -> str:
  splits = sorted(summary["base"], key=lambda s: (SPLIT_ORDER + (s,)).index(s))
  head = "| method | seeds | " + " | ".join(
      f"{s} strict | {s} gain (mean ± std over seeds)" for s in splits) + " |"
  lines = [head, "|" + "---|" * (2 + 2 * len(splits))]
  for method in ["base", *[m for m in METHODS if m in summary]]:
    cells = [NAMES[method], "-" if method == "base" else str(len(summary[method][splits[0]]
                                                                  ["seeds"]))]
    for s in splits:
      row = summary[method][s]
      cells.append(f"{row['strict_accuracy']:.3f}")
      g = row.get("gain_strict_accuracy")
      spread = f" ± {g['std']:.3f}" if g and len(g["per_seed"]) > 1 else " (one seed)"
      cells.append("-" if g is None else f"{g['mean']:+.4f}{spread}")
    lines.append("| " + " | ".join(cells) + " |")
  lines.append("")
  lines.append(f"Setting: {setting['steps']} steps, LR {setting['lr']}, <= "
               f"{setting.get('max_new_tokens', 64)} new tokens in training, first "
               f"{setting['problems']} train problems, G = {setting['group_size']}, "
               f"{setting['prompts_per_step']} prompts per step; evaluation {setting['eval']} "
               f"(split:problems) x {setting['eval_samples']} samples, seed "
               f"{setting['eval_seed']}.")
  return "\n".join(lines) + "\n"


def curve_panels(cells: dict[str, list[dict]], base: dict, label: str = "",
                 panels: dict | None = None) -> dict:
  """Held-out curves per method, mean ± std over seeds at the steps every seed recorded;
  `label` follows the method's name (another setting's runs), `panels` adds to earlier ones."""
  panels = panels if panels is not None else {
      "held-out strict accuracy (id_validation)": {},
      "held-out test-case average (id_validation)": {}}
  for method, records in cells.items():
    curves = [r["curve"] for r in records if r["curve"]]
    if not curves:
      continue
    steps = sorted(set.intersection(*[{p["step"] for p in c} for c in curves]))
    for panel, key in zip(panels, ("strict_accuracy", "test_case_average")):
      points = []
      for step in steps:
        v = np.asarray([next(p[key] for p in c if p["step"] == step) for c in curves])
        points.append((step, float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0))
      panels[panel][f"{NAMES[method]}{label} ({len(curves)} seeds)"] = points
  return panels


SELECT_SPLIT = "id_validation"   # the split a setting is chosen on (never the reported one)


def setting_label(setting: dict) -> str:
  return f"{setting['steps']} steps, {setting['problems']} problems, LR {setting['lr']:g}"


def headline(summaries: dict[str, dict], settings: dict[str, dict] | None = None,
             split: str = "id_test") -> dict:
  """The RL gain on `split` of the (setting, RL method) with the largest mean gain on
  `SELECT_SPLIT` (with one setting and no validation scores: the largest on `split`)."""
  candidates = [(tag, m) for tag, summary in summaries.items() for m in RL_METHODS
                if m in summary]
  def chosen_on(tag_method):
    row = summaries[tag_method[0]][tag_method[1]]
    return row.get(SELECT_SPLIT, row[split])["gain_strict_accuracy"]["mean"]
  tag, best = max(candidates, key=chosen_on)
  g = summaries[tag][best][split]["gain_strict_accuracy"]
  out = {"method": best, "split": split, "mean": g["mean"], "std": g["std"],
         "seeds": len(g["per_seed"]), "setting": tag,
         "chosen_on": SELECT_SPLIT if SELECT_SPLIT in summaries[tag][best] else split}
  if settings and tag in settings:
    out["setting_detail"] = setting_label(settings[tag])
  return {"rl_gain_strict_in_dist": out}


KIND_NAMES = {"partial": "partial-state"}   # ReST prompt kinds as the tables name them


def reward_std_by_method(cells: dict[str, list[dict]]) -> dict:
  """Per RL method whose records hold `reward_std`: `reward_std.method_summary` over those
  seeds, and the seeds."""
  out = {}
  for method in RL_METHODS:
    kept = [r for r in cells.get(method, []) if "reward_std" in r]
    if kept:
      out[method] = dict(reward_std.method_summary([r["reward_std"] for r in kept]),
                         seeds=[r["seed"] for r in kept])
  return out


def _mean_spread(d: dict, digits: int = 3) -> str:
  return f"{d['mean']:.{digits}f} ± {d['std']:.{digits}f}"


def reward_std_rows(by_method: dict) -> list[tuple[str, dict]]:
  """(row label, across-seeds statistics) in table order: per method the groups trained on,
  then per prompt kind where there is more than one, then the collection."""
  rows = []
  for method, s in by_method.items():
    rows.append((f"{NAMES[method]}: GRPO groups trained on", s["training_groups"]))
    if len(s["training_groups_by_kind"]) > 1:
      rows += [(f"{NAMES[method]}: groups of {KIND_NAMES.get(kind, kind)} prompts", d)
               for kind, d in s["training_groups_by_kind"].items()]
  rows += [(f"{NAMES[method]}: collection, per training problem "
            f"({s['collection_samples_per_problem']} samples)", s["collection_problems"])
           for method, s in by_method.items()]
  return rows


def reward_std_table(by_method: dict) -> str:
  lines = ["| prompts | seeds | prompts per seed | mean std | zero-std share | all-fail share "
           f"| share with std >= σ0 = {reward_std.SIGMA0:g} |", "|---|---|---|---|---|---|---|"]
  for label, d in reward_std_rows(by_method):
    lines.append(f"| {label} | {d['n']['seeds']} | {d['n']['mean']:.0f} | "
                 f"{_mean_spread(d['mean_std'])} | {_mean_spread(d['zero_std_share'])} | "
                 f"{_mean_spread(d['all_fail_share'])} | {_mean_spread(d['share_ge_sigma0'])} |")
  lines.append("")
  lines.append("Mean ± sample std (ddof 1) over seeds. Std: population std of the execution "
               "rewards of one prompt's samples (a GRPO group's G completions; a training "
               "problem's collection samples). All fail: every sample of the prompt scores 0 "
               "(a share of all prompts, part of the zero-std share).")
  return "\n".join(lines) + "\n"


def reward_std_panels(by_method: dict) -> list:
  from restrl_jax import plots  # pylint: disable=import-outside-toplevel
  labels = reward_std.bin_labels()
  def name(method, what=""):
    return f"{NAMES[method]}{what} ({len(by_method[method]['seeds'])} seeds)"
  collection = {name(m): s["collection_problems"]["histogram_share"]
                for m, s in by_method.items()}
  trained = {}
  for m, s in by_method.items():
    trained[name(m)] = s["training_groups"]["histogram_share"]
    if len(s["training_groups_by_kind"]) > 1:
      trained.update({name(m, f", {KIND_NAMES.get(kind, kind)} prompts"): d["histogram_share"]
                      for kind, d in s["training_groups_by_kind"].items()})
  windows = {name(m): s["zero_std_share_by_step"] for m, s in by_method.items()}
  return [plots.BarPanel(labels, collection, "reward std of a problem's collection samples",
                         "share of training problems", "collection (what the σ0 filter reads)"),
          plots.BarPanel(labels, trained, "reward std of a GRPO group",
                         "share of groups", "GRPO groups trained on"),
          plots.CurvePanel(windows, f"GRPO step (end of a {reward_std.STEP_WINDOW}-step window)",
                           "share of zero-std groups", "zero-std groups during training")]


BEGIN, END = "<!-- learning-table:begin -->", "<!-- learning-table:end -->"
REWARD_STD_BEGIN, REWARD_STD_END = "<!-- reward-std:begin -->", "<!-- reward-std:end -->"


def replace_between(text: str, body: str, begin: str = BEGIN, end: str = END) -> str:
  return io_utils.replace_marked_block(text, begin, end, body, append=True)


def report(args: argparse.Namespace) -> dict:
  """Tables, figures and results.json from the records of every setting in `args.tags` (the
  first is the main one: its table is `table1`, its reward-std statistics the figure's)."""
  from restrl_jax import plots  # pylint: disable=import-outside-toplevel
  tags, docs = args.tags.split(","), Path(args.docs)
  runs = {tag: load_records(Path(args.record) / tag) for tag in tags}
  summaries = {tag: summarize(*runs[tag]) for tag in tags}
  settings = {tag: runs[tag][0]["setting"] for tag in tags}
  main_tag = tags[0]
  panels = None
  for tag in tags:
    label = "" if tag == main_tag else f", {setting_label(settings[tag])}"
    panels = curve_panels(runs[tag][1], runs[tag][0], label, panels)
  plots.learning_curves(panels, docs / "learning_curve.png",
                        title=f"{CURVE_PROBLEMS} id_validation problems x {CURVE_SAMPLES} samples, "
                              f"mean ± std over seeds")
  results_path = docs / "results.json"
  results = json.loads(results_path.read_text()) if results_path.is_file() else {}
  results.update(headline(summaries, settings))
  results["table1"] = summaries[main_tag]
  results["table1_settings"] = {tag: {"setting": settings[tag], "summary": summaries[tag]}
                                for tag in tags[1:]}
  body = "\n".join((table(summaries[tag], settings[tag]) if tag == main_tag else
                     f"Setting `{tag}` ({setting_label(settings[tag])}):\n\n"
                     + table(summaries[tag], settings[tag])) for tag in tags)
  text = replace_between((docs / "results.md").read_text() if (docs / "results.md").is_file()
                         else "", body)
  by_method = reward_std_by_method(runs[main_tag][1])
  if by_method:
    plots.panels_figure(reward_std_panels(by_method), docs / "reward_std.png", width=6.0,
                        title="execution-reward std per prompt: share of prompts per bin, "
                              "mean ± std over seeds")
    results["reward_std"] = dict(by_method, edges=list(reward_std.STD_EDGES),
                                 sigma0=reward_std.SIGMA0)
    text = replace_between(text, reward_std_table(by_method), REWARD_STD_BEGIN, REWARD_STD_END)
  io_utils.atomic_write_text(results_path, json.dumps(results, indent=1, sort_keys=True) + "\n")
  io_utils.atomic_write_text(docs / "results.md", text)
  return summaries[main_tag]


def main(argv: Sequence[str] | None = None) -> None:
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  r = sub.add_parser("run")
  r.add_argument("--out", default="runs/learning")
  r.add_argument("--methods", default="grpo,rest_grpo,sft")
  r.add_argument("--seeds", default="0,1,2")
  r.add_argument("--lr", type=float, default=5e-5)
  r.add_argument("--steps", type=int, default=300)
  r.add_argument("--problems", type=int, default=600)
  r.add_argument("--max_new_tokens", type=int, default=64, help="GRPO completion length")
  r.add_argument("--curve_every", type=int, default=50)
  r.add_argument("--eval", default=DEFAULT_EVAL)
  s = sub.add_parser("record-stats")
  s.add_argument("--workdirs", default="runs/learning/main",
                 help="the folder of the cells' workdirs <method>/seed<s>/ (run's <out>/<tag>)")
  rep = sub.add_parser("report")
  for p in (r, rep, s):
    p.add_argument("--record", default="docs/runs/learning")
  for p in (r, s):
    p.add_argument("--tag", default="main")
  rep.add_argument("--tags", default="main",
                   help="the settings' record folders under --record, the main one first")
  rep.add_argument("--docs", default="docs")
  args = parser.parse_args(argv)
  {"run": run, "record-stats": record_stats, "report": report}[args.command](args)


if __name__ == "__main__":
  main()
