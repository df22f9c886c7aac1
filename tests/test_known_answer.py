"""Known-answer learning tests: each trainer drives a tiny policy to a known optimum, and a bug
injected into the update keeps it from getting there (issue #20, part 1).

The task. Eight prompts ("Task i."), answered with ONE token; the reward of a program is 1 when
it starts with a space and 0 otherwise (a scripted sandbox pool, so no execution). 332 of the 1024
tokens of the embedded tokenizer start with a space, so a freshly initialised policy scores about
0.3; the optimum (reward 1) puts all its mass on those tokens. With one completion token a
completion mask shifted one token late (the off-by-one `loss_mask[:, :-1]` for
`loss_mask[:, 1:]`) leaves nothing of the answer to train on. (With longer completions the
later, unrewarded tokens drag the first one along through the shared weights: a late mask then
still reached 0.75-1.0 in 4 of 43 seeded GRPO and ReST-GRPO runs with two-token answers, so
it is no clean known answer there.)

The trainers run their real code paths on a 1-layer version of the shipped policy architecture:
GRPO through `GRPOTrainer.step`, ReST-GRPO and ReST-DPO through `rounds.run_round` (collect ->
assemble -> train -> export, one `rounds.Runtime` per method, so the normal and the buggy runs
share compiled functions). Injected bugs (monkeypatched, host side):
  sign   the group advantages negated (`trainer._advantages`)
  mask   the completion loss mask shifted one token later (`grpo_step.pack_sequences`)
  swap   ReST-DPO's chosen and rejected exchanged (`dpo.pair_indices`), DPO's sign flip
  targets  the value model's training targets rolled by one row in each batch
           (`value.data.make_batch`), so labels go with the wrong programs.
Settings were checked on 8-10 seeds each (initialisation and sampling): every normal run ended
at mean reward 1.0, every buggy run at <= 0.42 (mask: about the base rate; sign / swap: <= 0.02).
ReST-DPO trains on 32 such prompts (see REST_DPO_PROBLEMS for why, and on how many runs).

The value model (restrl_jax.value.train_value) learns a label that is a simple function of the
program text and must rank each held-out problem's correct programs above its wrong ones: over 5
seeds within-problem AUC 1.0, and 0.47-0.63 with its training targets misaligned.
"""
import concurrent.futures as cf
import dataclasses

import jax
import numpy as np
import pytest
from flat_init import flat_init_params  # tests/ is on sys.path under pytest

from experiments.budget_curve import pool_ranking
from restrl_jax import models, training
from restrl_jax.data.problem import Problem
from restrl_jax.evaluation import metrics
from restrl_jax.execution.spec import ExecResult, TestSuite
from restrl_jax.rl import dpo, grpo_step, rounds
from restrl_jax.rl import trainer as trainer_module
from restrl_jax.rl.trainer import DPOConfig, GRPOConfig, GRPOTrainer, Request
from restrl_jax.rollout import rollout
from restrl_jax.sampling import SamplingParams
from restrl_jax.tokenizer import embedded_tokenizer
from restrl_jax.value import data as value_data
from restrl_jax.value import (ValueTrainConfig, load_value_model, preferences, train_implicit,
                              train_value)
from restrl_jax.value.train_implicit import ImplicitPRMConfig, train_implicit_prm
from restrl_jax.warmstart import export_policy, policy_config

THRESHOLD = 0.9          # the bar for a working trainer
BUGGY_CEILING = 0.6      # a buggy run must stay clearly below the bar
NUM_PROBLEMS, GROUP, PROMPTS_PER_STEP, NEW_TOKENS = 8, 8, 4, 1   # one-token answers
SUITE = TestSuite(kind="stdio", inputs=("",), outputs=("",))   # never run: the pool is scripted


# -- the task ----------------------------------------------------------------------------------

def task_problems(n: int = NUM_PROBLEMS) -> tuple[Problem, ...]:
  return tuple(Problem(f"known/{i}", "synthetic", f"Task {i}.", "", SUITE) for i in range(n))


def reward(program: str) -> float:
  return 1.0 if program.startswith(" ") else 0.0


class SpaceFirstPool:
  """Duck-typed ExecutionPool: one test, passed iff the program starts with a space."""

  def submit(self, programs, suites):
    future = cf.Future()
    future.set_result([ExecResult(("pass",) if reward(p) else ("fail",), "scripted")
                       for p in programs])
    return future


# -- injected bugs -----------------------------------------------------------------------------

def flip_advantage_sign(monkeypatch):
  compute = trainer_module._advantages
  monkeypatch.setattr(trainer_module, "_advantages", lambda *args: -compute(*args))


