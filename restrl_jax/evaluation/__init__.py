"""Benchmark evaluation: metrics (pass@k, test-case average, strict accuracy, paper "Avg."),
sample files and runs through the sandbox (`runner`), and the command line
(`cli`, run as `python -m restrl_jax.evaluate`)."""
from restrl_jax.evaluation.metrics import (mean_pass_at_k, paper_average, pass_at_k,
                                           strict_accuracy, test_case_average)

__all__ = ["mean_pass_at_k", "paper_average", "pass_at_k", "strict_accuracy", "test_case_average"]
