"""The stage runner: runs `config.stages` in order under `config.workdir`, resuming where it stopped."""
from restrl_jax.pipeline.runner import run_pipeline
from restrl_jax.pipeline.stages import STAGES, StageContext, register_stage

__all__ = ["run_pipeline", "STAGES", "StageContext", "register_stage"]
