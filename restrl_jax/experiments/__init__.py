"""Experiment drivers on top of the pipeline: the learning experiment (`learning`) and the
reward-std statistics it reports (`reward_std`), sweeps of pipeline runs over methods and seeds,
the Table 1 analog (`table1`)."""
