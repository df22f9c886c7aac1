"""Experiment drivers on top of the pipeline: sweeps of pipeline runs over methods and seeds, the
Table 1 analog (`table1`) and the reward-std figure (`reward_std`)."""
