"""Every figure of the project, in the style of the ARSM poster.

:func:`plot_toy` (figure 1, called by the toy task), :func:`plot_rl`
(figure 3, called by the RL task), :func:`plot_vae` (figure 2, called by
``experiments/vae_figure.py`` on finished or running VAE workdirs) and
:func:`plot_vae_panel` (figure 2 from collected runs, seed medians, called by
``scripts/make_results.py``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

# One fixed colour per estimator, so every figure agrees.
COLORS = {
    "exact": "black",
    "reinforce": "tab:blue",
    "reinforce_loo": "tab:cyan",
    "ar": "tab:orange",
    "ars": "tab:green",
    "arsm": "tab:red",
    "arsm_multi": "darkred",
    "gumbel_softmax": "tab:purple",
    "st_gumbel_softmax": "tab:pink",
    "reinmax": "tab:olive",
    "relax": "tab:brown",
    "a2c": "tab:gray",
    "reinforce_ma": "navy",
    "reinforce_wor": "teal",
    "unordered_set": "gold",
    "indecater": "darkgreen",
    "gumbel_rao": "orchid",
}


def color(name: str) -> str:
  if name in COLORS:
    return COLORS[name]
  palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  return palette[hash(name) % len(palette)]


def plot_toy(curves: Mapping[str, Mapping[str, np.ndarray]], config,
             optimum: float, path: str) -> None:
  """Expected reward, probability of the best category and gradient variance."""
  fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
  for name, c in curves.items():
    steps = np.arange(1, len(c["expected_reward"]) + 1)
    kw = dict(color=color(name), label=name, lw=1.3)
    axes[0].plot(steps, c["expected_reward"], **kw)
    axes[1].plot(steps, np.maximum(c["prob_last"], 1e-12), **kw)
    var = np.asarray(c["grad_variance"])
    var_steps = np.arange(len(var)) * config.variance_every
    if np.any(var > 0):
      axes[2].plot(var_steps, np.where(var > 0, var, np.nan), marker=".",
                   ms=3, **kw)
  axes[0].axhline(optimum, color="k", ls=":", lw=0.8)
  axes[0].set_title(f"expected reward (optimum {optimum:.4f})")
  axes[0].set_ylabel("E[f(z)]")
  axes[1].set_yscale("log")
  axes[1].set_title(r"$\sigma(\phi)_C$, probability of the best category")
  axes[2].set_yscale("log")
  axes[2].set_title(f"gradient variance ({config.variance_draws} draws, "
                    "mean over coordinates)")
  for ax in axes:
    ax.set_xlabel("iteration")
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8, loc="lower right")
  fig.suptitle(f"Toy: C = {config.num_categories}, "
               f"R = {config.reward_scale:g}, one draw per iteration")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_rl(results: Mapping[str, Mapping[str, np.ndarray]], config,
            threshold: float, path: str,
            log_variance_floor: float = float(np.log(1e-30))) -> None:
  """Moving-average reward and log gradient variance: median, 10-90% band.

  Args:
    results: per learner, ``moving_average [E, S]``, ``log_grad_variance
      [M, S]`` and ``variance_episode [M]``.
    config: the RL config (env, window, seeds, draws).
    threshold: the solved threshold, drawn dotted.
    path: the image to write.
    log_variance_floor: the log variance reported for an exactly constant
      estimate.
  """
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
  for name, r in results.items():
    col = color(name)
    ma = np.asarray(r["moving_average"])                     # [E, S]
    x = np.arange(1, ma.shape[0] + 1)
    axes[0].plot(x, np.median(ma, axis=1), color=col, label=name)
    axes[0].fill_between(x, np.percentile(ma, 10, axis=1),
                         np.percentile(ma, 90, axis=1), color=col, alpha=0.2)
    lv = np.maximum(np.asarray(r["log_grad_variance"]),
                    log_variance_floor)                      # [M, S]
    if lv.size:
      xv = np.asarray(r["variance_episode"])
      axes[1].plot(xv, np.median(lv, axis=1), color=col, label=name)
      axes[1].fill_between(xv, np.percentile(lv, 10, axis=1),
                           np.percentile(lv, 90, axis=1), color=col,
                           alpha=0.2)
  axes[0].axhline(threshold, color="k", ls=":", lw=0.8)
  axes[0].set_title(f"{config.env}: moving-average reward "
                    f"({config.moving_average_window} episodes)")
  axes[1].set_title(f"log variance of the policy gradient "
                    f"({config.variance_draws} estimates)")
  axes[1].set_ylabel(f"log variance (floor {log_variance_floor:.0f}: "
                     "exactly zero)")
  for ax in axes:
    ax.set_xlabel("episode")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8)
  fig.suptitle(f"median of {config.num_seeds} seeds, bands 10th-90th "
               "percentile")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_vae(runs: Sequence[Mapping[str, Any]], path: str, valid: bool = False,
             ymax: float = 200.0) -> None:
  """-ELBO against iteration for VAE runs, one colour per estimator.

  Training -ELBO (per-epoch mean) solid, test -ELBO dashed with markers,
  validation -ELBO dotted when ``valid``. Repeated estimators (other learning
  rates, say) are drawn fainter.

  Args:
    runs: per run ``{"config": saved config dict, "metrics": DataFrame of
      metrics.jsonl}``.
    path: the image to write.
    valid: also draw the validation -ELBO.
    ymax: upper y limit in nats (0: automatic).
  """
  fig, ax = plt.subplots(figsize=(7, 4.5))
  titles, seen = set(), {}
  for run in runs:
    cfg, df = run["config"], run["metrics"]
    name = cfg["estimator"]
    label = f"{name} (lr {cfg['learning_rate']:g})"
    alpha = 1.0 / (1 + seen.get(name, 0))
    seen[name] = seen.get(name, 0) + 1
    titles.add(f"{cfg['model']}, {cfg['dataset']} ({cfg['binarization']}), "
               f"batch {cfg['batch_size']}")
    curves = (("train_neg_elbo", "-", "train"), ("test_neg_elbo", "--", "test"))
    if valid:
      curves += (("valid_neg_elbo", ":", "valid"),)
    for column, style, kind in curves:
      if column not in df:
        continue
      rows = df[df[column].notna()]
      ax.plot(rows["step"], rows[column], style, color=color(name), lw=1.4,
              alpha=alpha, marker="o" if kind == "test" else None, ms=3,
              label=f"{label}, {kind}")
  ax.set_xlabel("iteration")
  ax.set_ylabel("-ELBO (nats)")
  if ymax:
    low = ax.get_ylim()[0]
    ax.set_ylim(low if np.isfinite(low) else None, ymax)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  ax.set_title("; ".join(sorted(titles)), fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_vae_panel(series: Sequence[Mapping[str, Any]], path: str, title: str,
                   points: Sequence[Mapping[str, Any]] = (),
                   ymax: float = 200.0) -> None:
  """One figure-2 panel: -ELBO against iteration, train solid, test dashed.

  Args:
    series: per line group ``{"label", "estimator", "alpha", "train": (steps,
      values), "test": (steps, values)}`` (medians over seeds, computed by the
      caller); the colour is the estimator's.
    path: the image to write.
    title: the panel's title.
    points: extra markers, each ``{"step", "value", "marker", "label"}`` (the
      authors' logged numbers, say).
    ymax: upper y limit in nats.
  """
  fig, ax = plt.subplots(figsize=(8, 5))
  for line in series:
    col = color(line["estimator"])
    for kind, style in (("train", "-"), ("test", "--")):
      steps, values = line.get(kind, ((), ()))
      if len(steps):
        ax.plot(steps, values, style, color=col, alpha=line.get("alpha", 1.0),
                lw=1.3, label=f"{line['label']} ({kind})")
  for point in points:
    ax.plot([point["step"]], [point["value"]], point["marker"], color="black",
            ms=9, mfc="none" if point.get("hollow") else None,
            label=point.get("label"))
  ax.set_xlabel("iteration")
  ax.set_ylabel("-ELBO (nats)")
  ax.set_ylim(top=ymax)
  ax.grid(alpha=0.3)
  ax.set_title(title, fontsize=10)
  ax.legend(fontsize=6.5, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=110, metadata={"Software": None})
  plt.close(fig)
