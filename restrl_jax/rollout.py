"""Rollouts: (problem, state) requests -> sampled, extracted, executed and scored programs.

The one engine from problems to rewards, used by ReST data collection, GRPO training, evaluation
and MCTS:

  records = rollout(sampler, pool, problems, SamplingParams(temperature=0.7), num_samples=8)
  scores = policy_scores(sampler, pool, problems, SamplingParams(...), num_samples=5)
  pending = start_rollout(sampler, pool, problems, sp, G, extract=shaping, ...)   # GRPO
  samples, results = pending.samples, pending.results()   # samples now, rewards when executed

For each request the prompt is `build_prompt(problem, state, tokenizer)` (state defaults to the
starter code), tokenized once (left-truncated to `max_prompt_tokens` if given) and repeated
`num_samples` times; row i * num_samples + j is request i's sample j. Rows are sampled in chunks
of `chunk_size`; each chunk's programs go to the sandbox pool as soon as the chunk is decoded, so
execution overlaps the next chunk's decoding. The program of a completion is the caller's
`extract(state, text, markers, finish_reason)` (its `.program` is executed; `markers` are the
request template's end markers): `assemble_completion` (state + the completion cut at the first
marker, rstripped) for collection, evaluation and search, `rl.rewards.Shaping` (the GRPO reward
shaping) for training.

How rows are sampled:
* stop strings: by default requests whose templates have different end markers are sampled in
  separate passes, each stopping at its markers; `split_by_markers=False` samples every request in
  one pass with `sampling_params` as given (GRPO: no stop strings, or all markers);
* draws: chunk k draws with the key `fold_in(rng, k)` and each row with its position in the
  chunk; with `request_ids` (global, distinct) sample j of request i draws with row id
  `request_ids[i] * num_samples + j` under `rng` itself, so its draws depend neither on the other
  requests of the call nor on the chunking (batched MCTS trees sample as they would alone; a
  GRPO step samples the same rows in one chunk or several);
* padding: `pad_to_longest=True` pads every chunk to the longest prompt of its pass, so every
  chunk computes at the prompt bucket of one call (with `request_ids`: the chunking then does not
  change the samples).

Which rows of each chunk this process samples is `feed`'s choice (default the sampler's,
`sampling.row_feed`): all of them with a `RowFeed`; with a `HostRowFeed` (several processes) its
block of the chunk, padded to the mesh's batch shards, drawn with the rows' ids in the chunk.
`rollout` then gathers the records to every process. A GRPO step hands the engine only the
requests its process holds, with a `RowFeed`, and gathers its rollouts itself after the update.
"""
from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from typing import Any, Callable, NamedTuple, Sequence

import jax
import numpy as np

from restrl_jax.data.prompts import assemble_program, build_prompt, template_for
from restrl_jax.data.problem import Problem
from restrl_jax.evaluation import metrics
from restrl_jax.execution.spec import ExecResult
from restrl_jax.sampling import Completion, PrefixCache, Sampler, SamplingParams
from restrl_jax.sampling.row_feed import RowFeed

DEFAULT_CHUNK = 256


class Assembled(NamedTuple):
  program: str               # state + the completion up to the first end marker, rstripped


def assemble_completion(state: str, text: str, markers: tuple[str, ...],
                        finish_reason: str) -> Assembled:
  """The extraction of collection, evaluation and search (`data.prompts.assemble_program`)."""
  return Assembled(assemble_program(state, text, markers))


# (state, completion text, the template's end markers, finish reason) -> an object whose
# `.program` is executed (e.g. `Assembled`, `rl.rewards.ShapedCompletion`)
Extract = Callable[[str, str, tuple[str, ...], str], Any]


@dataclasses.dataclass(frozen=True, eq=False)
class Sample:
  """One sampled continuation of one (problem, state) request and its extracted program."""
  request_index: int          # position of the (problem, state) request
  sample_index: int           # 0..num_samples-1 within the request
  prompt_tokens: list[int]
  completion: str             # sampled text (stop string removed)
  tokens: list[int]           # sampled token ids (an ending EOS is kept)
  logprobs: np.ndarray        # [len(tokens)] float32, log pi_T of each sampled token
  finish_reason: str          # "stop" | "eos" | "length"
  extracted: Any              # what `extract` returned

  @property
  def program(self) -> str:
    return self.extracted.program


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
  program: str                # what was executed (the extraction's `.program`)
  reward: float               # fraction of tests passed
  strict: bool                # every test passed
  statuses: tuple[str, ...]
  finish_reason: str          # "stop" | "eos" | "length"
  detail: str = ""            # sandbox diagnostic (compile error, timeout, ...)


