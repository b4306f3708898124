"""The published results, built from collected run records.

Each module does one job; the scripts in ``scripts/`` are thin command lines
over them:

* :mod:`~arsm_jax.reporting.records`: copying a finished run's record into
  ``docs/results/`` and reading the collected records back;
* :mod:`~arsm_jax.reporting.formatting`: numbers, CSV, marked blocks;
* :mod:`~arsm_jax.reporting.bootstrap`: intervals of median episodes to solve;
* :mod:`~arsm_jax.reporting.vae`: figure 2's table and panels;
* :mod:`~arsm_jax.reporting.rl`: figure 3's tables;
* :mod:`~arsm_jax.reporting.rl_figures`: figure 3's panels;
* :mod:`~arsm_jax.reporting.rl_summary`: the intervals' text, which
  comparisons survive them;
* :mod:`~arsm_jax.reporting.readme`: the README's headline block;
* :mod:`~arsm_jax.reporting.results`: every output above, written or
  checked (``scripts/make_results.py``);
* :mod:`~arsm_jax.reporting.choosing`: the table of ``docs/choosing.md``;
* :mod:`~arsm_jax.reporting.estimator_table`: the estimator tables of the
  README and the docs, from the registry.

They need the ``[experiments]`` extra (the RL task's curves, matplotlib).
"""