def shift_completion_mask(monkeypatch):
  pack = grpo_step.pack_sequences

  def late_mask(*args, **kwargs):
    arrays = pack(*args, **kwargs)
    mask = arrays["loss_mask"]                                           # [B, P+N]
    arrays["loss_mask"] = np.concatenate([np.zeros_like(mask[:, :1]), mask[:, :-1]], axis=1)
    return arrays
  monkeypatch.setattr(grpo_step, "pack_sequences", late_mask)


def swap_preferences(monkeypatch):
  indices = dpo.pair_indices

  def swapped(rewards):
    pair = indices(rewards)
    return None if pair is None else pair[::-1]
  monkeypatch.setattr(dpo, "pair_indices", swapped)


def misalign_value_targets(monkeypatch):
  """Every training batch's targets rolled by one row: labels paired with the wrong programs."""
  make_batch = value_data.make_batch

  def rolled(seqs, targets, *args, **kwargs):
    return make_batch(seqs, np.roll(np.asarray(targets), 1), *args, **kwargs)
  monkeypatch.setattr(value_data, "make_batch", rolled)


BUGS = {"sign": flip_advantage_sign, "mask": shift_completion_mask, "swap": swap_preferences,
        "targets": misalign_value_targets}


# -- shared fixtures ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer():
  return embedded_tokenizer()


@pytest.fixture(scope="module")
def model_config(tokenizer):
  return dataclasses.replace(policy_config(tokenizer), num_layers=1)


@pytest.fixture(scope="module")
def params0(model_config):
  """The freshly initialised policy every run starts from: the draws these settings were
  checked on (`flat_init`; from `models.init_params`' own key-0 draw ReST-DPO moved its mass to
  tokens in neither pair, reward 0, and reached the optimum from 4 other keys)."""
  return flat_init_params(model_config, jax.random.key(0))


@pytest.fixture(scope="module")
def start_policy(model_config, tokenizer, params0, tmp_path_factory):
  """params0 as an HF folder (what the rounds start from)."""
  return export_policy(model_config, params0, tokenizer,
                       tmp_path_factory.mktemp("known_answer") / "start")


# -- GRPO: GRPOTrainer.step ----------------------------------------------------------------------

# beta_kl = 0 (TRL's default; the KL term's arithmetic is checked against TRL in
# test_rl_losses_trl.py): with the paper's 0.04 the k3 estimator's e^(ref - logp) blows up on
# tokens the tiny policy has pushed far down, and 1 of 8 seeds at LR 1e-2 (5 of 10 at 3e-2)
# stalled near the base rate.
GRPO_STEPS, GRPO_LR = 20, 1e-2


@pytest.fixture(scope="module")
def grpo(model_config, tokenizer):
  cfg = GRPOConfig(group_size=GROUP, prompts_per_step=PROMPTS_PER_STEP,
                   max_new_tokens=NEW_TOKENS, max_prompt_tokens=64, temperature=1.0,
                   beta_kl=0.0)
  optimizer = training.make_optimizer(GRPO_LR, GRPO_STEPS, schedule="constant")
  return GRPOTrainer(model_config, tokenizer, cfg, optimizer, SpaceFirstPool()), optimizer


def requests() -> list[Request]:
  return [Request(p, p.starter_code) for p in task_problems()]


def grpo_mean_reward(trainer: GRPOTrainer, params) -> float:
  """Mean reward of 8 samples per problem (two B*G batches, fixed keys)."""
  reqs = requests()
  batches = [reqs[i:i + PROMPTS_PER_STEP] for i in range(0, NUM_PROBLEMS, PROMPTS_PER_STEP)]
  return float(np.mean([trainer.rollouts(params, batch, jax.random.key(10_000 + i)).exec_reward
                        for i, batch in enumerate(batches)]))


def train_grpo(trainer: GRPOTrainer, optimizer, params0, steps: int = GRPO_STEPS,
               seed: int = 0) -> float:
  """`steps` GRPO steps from params0 (also the reference); the trained policy's mean reward."""
  state = training.init_train_state(jax.tree.map(jax.numpy.copy, params0), optimizer)
  stream = rounds.DataStream(requests())
  for step in range(steps):
    key = jax.random.fold_in(jax.random.key(seed), step)
    state, _, _ = trainer.step(state, params0, stream.take, key)
  return grpo_mean_reward(trainer, state.params)


def test_grpo_reaches_the_optimum(grpo, params0):
  trainer, optimizer = grpo
  base = grpo_mean_reward(trainer, params0)
  trained = train_grpo(trainer, optimizer, params0)
  assert base < 0.5, base
  assert trained >= THRESHOLD, (base, trained)


