r"""Every published results table, figure and generated block, written or
checked (``scripts/make_results.py``).

Inputs are the run records of ``docs/results/vae/`` and ``docs/results/rl/``
(:mod:`arsm_jax.reporting.records`); nothing is typed by hand. Text outputs
(:func:`outputs`): ``vae.csv``, ``vae_table.md``, ``rl.csv``, ``rl_table.md``,
``rl_arsm_seeds.md`` in the results folder, the README's headline block
(:mod:`~arsm_jax.reporting.readme`) and the block of
``docs/experiments/rl.md`` (:func:`arsm_jax.reporting.rl_summary.seeds_block`).
Figures: ``vae_one_layer.png``, ``vae_two_layer.png``, ``vae_linear.png``
and the RL figures of :func:`arsm_jax.reporting.rl_figures.paths` in the
docs folder. :func:`stale` compares the text outputs and reports an RL figure
that is missing (figures are not compared byte for byte).
"""

from __future__ import annotations

import os
from typing import Optional

from arsm_jax.reporting import formatting
from arsm_jax.reporting import readme
from arsm_jax.reporting import records
from arsm_jax.reporting import rl
from arsm_jax.reporting import rl_figures
from arsm_jax.reporting import rl_summary
from arsm_jax.reporting import vae

# The VAE panels: model -> (file in the docs folder, with the authors' log).
VAE_FIGURES = {"nonlinear": ("vae_one_layer.png", True),
               "two_layer": ("vae_two_layer.png", False),
               "linear": ("vae_linear.png", False)}


def outputs(results: str = records.RESULTS, readme_path: Optional[str] = None,
            rl_page: Optional[str] = None) -> dict[str, str]:
  """The text outputs, path -> content.

  With ``readme_path``, the README with its headline block regenerated is
  one of them; with ``rl_page`` (docs/experiments/rl.md), that page with its
  block between :data:`rl_summary.SEEDS_START` and
  :data:`rl_summary.SEEDS_END` regenerated.
  """
  vae_rows = [vae.row(r) for r in records.vae_runs(results)]
  runs = records.rl_runs(results)
  rl_rows = rl.rows(runs)
  texts = {os.path.join(results, "vae.csv"): vae.csv(vae_rows),
           os.path.join(results, "vae_table.md"): vae.table(vae_rows),
           os.path.join(results, "rl.csv"): rl.csv(rl_rows),
           os.path.join(results, "rl_table.md"): rl.table(rl_rows),
           os.path.join(results, "rl_arsm_seeds.md"): rl.seed_table(
               rl.seed_rows(runs))}
  if readme_path is not None:
    with open(readme_path, encoding="utf-8") as fh:
      texts[readme_path] = formatting.splice(
          fh.read(), readme.headlines(vae_rows, rl_rows),
          readme.HEADLINES_START, readme.HEADLINES_END, readme_path)
  if rl_page is not None:
    with open(rl_page, encoding="utf-8") as fh:
      texts[rl_page] = formatting.splice(
          fh.read(), rl_summary.seeds_block(rl_rows, runs),
          rl_summary.SEEDS_START, rl_summary.SEEDS_END, rl_page)
  return texts


def _texts(results: str, docs: str) -> dict[str, str]:
  """:func:`outputs` with the README and the RL page beside ``docs``."""
  readme_path = os.path.join(os.path.dirname(docs), "README.md")
  rl_page = os.path.join(docs, "experiments", "rl.md")
  return outputs(results,
                 readme_path if os.path.exists(readme_path) else None,
                 rl_page if os.path.exists(rl_page) else None)


def _differs(path: str, text: str) -> bool:
  if not os.path.exists(path):
    return True
  with open(path, encoding="utf-8") as fh:
    return fh.read() != text


def stale(results: str = records.RESULTS,
          docs: str = records.DOCS) -> list[str]:
  """The text outputs that differ from what the records give and the RL
  figures that are missing, relative to the repository (``docs``'s
  parent); writes nothing."""
  repo = os.path.dirname(docs)
  out = [p for p, text in _texts(results, docs).items() if _differs(p, text)]
  out += [p for p in rl_figures.paths(records.rl_runs(results), docs)
          if not os.path.exists(p)]
  return [os.path.relpath(p, repo) for p in out]


def update(results: str = records.RESULTS,
           docs: str = records.DOCS) -> list[str]:
  """Writes the text outputs that changed and draws every figure.

  Returns:
    The text outputs written, relative to the repository.
  """
  written = []
  for path, text in _texts(results, docs).items():
    if _differs(path, text):
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
      written.append(os.path.relpath(path, os.path.dirname(docs)))
  runs = records.vae_runs(results)
  for model, (name, authors) in VAE_FIGURES.items():
    vae.figure(runs, model, os.path.join(docs, name), authors)
  rl_figures.draw(records.rl_runs(results), docs)
  return written