class JoinedFuture:
  """The sandbox futures of consecutive chunks as one: `result()` is their results in order;
  `span_s` the wall time from the first `add` (submission) to the last chunk done."""

  def __init__(self):
    self.futures: list[Any] = []
    self.start: float | None = None
    self.done_at = 0.0

  def add(self, future: Any) -> None:
    if self.start is None:
      self.start = time.perf_counter()
    self.futures.append(future)
    future.add_done_callback(self._mark)

  def _mark(self, _future) -> None:
    self.done_at = max(self.done_at, time.perf_counter())

  def result(self) -> list:
    return [r for f in self.futures for r in f.result()]

  @property
  def span_s(self) -> float:
    return 0.0 if self.start is None else max(self.done_at - self.start, 0.0)


@dataclasses.dataclass(frozen=True)
class PendingRollout:
  """The sampled rows of a rollout whose programs are in the sandbox."""
  problems: tuple[Problem, ...]        # [R] the requests
  states: tuple[str, ...]              # [R]
  num_samples: int
  samples: tuple[Sample | None, ...]   # [R * num_samples]; None: a row another process sampled
  execution: JoinedFuture              # the sandbox results, in submission order
  submitted: tuple[int, ...]           # the row of each submitted program, in submission order

  def results(self) -> list[ExecResult | None]:
    """[R * num_samples] sandbox result of each row this process sampled (waits for them)."""
    out: list[ExecResult | None] = [None] * len(self.samples)
    for row, result in zip(self.submitted, self.execution.result()):
      out[row] = result
    return out

  def records(self) -> list[RolloutRecord | None]:
    """[R * num_samples] the executed, scored rows this process sampled (waits for them)."""
    return [None if s is None else _record(s, self.problems[s.request_index],
                                           self.states[s.request_index], r)
            for s, r in zip(self.samples, self.results())]


def encode_prompt(tokenizer: Any, problem: Problem, state: str,
                  max_tokens: int | None = None) -> list[int]:
  """The prompt ids of (problem, state), left-truncated to `max_tokens` when given."""
  ids = list(tokenizer.encode(build_prompt(problem, state, tokenizer)))
  return ids if max_tokens is None else ids[-max_tokens:]


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


def _passes(problems: Sequence[Problem], sampling_params: SamplingParams,
            split_by_markers: bool) -> list[tuple[SamplingParams, list[int]]]:
  """(sampling params, request indices) of each sampling pass."""
  if not split_by_markers:
    return [(sampling_params, list(range(len(problems))))]
  groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
  for i, p in enumerate(problems):
    groups[template_for(p).stops].append(i)
  return [(dataclasses.replace(sampling_params, stop_strings=stops), members)
          for stops, members in groups.items()]


def _sample(row: tuple[int, int], state: str, markers: tuple[str, ...], c: Completion,
            extract: Extract) -> Sample:
  return Sample(request_index=row[0], sample_index=row[1], prompt_tokens=c.prompt_tokens,
                completion=c.text, tokens=c.tokens, logprobs=c.logprobs,
                finish_reason=c.finish_reason,
                extracted=extract(state, c.text, markers, c.finish_reason))


def _record(s: Sample, problem: Problem, state: str, result: ExecResult) -> RolloutRecord:
  return RolloutRecord(
      request_index=s.request_index, sample_index=s.sample_index, problem_id=problem.id,
      state=state, prompt_tokens=s.prompt_tokens, completion=s.completion, tokens=s.tokens,
      logprobs=s.logprobs, program=s.program, reward=result.reward, strict=result.strict,
      statuses=result.statuses, finish_reason=s.finish_reason, detail=result.detail)


def _fed_rows(chunk: list[tuple[int, int]], feed: RowFeed) -> tuple[list, np.ndarray, list[int]]:
  """(rows this process samples, their row ids in the chunk, which of them are real)."""
  pos = feed.chunk_positions(len(chunk))
  fed = [chunk[min(int(p), len(chunk) - 1)] for p in pos]
  return fed, pos, [k for k, p in enumerate(pos) if p < len(chunk)]