@pytest.mark.parametrize("bug", ["sign", "mask"])
def test_grpo_with_a_bug_misses_the_optimum(grpo, params0, bug, monkeypatch):
  BUGS[bug](monkeypatch)
  trainer, optimizer = grpo
  assert train_grpo(trainer, optimizer, params0) < BUGGY_CEILING


# -- ReST-GRPO and ReST-DPO: rounds.run_round ----------------------------------------------------

COLLECT = SamplingParams(max_new_tokens=NEW_TOKENS, temperature=1.0)


def rounds_setup(method: str, learning_rate: float, epochs: float, seed: int = 0,
                 num_problems: int = NUM_PROBLEMS, pairs_per_step: int = 4) -> rounds.Setup:
  """ReST rounds on the task (`num_problems` prompts): `epochs` passes over each round's rows
  (or pairs), constant LR."""
  cfg = rounds.RoundsConfig(
      method=method, num_samples=GROUP, max_new_tokens=COLLECT.max_new_tokens,
      temperature=COLLECT.temperature, seed=seed, sigma0=0.05, r0=0.9, alpha=0.95, beta=0.5,
      epochs=epochs, learning_rate=learning_rate, dpo_learning_rate=learning_rate,
      schedule="constant", checkpoint_every=1000, tensorboard=False)
  grpo_cfg = GRPOConfig(group_size=GROUP, prompts_per_step=PROMPTS_PER_STEP,
                        max_new_tokens=NEW_TOKENS, max_prompt_tokens=64, temperature=1.0,
                        beta_kl=0.0)
  # DPO beta = 1: at the paper's 0.1 (and 0.5) the margin keeps growing long after the pair is
  # ordered, and 1 of 8 seeds moved its mass to tokens in neither pair (reward 0).
  dpo_cfg = DPOConfig(beta=1.0, pairs_per_step=pairs_per_step, max_prompt_tokens=64,
                      max_completion_tokens=8)
  return rounds.Setup(problems=task_problems(num_problems), tokenizer=embedded_tokenizer(),
                      pool=SpaceFirstPool(), cfg=cfg, grpo=grpo_cfg, dpo=dpo_cfg)


def runtime_for(setup: rounds.Setup, start_policy) -> rounds.Runtime:
  """The compiled pieces of `setup`'s rounds, as `rounds.run_rounds` builds them."""
  return rounds.Runtime(setup, models.read_hf_config(start_policy, dtype="float32",
                                                     param_dtype="float32"))


def rounds_mean_reward(runtime: rounds.Runtime, policy_dir) -> float:
  """Mean reward of 8 samples on each of the runtime's problems from the policy folder, sampled
  as in collection."""
  config, host = models.load_hf(policy_dir)
  params = rounds.place_params(config, jax.device_get(host), None)
  records = rollout(runtime.sampler, runtime.setup.pool, runtime.setup.problems, COLLECT, GROUP,
                    rng=jax.random.key(10_000), chunk_size=GROUP * PROMPTS_PER_STEP,
                    params=params)
  return float(np.mean([r.reward for r in records]))


def run_rounds(runtime: rounds.Runtime, start_policy, out_dir, num_rounds: int):
  """`num_rounds` ReST rounds from start_policy (rounds.run_rounds' loop on a shared Runtime);
  returns the per-round facts and the last policy folder."""
  policy, facts = start_policy, []
  for r in range(num_rounds):
    facts.append(rounds.run_round(runtime, policy, r, out_dir))
    policy = out_dir / f"round_{r}" / rounds.POLICY_DIR
  return facts, policy


REST_GRPO_ROUNDS, REST_GRPO_EPOCHS, REST_GRPO_LR = 2, 2.0, 1e-2   # ~8 steps per round


@pytest.fixture(scope="module")
def rest_grpo(start_policy):
  return runtime_for(rounds_setup("rest_grpo", REST_GRPO_LR, REST_GRPO_EPOCHS), start_policy)


def test_rest_grpo_reaches_the_optimum(rest_grpo, start_policy, tmp_path):
  facts, policy = run_rounds(rest_grpo, start_policy, tmp_path, REST_GRPO_ROUNDS)
  base = facts[0]["collect/test_case_average"]
  assert base < 0.5, base
  assert facts[0]["data/partial"] > 0          # ReST's partial states were trained on
  trained = rounds_mean_reward(rest_grpo, policy)
  assert trained >= THRESHOLD, (base, trained)


