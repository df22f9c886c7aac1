"""Benchmark data: one `Problem` record per task, loaders by name, prompt formats.

`load_problems(name, path, split=..., limit=...)` loads any registered benchmark
(apps, humaneval, mbpp, mbppplus, bigcodebench, synthetic); `prompts` renders the paper's prompts.
`data_root` is the layout of `--config.data_dir` (one folder holding every benchmark file) and
`prepare` (`python -m restrl_jax.data.prepare --out DIR ...`) builds it from the published files.
"""
from restrl_jax.data.problem import Problem
from restrl_jax.data.registry import LOADERS, get_loader, load_problems

__all__ = ["Problem", "LOADERS", "get_loader", "load_problems"]
