"""Experiment drivers on top of the pipeline: the learning experiment (`learning`) and the
reward-std statistics it reports (`reward_std`), sweeps of pipeline runs over methods and seeds,
the Table 1 analog (`table1`), the Table 2 analog (`table2`, `budget_curve`).

Not part of the installed package (setup.py installs `restrl_jax` only): run from the repository
root, `python -m experiments.learning ...`. These modules import restrl_jax; restrl_jax never
imports them."""
