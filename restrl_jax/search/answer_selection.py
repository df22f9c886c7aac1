"""Test-time answer selection (docs/method.md §7): VM-MCTS and the verification baselines, each
picking one answer per problem at an equal sample budget (the `decode` stage runs it).

Methods (`METHODS`), each spending `budget` sampled programs per problem:
  "sampling"  `budget` plain samples; the answer is the first (an unverified pick), and the
              method's score is the mean reward over all of them (expected pass@1);
  "best_of_n" `budget` samples scored by the value model used as an outcome scorer (ORM-BoN);
              the answer is the best-scored one (ties: the first);
  "orm_mcts"  the collection search (§5) with the value model's outcome score of each program in
              place of execution (no node evaluation); answer = best-scored program;
  "vm_mcts"   VM-MCTS: new children scored by the value model, programs get verification scores,
              backup from the children's sums; answer = best-scored program (ties: first in
              tree pre-order).
The MCTS methods run budget // n expansions per tree (`count="expansions"`), B trees together.
`execute_answers` runs the chosen programs in the sandbox and `answer_metrics` summarises them.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from restrl_jax.data.problem import Problem
from restrl_jax.evaluation import metrics
from restrl_jax.rollout import group_records, rollout
from restrl_jax.sampling import SamplingParams
from restrl_jax.search.driver import (NullPool, SearchConfig, SearchResult, StateScorer,
                                      best_program, run_search)
from restrl_jax.search.targets import expansions_for_budget

METHODS = ("sampling", "best_of_n", "orm_mcts", "vm_mcts")


@dataclasses.dataclass(frozen=True)
class Answer:
  problem_id: str
  method: str
  program: str                      # the chosen program
  score: float | None               # its value-model score (None for "sampling")
  num_samples: int                  # programs sampled for this problem (the budget spent)
  candidates: tuple[str, ...] = ()  # "sampling": every sample (its metric averages them)


def decode_config(method: str, budget: int, num_samples: int = 5, width: int = 5,
                  c: float = 0.1, eps: float = 0.1, seed: int = 0,
                  max_steps_factor: int = 4) -> SearchConfig:
  """The search of an MCTS method spending `budget` samples (docs/method.md §7 defaults: 15 x 5)."""
  if method not in ("orm_mcts", "vm_mcts"):
    raise ValueError(f"decode_config: {method!r} is not an MCTS method")
  expansions = expansions_for_budget(budget, num_samples)
  if expansions < 1:
    raise ValueError(f"decode_config: budget {budget} < num_samples {num_samples}: no expansion")
  return SearchConfig(iterations=expansions, num_samples=num_samples, width=width, c=c, eps=eps,
                      mode="vm" if method == "vm_mcts" else "orm", count="expansions",
                      max_steps_factor=max_steps_factor, seed=seed)


def search_answers(result: SearchResult, method: str) -> list[Answer]:
  out = []
  for b, problem in enumerate(result.problems):
    best = best_program(result, b)
    out.append(Answer(problem.id, method, best.program if best else problem.starter_code,
                      best.score if best else None, len(result.programs[b])))
  return out


def mcts_decode(problems: Sequence[Problem], sampler: Any, scorer: StateScorer,
                sampling_params: SamplingParams, config: SearchConfig,
                tree_ids: Sequence[int] | None = None, params: Any = None
                ) -> tuple[list[Answer], SearchResult]:
  """VM-MCTS (config.mode "vm") or ORM-MCTS ("orm") on B problems together."""
  if config.mode not in ("vm", "orm"):
    raise ValueError(f"mcts_decode: config.mode must be 'vm' or 'orm', got {config.mode!r}")
  result = run_search(problems, sampler, sampling_params, config, scorer=scorer,
                      tree_ids=tree_ids, params=params)
  return search_answers(result, "vm_mcts" if config.mode == "vm" else "orm_mcts"), result


def _samples(problems, sampler, sampling_params, budget, seed, params, tree_ids):
  if budget < 1:
    raise ValueError(f"decoding budget must be >= 1 sampled program, got {budget}")
  ids = list(range(len(problems))) if tree_ids is None else [int(i) for i in tree_ids]
  records = rollout(sampler, NullPool(), problems, sampling_params, budget, rng=seed,
                    chunk_size=max(len(problems) * budget, 1), params=params, request_ids=ids)
  return group_records(records)


def sampling_baseline(problems: Sequence[Problem], sampler: Any,
                      sampling_params: SamplingParams, budget: int, seed: int = 0,
                      params: Any = None, tree_ids: Sequence[int] | None = None) -> list[Answer]:
  groups = _samples(problems, sampler, sampling_params, budget, seed, params, tree_ids)
  return [Answer(p.id, "sampling", g[0].program, None, len(g), tuple(r.program for r in g))
          for p, g in zip(problems, groups)]


def best_of_n(problems: Sequence[Problem], sampler: Any, scorer: StateScorer,
              sampling_params: SamplingParams, budget: int, seed: int = 0, params: Any = None,
              tree_ids: Sequence[int] | None = None) -> list[Answer]:
  """ORM-BoN with the value model as the outcome scorer; all N x B programs in one VM call."""
  groups = _samples(problems, sampler, sampling_params, budget, seed, params, tree_ids)
  flat = [(p, r.program) for p, g in zip(problems, groups) for r in g]
  scores = np.clip(np.asarray(scorer([p for p, _ in flat], [s for _, s in flat]), np.float32),
                   0.0, 1.0).reshape(len(problems), budget)
  out = []
  for p, g, s in zip(problems, groups, scores):
    k = int(np.argmax(s))  # first of the ties
    out.append(Answer(p.id, "best_of_n", g[k].program, float(s[k]), len(g)))
  return out


def decode(method: str, problems: Sequence[Problem], sampler: Any,
           sampling_params: SamplingParams, budget: int, scorer: StateScorer | None = None,
           num_samples: int = 5, width: int = 5, c: float = 0.1, eps: float = 0.1,
           seed: int = 0, params: Any = None, tree_ids: Sequence[int] | None = None,
           max_steps_factor: int = 4) -> list[Answer]:
  """One decoding method on B problems at `budget` sampled programs each."""
  if method not in METHODS:
    raise ValueError(f"decode: method must be one of {METHODS}, got {method!r}")
  if method != "sampling" and scorer is None:
    raise ValueError(f"decode: method {method!r} needs the value model (scorer)")
  if method == "sampling":
    return sampling_baseline(problems, sampler, sampling_params, budget, seed, params, tree_ids)
  if method == "best_of_n":
    return best_of_n(problems, sampler, scorer, sampling_params, budget, seed, params, tree_ids)
  config = decode_config(method, budget, num_samples, width, c, eps, seed, max_steps_factor)
  return mcts_decode(problems, sampler, scorer, sampling_params, config, tree_ids, params)[0]


def execute_answers(pool: Any, problems: Sequence[Problem], answers: Sequence[Answer]
                    ) -> list[list[float]]:
  """Executed rewards of each answer: [reward] or, for "sampling", one per candidate."""
  by_id = {p.id: p for p in problems}
  programs, suites, owner = [], [], []
  for k, a in enumerate(answers):
    for program in (a.candidates or (a.program,)):
      programs.append(program)
      suites.append(by_id[a.problem_id].tests)
      owner.append(k)
  results = pool.submit(programs, suites).result()
  out: list[list[float]] = [[] for _ in answers]
  for k, r in zip(owner, results):
    out[k].append(r.reward)
  return out


def answer_metrics(answers: Sequence[Answer], rewards: Sequence[Sequence[float]]
                   ) -> dict[str, float]:
  """Test-case average and strict accuracy of the answers (sampling: expected over samples)."""
  per_problem = {a.problem_id: list(r) for a, r in zip(answers, rewards)}
  return {"test_case_average": metrics.test_case_average(per_problem),
          "strict_accuracy": metrics.strict_accuracy(per_problem),
          "samples_per_problem": float(np.mean([a.num_samples for a in answers])),
          "num_problems": len(answers)}
