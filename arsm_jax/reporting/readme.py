"""The README's one-line summaries of figures 2 and 3.

They sit between :data:`HEADLINES_START` and :data:`HEADLINES_END` and are
written from the collected runs, so they cannot drift from the tables.
"""

from __future__ import annotations

import textwrap

from arsm_jax.reporting import bootstrap
from arsm_jax.reporting import rl_summary
from arsm_jax.reporting import vae

HEADLINES_START = "<!-- results-headlines:start -->"
HEADLINES_END = "<!-- results-headlines:end -->"


def headlines(vae_rows: list[dict], rl_rows: list[dict]) -> str:
  """The markdown between the README's headline markers, from the rows of
  :func:`arsm_jax.reporting.vae.row` and :func:`arsm_jax.reporting.rl.rows`.
  """
  bullets = [
      "[Categorical VAE on binarised MNIST](docs/experiments/vae.md) "
      f"(figure 2; one layer, lr {vae.HEADLINE_LR_TEXT}): "
      f"{vae.headline(vae_rows)}",
      "[Reinforcement learning](docs/experiments/rl.md) (figure 3; default "
      "options): seeds solved; median episodes to solve where reached "
      f"({bootstrap.LEVEL:.0%} bootstrap interval). "
      f"{rl_summary.headline(rl_rows)}"]
  return "".join(textwrap.fill(b, 78, initial_indent="* ",
                               subsequent_indent="  ", break_on_hyphens=False,
                               break_long_words=False) + "\n"
                 for b in bullets)
