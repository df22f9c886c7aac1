"""Rollouts: (problem, state) requests -> sampled, extracted, executed and scored programs.

The one path from problems to rewards, shared by ReST data collection, GRPO, evaluation and MCTS:

  records = rollout(sampler, pool, problems, SamplingParams(temperature=0.7), num_samples=8)
  scores = policy_scores(sampler, pool, problems, SamplingParams(...), num_samples=5)

For each request the prompt is `build_prompt(problem, state, tokenizer)` (state defaults to the
starter code), tokenized once and repeated `num_samples` times. Requests are sampled in chunks of
`chunk_size` rows; each chunk's programs (`state + extracted completion`, cut at the template's
end marker) go to the sandbox pool as soon as the chunk is decoded, so execution overlaps the
next chunk's decoding. Requests whose templates have different end markers are sampled
separately with their own stop strings. Records come back in request order, samples of one
request adjacent (`group_records` regroups them, e.g. for GRPO).

Which rows of each chunk this process samples and executes is the sampler's feed's choice
(`sampling.row_feed`): all of them with a `RowFeed`; with a `HostRowFeed` (several processes) its
block of the chunk, padded to the mesh's batch shards, drawn with the rows' ids in the chunk (the
draws of one process), after which the records are gathered to every process.
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any, Sequence

import jax
import numpy as np

from restrl_jax.data.prompts import assemble_program, build_prompt, template_for
from restrl_jax.data.problem import Problem
from restrl_jax.evaluation import metrics
from restrl_jax.execution.spec import ExecResult
from restrl_jax.sampling import Completion, PrefixCache, Sampler, SamplingParams

DEFAULT_CHUNK = 256


@dataclasses.dataclass(frozen=True, eq=False)
class RolloutRecord:
  """One sampled continuation of one (problem, state) request, executed and scored."""
  request_index: int          # position of the (problem, state) request
  sample_index: int           # 0..num_samples-1 within the request
  problem_id: str
  state: str                  # the partial program the completion continues
  prompt_tokens: list[int]
  completion: str             # sampled text (stop string removed)
  tokens: list[int]           # sampled token ids (an ending EOS is kept)
  logprobs: np.ndarray        # [len(tokens)] float32, log pi_T of each sampled token
  program: str                # state + extracted completion, what was executed
  reward: float               # fraction of tests passed
  strict: bool                # every test passed
  statuses: tuple[str, ...]
  finish_reason: str          # "stop" | "eos" | "length"
  detail: str = ""            # sandbox diagnostic (compile error, timeout, ...)


def _requests(problems: Sequence[Problem], states: Sequence[str] | None) -> list[str]:
  if states is None:
    return [p.starter_code for p in problems]
  if isinstance(states, str) or len(states) != len(problems):
    raise ValueError(f"rollout: need one state per problem, got {len(problems)} problems and "
                     f"{'a single string' if isinstance(states, str) else len(states)} states")
  return list(states)


def _as_key(rng: Any) -> jax.Array:
  if rng is None or isinstance(rng, (int, np.integer)):
    return jax.random.key(int(rng or 0))
  return rng


def _stop_groups(problems: Sequence[Problem]) -> dict[tuple[str, ...], list[int]]:
  groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
  for i, p in enumerate(problems):
    groups[template_for(p).stops].append(i)
  return dict(groups)


def _record(row: tuple[int, int], problem: Problem, state: str, stops: tuple[str, ...],
            c: Completion, result: ExecResult) -> RolloutRecord:
  return RolloutRecord(
      request_index=row[0], sample_index=row[1], problem_id=problem.id, state=state,
      prompt_tokens=c.prompt_tokens, completion=c.text, tokens=c.tokens, logprobs=c.logprobs,
      program=assemble_program(state, c.text, stops), reward=result.reward,
      strict=result.strict, statuses=result.statuses, finish_reason=c.finish_reason,
      detail=result.detail)


def _fed_rows(chunk: list[tuple[int, int]], feed: Any) -> tuple[list, np.ndarray, list[int]]:
  """(rows this process samples, their row ids in the chunk, which of them are real)."""
  pos = feed.chunk_positions(len(chunk))
  fed = [chunk[min(int(p), len(chunk) - 1)] for p in pos]
  return fed, pos, [k for k, p in enumerate(pos) if p < len(chunk)]


def rollout(sampler: Sampler, pool: Any, problems: Sequence[Problem],
            sampling_params: SamplingParams, num_samples: int = 1,
            states: Sequence[str] | None = None, rng: Any = None,
            chunk_size: int = DEFAULT_CHUNK, params: Any = None,
            request_ids: Sequence[int] | None = None, prefix: PrefixCache | None = None,
            prefix_of: Sequence[int] | None = None) -> list[RolloutRecord]:
  """Sample `num_samples` continuations of each (problem, state), run and score them.

  `states[i]` is the partial program for `problems[i]` (default: its starter code); `rng` a JAX
  key or int seed; `params` overrides the sampler's parameters (e.g. the current policy).
  `request_ids[i]` (optional, distinct): a global id of request i; sample j then draws with row
  id `request_ids[i] * num_samples + j` under `rng` itself, so its draws do not depend on the
  other requests of the call (batched MCTS trees sample as they would alone).
  `prefix` (`Sampler.cache_prefixes`, same params) and `prefix_of[i]`: the cached prompt prefix
  request i's prompt continues (e.g. its problem's prompt before the state; the draws are those
  of the whole prompt, see `Sampler.generate`).
  Rows this process samples, and the gather of the records: the sampler's feed (module
  docstring).
  """
  if num_samples < 1 or chunk_size < 1:
    raise ValueError(f"rollout: num_samples and chunk_size must be >= 1, got {num_samples}, "
                     f"{chunk_size}")
  if sampler.tokenizer is None:
    raise ValueError("rollout: the Sampler needs a tokenizer (prompts are text)")
  states = _requests(problems, states)
  if prefix is not None and (prefix_of is None or len(prefix_of) != len(problems)):
    raise ValueError("rollout: a prefix cache needs prefix_of, one entry per problem")
  if request_ids is not None and len(set(request_ids)) != len(problems):
    raise ValueError(f"rollout: request_ids must hold {len(problems)} distinct ids, got "
                     f"{list(request_ids)}")
  key = _as_key(rng)
  records: list[RolloutRecord | None] = [None] * (len(problems) * num_samples)
  pending, chunk_id = [], 0
  for stops, members in _stop_groups(problems).items():
    sp = dataclasses.replace(sampling_params, stop_strings=stops)
    encoded = {i: sampler.tokenizer.encode(build_prompt(problems[i], states[i],
                                                        sampler.tokenizer)) for i in members}
    rows = [(i, j) for i in members for j in range(num_samples)]
    for start in range(0, len(rows), chunk_size):
      fed, ids, real = _fed_rows(rows[start:start + chunk_size], sampler.feed)
      cached = {} if prefix is None else dict(prefix=prefix,
                                              prefix_of=[prefix_of[i] for i, _ in fed])
      if request_ids is None:
        outs = sampler.generate([encoded[i] for i, _ in fed], sp,
                                rng=jax.random.fold_in(key, chunk_id), params=params, row_ids=ids,
                                **cached)
      else:
        outs = sampler.generate([encoded[i] for i, _ in fed], sp, rng=key, params=params,
                                row_ids=[request_ids[i] * num_samples + j for i, j in fed],
                                **cached)
      chunk_id += 1
      chunk, outs = [fed[k] for k in real], [outs[k] for k in real]
      if not chunk:
        continue
      programs = [assemble_program(states[i], c.text, stops) for (i, _), c in zip(chunk, outs)]
      future = pool.submit(programs, [problems[i].tests for i, _ in chunk])
      pending.append((chunk, stops, outs, future))
  for chunk, stops, outs, future in pending:
    for (i, j), c, result in zip(chunk, outs, future.result()):
      records[i * num_samples + j] = _record((i, j), problems[i], states[i], stops, c, result)
  return sampler.feed.gather_filled(records)


def group_records(records: Sequence[RolloutRecord]) -> list[list[RolloutRecord]]:
  """Records grouped by request (in request order), samples in sample order."""
  groups: dict[int, list[RolloutRecord]] = defaultdict(list)
  for r in records:
    groups[r.request_index].append(r)
  return [sorted(groups[k], key=lambda r: r.sample_index) for k in sorted(groups)]


def summarize_records(records: Sequence[RolloutRecord], ks: Sequence[int] = (1, 5),
                      std_threshold: float = 0.05) -> dict[str, float]:
  """Strict accuracy, test-case average, unbiased pass@k over problems, and the share of
  problems whose sample rewards have a (population) std >= `std_threshold` (GRPO signal)."""
  rewards: dict[str, list[float]] = defaultdict(list)
  for r in records:
    rewards[r.problem_id].append(r.reward)
  counts = [(len(x), sum(v > metrics.STRICT_THRESHOLD for v in x)) for x in rewards.values()]
  stds = [float(np.std(x)) for x in rewards.values()]
  finish = [r.finish_reason for r in records]
  return {
      "strict_accuracy": metrics.strict_accuracy(rewards),
      "test_case_average": metrics.test_case_average(rewards),
      **metrics.mean_pass_at_k(counts, ks),
      "reward_std_share": float(np.mean([s >= std_threshold for s in stds])) if stds else 0.0,
      "num_problems": len(rewards),
      "num_samples": len(records),
      "mean_completion_tokens": float(np.mean([len(r.tokens) for r in records])) if records
      else 0.0,
      "length_finish_share": finish.count("length") / len(finish) if finish else 0.0,
  }


def policy_scores(sampler: Sampler, pool: Any, problems: Sequence[Problem],
                  sampling_params: SamplingParams, num_samples: int = 5,
                  ks: Sequence[int] = (1, 5), rng: Any = None,
                  chunk_size: int = DEFAULT_CHUNK, params: Any = None) -> dict[str, float]:
  """`summarize_records` of `num_samples` rollouts from each problem's starter code."""
  records = rollout(sampler, pool, problems, sampling_params, num_samples, rng=rng,
                    chunk_size=chunk_size, params=params)
  return summarize_records(records, ks)
