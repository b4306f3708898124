"""Every figure of the project, in the style of the ARSM poster.

:func:`plot_toy` (figure 1, called by the toy task), :func:`plot_rl`
(figure 3, called by the RL task), :func:`plot_vae` (figure 2, called by
``experiments/vae_figure.py`` on finished or running VAE workdirs), and from
collected runs (called by ``scripts/make_results.py``)
:func:`plot_vae_panel` (figure 2, seed medians), :func:`plot_rl_groups`
(figure 3, several runs and options per learner, one row of panels per step
cap; :func:`plot_rl_panels` for one row) and :func:`plot_rl_seeds`
(per-seed RL diagnostics).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence
import zlib

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
    "reinforce_wor": "slategray",
    "unordered_set": "darkgoldenrod",
    "indecater": "darkgreen",
    "gumbel_rao": "midnightblue",
}


# Further runs of one learner (other options) in one figure, in order.
VARIANT_STYLES = (("darkorange", "--"), ("darkviolet", "-."),
                  ("saddlebrown", ":"), ("deeppink", "--"),
                  ("olive", "-."), ("teal", ":"))


def variant_style(name: str, index: int) -> tuple[str, str]:
  """Colour and line style of the ``index``-th run of ``name`` in a figure:
  the estimator's own colour, solid, for the first, :data:`VARIANT_STYLES`
  after."""
  if index == 0:
    return color(name), "-"
  return VARIANT_STYLES[(index - 1) % len(VARIANT_STYLES)]


def color(name: str) -> str:
  if name in COLORS:
    return COLORS[name]
  # crc32, not hash(): str hashes change from one process to the next.
  palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  return palette[zlib.crc32(name.encode()) % len(palette)]


# The toy figure's log axis for the best category's probability stops here;
# smaller values (an estimator that abandoned the best category) are drawn on
# this floor, and the panel says so.
PROB_FLOOR = 1e-12


def plot_toy(curves: Mapping[str, Mapping[str, np.ndarray]], config,
             optimum: float, path: str) -> None:
  """Expected reward, probability of the best category and gradient variance."""
  fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
  for name, c in curves.items():
    steps = np.arange(1, len(c["expected_reward"]) + 1)
    kw = dict(color=color(name), label=name, lw=1.3)
    axes[0].plot(steps, c["expected_reward"], **kw)
    axes[1].plot(steps, np.maximum(c["prob_last"], PROB_FLOOR), **kw)
    var = np.asarray(c["grad_variance"])
    var_steps = np.arange(len(var)) * config.variance_every
    if np.any(var > 0):
      axes[2].plot(var_steps, np.where(var > 0, var, np.nan), marker=".",
                   ms=3, **kw)
  axes[0].axhline(optimum, color="k", ls=":", lw=0.8)
  axes[0].set_title(f"expected reward (optimum {optimum:.4f})")
  axes[0].set_ylabel("E[f(z)]")
  axes[1].set_yscale("log")
  axes[1].set_title(r"$\sigma(\phi)_C$, probability of the best category"
                    f"\n(values below {PROB_FLOOR:.0e} drawn at "
                    f"{PROB_FLOOR:.0e}, the dotted line)", fontsize=10)
  axes[1].axhline(PROB_FLOOR, color="gray", ls=":", lw=0.8)
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
                   zoom_span: float = 30.0) -> None:
  """One figure-2 panel: -ELBO against iteration, train solid, test dashed.

  Two axes side by side: the whole range of every line (from its second
  point, past the first epochs' values near 200 nats and more), and a
  zoom on the best ``zoom_span`` nats where the strong estimators differ.
  One legend entry per line group, outside the axes.

  Args:
    series: per line group ``{"label", "estimator", "alpha", "train": (steps,
      values), "test": (steps, values)}`` (medians over seeds, computed by the
      caller); the colour is the estimator's.
    path: the image to write.
    title: the panel's title.
    points: extra markers, each ``{"step", "value", "marker", "label"}`` (the
      authors' logged numbers, say).
    zoom_span: height of the zoomed axes in nats, from just below the lowest
      value of any line.
  """
  fig, (full, zoom) = plt.subplots(1, 2, figsize=(15.5, 5.6))
  later, lowest = [], []
  for line in series:
    col = color(line["estimator"])
    for kind, style in (("train", "-"), ("test", "--")):
      steps, values = line.get(kind, ((), ()))
      if not len(steps):
        continue
      values = np.asarray(values, np.float64)
      later.extend(values[1:] if len(values) > 1 else values)
      lowest.append(values.min())
      for ax in (full, zoom):
        ax.plot(steps, values, style, color=col, alpha=line.get("alpha", 1.0),
                lw=1.3, label=line["label"] if (kind == "train"
                                               and ax is full) else None)
  for point in points:
    lowest.append(point["value"])
    for ax in (full, zoom):
      ax.plot([point["step"]], [point["value"]], point["marker"],
              color="black", ms=9, mfc="none" if point.get("hollow") else None,
              label=point.get("label") if ax is full else None)
  if later:
    bottom = float(np.floor(min(lowest))) - 1.0
    full.set_ylim(bottom, float(np.max(later)) + 5.0)
    zoom.set_ylim(bottom, bottom + zoom_span)
  for ax, name in ((full, "all lines"), (zoom, f"zoom: lowest "
                                         f"{zoom_span:g} nats")):
    ax.set_xlabel("iteration")
    ax.set_ylabel("-ELBO (nats)")
    ax.grid(alpha=0.3)
    ax.set_title(name, fontsize=9)
  full.plot([], [], "-", color="gray", label="solid: train (epoch mean)")
  full.plot([], [], "--", color="gray", label="dashed: test")
  fig.suptitle(title, fontsize=10)
  fig.legend(loc="center left", bbox_to_anchor=(0.72, 0.5), fontsize=7,
             frameon=False)
  fig.tight_layout(rect=(0, 0, 0.72, 0.96))
  # "tight" grows the image to hold the longest legend label.
  fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
  plt.close(fig)


def _median_band(ax, x, values, col, style="-", label=None, band=True):
  """Median over the seed axis of ``values [N, S]``, 10th-90th band."""
  values = np.asarray(values, np.float64)
  ax.plot(x, np.median(values, axis=1), style, color=col, lw=1.4,
          label=label)
  if band:
    ax.fill_between(x, np.percentile(values, 10, axis=1),
                    np.percentile(values, 90, axis=1), color=col, alpha=0.15,
                    lw=0)


def plot_rl_panels(series: Sequence[Mapping[str, Any]], path: str, title: str,
                   threshold: float,
                   log_variance_floor: float = float(np.log(1e-30))) -> None:
  """Figure 3 of one group of runs (:func:`plot_rl_groups` with one row)."""
  plot_rl_groups([{"title": "", "series": series}], path, title, threshold,
                 log_variance_floor)


def plot_rl_groups(groups: Sequence[Mapping[str, Any]], path: str, title: str,
                   threshold: float,
                   log_variance_floor: float = float(np.log(1e-30))) -> None:
  """Figure 3 from collected runs, one row of panels per group.

  A group holds runs that share an axis (the figure's caller puts runs with
  different episode step caps in different groups: their rewards are on
  different scales). Its panels: training reward, test reward and log
  gradient variance, each the median over seeds and (rewards) the
  10th-90th percentile band, one colour per (learner, options)
  (:func:`variant_style`); a panel no run of the group has data for (no
  test episodes, no variance measurements) is left out, not drawn empty.
  Each row has its own legend.

  Args:
    groups: per row ``{"title", "series"}``, ``series`` per line
      ``{"label", "learner", "variant" (index among the lines of that
      learner in the figure), "moving_average" [E, S],
      "test_moving_average" [E, S] or None, "log_grad_variance" [M, S],
      "variance_episode" [M]}``.
    path: the image to write.
    title: the figure's title.
    threshold: the solved threshold, drawn dotted on the reward panels.
    log_variance_floor: the log variance of an exactly constant estimate.
  """
  groups = [g for g in groups if g["series"]]
  layouts = []
  for group in groups:
    panels = ["train"]
    if any(s.get("test_moving_average") is not None for s in group["series"]):
      panels.append("test")
    if any(np.asarray(s["log_grad_variance"]).size for s in group["series"]):
      panels.append("variance")
    layouts.append(panels)
  ncols = max((len(p) for p in layouts), default=1)
  legend_rows = [(len(g["series"]) + 2) // 3 for g in groups]
  heights = [4.4 + 0.2 * n + (0.3 if g["title"] else 0.0)
             for g, n in zip(groups, legend_rows)]
  heights[0] += 0.3                           # the figure's title
  fig = plt.figure(figsize=(5.7 * ncols, sum(heights)))
  subfigs = (fig.subfigures(len(groups), 1, height_ratios=heights,
                            squeeze=False)[:, 0] if groups else [])
  for i, (subfig, group, panels, nleg) in enumerate(
      zip(subfigs, groups, layouts, legend_rows)):
    heading = "\n".join(filter(None, [title if i == 0 else "",
                                      group["title"]]))
    axes = subfig.subplots(1, ncols, squeeze=False)[0]
    for ax in axes[len(panels):]:
      ax.remove()                    # a row with fewer panels than another
    axes = dict(zip(panels, axes))
    for line in group["series"]:
      col, style = variant_style(line["learner"], line.get("variant", 0))
      ma = np.asarray(line["moving_average"])                 # [E, S]
      _median_band(axes["train"], np.arange(1, ma.shape[0] + 1), ma, col,
                   style, line["label"])
      test = line.get("test_moving_average")
      if test is not None:
        test = np.asarray(test)                                # [E, S]
        _median_band(axes["test"], np.arange(1, test.shape[0] + 1), test,
                     col, style, line["label"])
      lv = np.asarray(line["log_grad_variance"], np.float64)  # [M, S]
      if lv.size:
        _median_band(axes["variance"], np.asarray(line["variance_episode"]),
                     np.maximum(lv, log_variance_floor), col, style,
                     line["label"], band=False)
    axes["train"].set_title("training episodes")
    if "test" in axes:
      axes["test"].set_title(
          "one test episode after each update (the authors' score)")
    for name in ("train", "test"):
      if name in axes:
        axes[name].axhline(threshold, color="k", ls=":", lw=0.8)
        axes[name].set_ylabel("moving-average reward")
    if "variance" in axes:
      ax = axes["variance"]
      ax.set_title("log variance of the policy gradient (median)")
      ax.axhline(log_variance_floor, color="k", ls=":", lw=0.8)
      ax.set_ylabel(f"log variance (floor {log_variance_floor:.0f}: "
                    "exactly zero)")
    for ax in axes.values():
      ax.set_xlabel("episode")
      ax.grid(alpha=0.3)
    handles, labels = axes["train"].get_legend_handles_labels()
    if handles:
      subfig.legend(handles, labels, loc="lower center",
                    ncol=min(len(labels), 3), fontsize=8, frameon=False)
    if heading:
      subfig.suptitle(heading, fontsize=10)
    height = heights[i]
    subfig.subplots_adjust(
        left=0.06 if ncols > 1 else 0.12, right=0.98, wspace=0.25,
        top=1 - (0.4 + 0.2 * heading.count("\n") + 0.3 * bool(heading))
        / height,
        bottom=(0.5 + 0.2 * nleg) / height)
  if not groups:
    fig.suptitle(title, fontsize=10)
  fig.savefig(path, dpi=100, metadata={"Software": None})
  plt.close(fig)


def plot_rl_seeds(rows: Sequence[Mapping[str, Any]], path: str, title: str,
                  log_variance_floor: float = float(np.log(1e-30))) -> None:
  """Per-seed RL diagnostics, one row of panels per run.

  Columns: the policy's mean entropy, the fraction of steps whose pseudo
  action differs from the action (``eligible_fraction``), the log gradient
  variance and the number of episodes so far that ended before the step cap
  (on Acrobot: reached the goal), against episode; seeds that never solved
  in red, solved ones in blue.

  Args:
    rows: per run ``{"label", "entropy" [E, S], "eligible_fraction" [E, S],
      "log_grad_variance" [M, S], "variance_episode" [M], "solved" [S]
      booleans, "ended_early" [E, S] cumulative counts or None,
      "step_cap"}``.
    path: the image to write.
    title: the figure's title.
    log_variance_floor: the log variance of an exactly constant estimate.
  """
  fig, axes = plt.subplots(len(rows), 4, figsize=(19, 3.1 * len(rows) + 0.6),
                           squeeze=False)
  for ax_row, row in zip(axes, rows):
    entropy = np.asarray(row["entropy"])                     # [E, S]
    eligible = np.asarray(row["eligible_fraction"])          # [E, S]
    lv = np.maximum(np.asarray(row["log_grad_variance"], np.float64),
                    log_variance_floor)                      # [M, S]
    early = row.get("ended_early")                           # [E, S]
    x = np.arange(1, entropy.shape[0] + 1)
    xv = np.asarray(row["variance_episode"])
    for s, solved in enumerate(row["solved"]):
      # Opaque, not antialiased: hundreds of noisy lines stay a small PNG.
      kw = dict(color="tab:blue" if solved else "tab:red",
                lw=0.6 if solved else 0.9, antialiased=False)
      ax_row[0].plot(x, entropy[:, s], **kw)
      ax_row[1].plot(x, eligible[:, s], **kw)
      if lv.size:
        ax_row[2].plot(xv, lv[:, s], marker=".", ms=2, **kw)
      if early is not None:
        ax_row[3].plot(x, np.asarray(early)[:, s], **kw)
    num_failed = sum(not v for v in row["solved"])
    ax_row[0].set_title(f"{row['label']}\npolicy entropy "
                        f"({num_failed} seeds never solved)", fontsize=9)
    ax_row[0].set_ylabel("mean entropy (nats)")
    ax_row[1].set_title("fraction of steps with a differing pseudo action",
                        fontsize=9)
    ax_row[1].set_ylim(-0.03, 1.03)
    ax_row[2].set_title("log variance of the policy gradient", fontsize=9)
    ax_row[2].axhline(log_variance_floor, color="k", ls=":", lw=0.8)
    ax_row[3].set_title(f"episodes so far that ended before the "
                        f"{row.get('step_cap')}-step cap", fontsize=9)
    for ax in ax_row:
      ax.grid(alpha=0.3)
  for ax in axes[-1]:
    ax.set_xlabel("episode")
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=80, metadata={"Software": None})
  plt.close(fig)
