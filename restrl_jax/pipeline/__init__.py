"""The stage runner: runs `config.stages` in order under `config.workdir`, resuming where it stopped.

The top floor of the package (docs/architecture.md): the stage adapters in `stages/` read the
ml_collections config and call the plain functions and dataclasses of rl, search, value,
warmstart and the rest; nothing below imports this package.
"""
from restrl_jax.pipeline.registry import STAGES, StageContext, register_stage
from restrl_jax.pipeline.runner import run_pipeline

__all__ = ["run_pipeline", "STAGES", "StageContext", "register_stage"]
