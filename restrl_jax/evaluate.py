"""`python -m restrl_jax.evaluate`: the evaluation command line, `evaluation.cli` (its help lists
the options)."""
import sys

from restrl_jax.evaluation.cli import main

if __name__ == "__main__":
  sys.exit(main())
