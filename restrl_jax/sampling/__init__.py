"""Batched KV-cache generation: prefill + jitted decode loop, temperature / top-k / top-p,
per-token log-probs, EOS and stop strings, shape buckets (no recompilation per batch)."""
from restrl_jax.sampling.buckets import Buckets
from restrl_jax.sampling.token_loop import EOS, LENGTH, RUNNING, STOP, DecodeState
from restrl_jax.sampling.params import SamplingParams
from restrl_jax.sampling.sampler import (FINISH_REASONS, Completion, PrefixCache, SampleOutput,
                                         Sampler, generate)
from restrl_jax.sampling.stops import StopCut, cut_at_stop, detokenize
from restrl_jax.sampling.transforms import Draw, SamplingMode, draw, truncate

__all__ = [
    "Buckets", "EOS", "LENGTH", "RUNNING", "STOP", "DecodeState", "SamplingParams",
    "FINISH_REASONS", "Completion", "PrefixCache", "SampleOutput", "Sampler", "generate", "StopCut",
    "cut_at_stop", "detokenize", "Draw", "SamplingMode", "draw", "truncate",
]