@pytest.mark.parametrize("bug", ["sign", "mask"])
def test_rest_grpo_with_a_bug_misses_the_optimum(rest_grpo, start_policy, tmp_path, bug,
                                                 monkeypatch):
  BUGS[bug](monkeypatch)
  _, policy = run_rounds(rest_grpo, start_policy, tmp_path, REST_GRPO_ROUNDS)
  assert rounds_mean_reward(rest_grpo, policy) < BUGGY_CEILING


# ReST-DPO has one pair per problem and round, so with the 8 prompts a round near the optimum
# trains on one or two pairs, and a few Adam steps of the full LR on a single pair (weights of
# scale 0.02, LR 1e-2 to 3e-2) could move every prompt's mass to one token in neither pair:
# reward 0, where no pair is left to undo it. Which runs did so changed with the float summation
# order: the same settings that reached 1.0 on one CPU model left one of them at 0 on another.
# Over 4 initialisations x 2 sampling seeds x 1 and 8 host devices (two summation orders), every
# 8-prompt setting tried (LR 3e-3 to 3e-2, 5-12 rounds, 3-60 epochs, DPO label smoothing 0.1 and
# 0.2) left 1-2 of the 16 runs below 0.9 (most at 0); with 32 prompts (up to 32 pairs a round,
# 8 per step) at LR 1e-2 all 16 ended at >= 0.988, and on the 4 initialisations the runs with
# swapped pairs at <= 0.004 and with the shifted mask at <= 0.2.
REST_DPO_ROUNDS, REST_DPO_EPOCHS, REST_DPO_LR = 6, 3.0, 1e-2   # <= 12 steps per round
REST_DPO_PROBLEMS, REST_DPO_PAIRS_PER_STEP = 32, 8


@pytest.fixture(scope="module")
def rest_dpo(start_policy):
  return runtime_for(rounds_setup("rest_dpo", REST_DPO_LR, REST_DPO_EPOCHS,
                                  num_problems=REST_DPO_PROBLEMS,
                                  pairs_per_step=REST_DPO_PAIRS_PER_STEP), start_policy)


def test_rest_dpo_reaches_the_optimum(rest_dpo, start_policy, tmp_path):
  facts, policy = run_rounds(rest_dpo, start_policy, tmp_path, REST_DPO_ROUNDS)
  base = facts[0]["collect/test_case_average"]
  assert base < 0.5, base
  assert facts[0]["data/pairs"] > 0
  trained = rounds_mean_reward(rest_dpo, policy)
  assert trained >= THRESHOLD, (base, trained)


@pytest.mark.parametrize("bug", ["swap", "mask"])
def test_rest_dpo_with_a_bug_misses_the_optimum(rest_dpo, start_policy, tmp_path, bug,
                                                monkeypatch):
  BUGS[bug](monkeypatch)
  _, policy = run_rounds(rest_dpo, start_policy, tmp_path, REST_DPO_ROUNDS)
  assert rounds_mean_reward(rest_dpo, policy) < BUGGY_CEILING


# -- the value model: restrl_jax.value.train_value ------------------------------------------------

BODY_LINES = ("n = int(input())", "xs = list(map(int, input().split()))", "total = sum(xs)",
              "total = n * 2", "total = max(xs) - min(xs)", "xs.sort()", "total += 1",
              "total = len(xs)")
WRONG_NAMES = ("totl", "tota", "result", "count")


def value_program(rng: np.random.Generator, correct: bool) -> str:
  """A few lines that define `total`, then a print of `total` (correct) or of an undefined
  name (wrong: a NameError), so the label is a simple function of the text."""
  body = [BODY_LINES[i] for i in rng.choice(len(BODY_LINES), rng.integers(1, 4), replace=False)]
  body.insert(int(rng.integers(0, len(body) + 1)), "total = 0")
  name = "total" if correct else WRONG_NAMES[int(rng.integers(len(WRONG_NAMES)))]
  return "\n".join(body + [f"print({name})"]) + "\n"


def value_examples(problem_ids: range, per_label: int, seed: int):
  """`per_label` correct and wrong programs per problem as ValueExamples (target 1 / 0)."""
  rng = np.random.default_rng(seed)
  return [value_data.examples_from_records([{
      "prompt": f"Problem {i}: print the total.", "state": value_program(rng, correct),
      "value": float(correct), "problem_id": f"value/{i}"}])[0]
          for i in problem_ids for correct in (True, False) for _ in range(per_label)]