def start_rollout(sampler: Sampler, pool: Any, problems: Sequence[Problem],
                  sampling_params: SamplingParams, num_samples: int = 1, *,
                  states: Sequence[str] | None = None, extract: Extract = assemble_completion,
                  rng: Any = None, chunk_size: int = DEFAULT_CHUNK, params: Any = None,
                  request_ids: Sequence[int] | None = None, max_prompt_tokens: int | None = None,
                  split_by_markers: bool = True, pad_to_longest: bool = False,
                  feed: RowFeed | None = None, prefix: PrefixCache | None = None,
                  prefix_of: Sequence[int] | None = None) -> PendingRollout:
  """Sample `num_samples` continuations of each (problem, state), extract their programs and
  submit them to the sandbox pool chunk by chunk; returns once every chunk is sampled.

  `states[i]` is the partial program for `problems[i]` (default: its starter code); `rng` a JAX
  key or int seed; `params` overrides the sampler's parameters (e.g. the current policy).
  `prefix` (`Sampler.cache_prefixes`, same params) and `prefix_of[i]`: the cached prompt prefix
  request i's prompt continues (e.g. its problem's prompt before the state; the draws are those
  of the whole prompt, see `Sampler.generate`). The other switches (extraction, stop strings,
  draws, padding, rows of this process): the module docstring.
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
  feed = sampler.feed if feed is None else feed
  key = _as_key(rng)
  prompts = [encode_prompt(sampler.tokenizer, p, s, max_prompt_tokens)
             for p, s in zip(problems, states)]
  markers = [template_for(p).stops for p in problems]
  samples: list[Sample | None] = [None] * (len(problems) * num_samples)
  execution, submitted, chunk_id = JoinedFuture(), [], 0
  for sp, members in _passes(problems, sampling_params, split_by_markers):
    rows = [(i, j) for i in members for j in range(num_samples)]
    length = max(len(prompts[i]) for i in members) if pad_to_longest else 0
    for start in range(0, len(rows), chunk_size):
      fed, ids, real = _fed_rows(rows[start:start + chunk_size], feed)
      if request_ids is None:
        draw_key, row_ids = jax.random.fold_in(key, chunk_id), ids
      else:
        draw_key, row_ids = key, [request_ids[i] * num_samples + j for i, j in fed]
      cached = {} if prefix is None else dict(prefix=prefix,
                                              prefix_of=[prefix_of[i] for i, _ in fed])
      outs = sampler.generate([prompts[i] for i, _ in fed], sp, rng=draw_key, params=params,
                              row_ids=row_ids, prompt_len=length, **cached)
      chunk_id += 1
      chunk = [(fed[k], outs[k]) for k in real]
      if not chunk:
        continue
      for (i, j), c in chunk:
        samples[i * num_samples + j] = _sample((i, j), states[i], markers[i], c, extract)
      rows_done = [i * num_samples + j for (i, j), _ in chunk]
      execution.add(pool.submit([samples[r].program for r in rows_done],
                                [problems[i].tests for (i, _), _ in chunk]))
      submitted.extend(rows_done)
  return PendingRollout(tuple(problems), tuple(states), num_samples, tuple(samples), execution,
                        tuple(submitted))


def rollout(sampler: Sampler, pool: Any, problems: Sequence[Problem],
            sampling_params: SamplingParams, num_samples: int = 1,
            states: Sequence[str] | None = None, rng: Any = None,
            chunk_size: int = DEFAULT_CHUNK, params: Any = None,
            request_ids: Sequence[int] | None = None, prefix: PrefixCache | None = None,
            prefix_of: Sequence[int] | None = None) -> list[RolloutRecord]:
  """Sample `num_samples` continuations of each (problem, state), run and score them
  (`start_rollout` with the program assembled from the completion), records in request order on
  every process.

  `request_ids[i]` (optional, distinct): a global id of request i; sample j then draws with row
  id `request_ids[i] * num_samples + j` under `rng` itself, so its draws do not depend on the
  other requests of the call (batched MCTS trees sample as they would alone). `prefix`,
  `prefix_of`: cached prompt prefixes (`start_rollout`).
  """
  pending = start_rollout(sampler, pool, problems, sampling_params, num_samples, states=states,
                          rng=rng, chunk_size=chunk_size, params=params, request_ids=request_ids,
                          prefix=prefix, prefix_of=prefix_of)
  return sampler.feed.gather_filled(pending.records())


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