def within_problem_auc(scores: np.ndarray, examples) -> float:
  """Pair-weighted P(a correct program outscores a wrong one of the same problem)."""
  ids = sorted({e.problem_id for e in examples})
  by_problem = [[k for k, e in enumerate(examples) if e.problem_id == p] for p in ids]
  ranking = pool_ranking([scores[rows] for rows in by_problem],
                         [[examples[k].target for k in rows] for rows in by_problem])
  return ranking["within_auc"]


def train_and_rank(start_policy, out_dir) -> float:
  """Within-problem AUC on 16 unseen problems of a value model trained on 16 others."""
  cfg = ValueTrainConfig(learning_rate=3e-3, epochs=3, batch_size=16, max_length=128,
                         min_eval=16, evals=1, dtype="float32", pad_multiple=64,
                         score_batch_size=32)
  train = value_examples(range(16), per_label=6, seed=0)          # 192 programs
  held_out = value_examples(range(100, 116), per_label=3, seed=1)  # 16 x (3 correct, 3 wrong)
  summary = train_value(cfg, train, start_policy, out_dir)
  model = load_value_model(summary["value_model_path"], batch_size=32, pad_multiple=64)
  scores = model.predict([e.text for e in held_out])               # [96]
  auc = within_problem_auc(scores, held_out)
  correct = np.array([e.target for e in held_out]) == 1.0
  brute = np.mean([(c > w) + 0.5 * (c == w) for k in range(0, len(held_out), 6)
                   for c in scores[k:k + 6][correct[k:k + 6]]
                   for w in scores[k:k + 6][~correct[k:k + 6]]])
  assert auc == pytest.approx(brute)                               # 144 pairs, counted directly
  return auc


def test_value_model_ranks_programs_within_held_out_problems(start_policy, tmp_path):
  assert train_and_rank(start_policy, tmp_path) >= 0.95


def test_value_model_with_misaligned_targets_ranks_at_chance(start_policy, tmp_path,
                                                             monkeypatch):
  misalign_value_targets(monkeypatch)
  assert train_and_rank(start_policy, tmp_path) < 0.8


# -- the implicit PRM: restrl_jax.value.train_implicit -------------------------------------------

def value_groups(problem_ids: range, per_label: int, seed: int):
  """The value task's programs as ({id: problem}, program groups): `per_label` correct and
  wrong programs per problem (drawn as `value_examples` draws them), rewards 1 / 0."""
  rng = np.random.default_rng(seed)
  problems, groups = {}, []
  for i in problem_ids:
    pid = f"value/{i}"
    problems[pid] = Problem(pid, "synthetic", f"Problem {i}: print the total.", "", SUITE)
    labels = [correct for correct in (True, False) for _ in range(per_label)]
    groups.append(preferences.ProgramGroup(pid, [value_program(rng, c) for c in labels],
                                           [float(c) for c in labels]))
  return problems, groups


def train_and_rank_implicit(start_policy, out_dir) -> tuple[float, dict]:
  """Within-problem AUC on 16 unseen problems of an implicit PRM trained on 16 others (8 more
  held out for its step choice), scored through `load_value_model`."""
  cfg = ImplicitPRMConfig(beta=0.1, learning_rate=3e-3, steps=40, pairs_per_step=16,
                          pairs_per_problem=16, eval_every=20, eval_problems=8,
                          max_prompt_tokens=64, max_length=192, score_batch_size=32)
  problems, groups = value_groups(range(24), per_label=6, seed=0)
  summary = train_implicit_prm(cfg, groups, problems, start_policy, out_dir)
  prm = load_value_model(summary["value_model_path"], batch_size=32)
  test_problems, test_groups = value_groups(range(100, 116), per_label=3, seed=1)
  scores = [prm.score_states([test_problems[g.problem_id]] * len(g.texts), g.texts)
            for g in test_groups]
  auc, pairs = metrics.within_problem_auc(scores, [g.rewards for g in test_groups])
  assert pairs == 16 * 9
  return auc, summary


def test_implicit_prm_ranks_programs_within_held_out_problems(start_policy, tmp_path):
  auc, summary = train_and_rank_implicit(start_policy, tmp_path)
  assert summary["num_pairs"] == 16 * 16 and summary["num_eval_problems"] == 8
  assert summary["best_eval_auc"] >= 0.95
  assert auc >= 0.95, (auc, summary)


def test_implicit_prm_with_swapped_pairs_ranks_backwards(start_policy, tmp_path, monkeypatch):
  pairs = train_implicit.correct_wrong_pairs
  monkeypatch.setattr(train_implicit, "correct_wrong_pairs",
                      lambda *a: [(pid, w, c) for pid, c, w in pairs(*a)])
  auc, summary = train_and_rank_implicit(start_policy, tmp_path)
  assert auc < 0.5, (auc, summary)
