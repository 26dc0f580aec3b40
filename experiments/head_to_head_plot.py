"""The head-to-head's plot: accuracy (clean and substituted) against seconds per update.

One point per method with its seed spread as error bars, chance and majority level drawn as
lines, and an accuracy axis that starts at zero, so that a one-point difference looks like
one point.
"""

from __future__ import annotations

import statistics
from pathlib import Path

KINDS = (("clean", "o", "test accuracy"), ("wordnet", "s", "WordNet-substituted"),
         ("neighbour", "^", "neighbour-substituted (15%)"))


def _mean_sd(values) -> tuple[float, float]:
    values = list(values)
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def plot_head_to_head(*, methods: dict, labels: dict, majority: float | None, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 6), dpi=120)
    colours = plt.get_cmap("tab20").colors
    for index, (name, runs) in enumerate(methods.items()):
        if not runs.seconds_per_update:
            continue
        x = statistics.median(runs.seconds_per_update.values())
        for kind, marker, _ in KINDS:
            values = runs.clean if kind == "clean" else runs.robust.get(kind, {})
            if not values:
                continue
            mean, sd = _mean_sd(values.values())
            axis.errorbar([x], [mean], yerr=[sd], fmt=marker, color=colours[index % len(colours)], capsize=3,
                          label=labels.get(name, name) if kind == "clean" else None, alpha=1.0 if kind == "clean" else 0.6)
    axis.axhline(100 / 3, color="grey", linestyle=":", label="chance (33.3%)")
    if majority:
        axis.axhline(majority, color="black", linestyle="--", linewidth=0.8, label=f"majority class ({majority:.1f}%)")
    axis.set_ylim(0, 100)
    axis.set_xlim(left=0)
    axis.set_xlabel("seconds per update (median over seeds; 2 shared CPU cores)")
    axis.set_ylabel("accuracy on SNLI test pairs (%)")
    axis.set_title("Head-to-head, MiniLM on SNLI (o clean, s WordNet-substituted, ^ neighbour-substituted)")
    axis.legend(fontsize=7, loc="lower right", ncol=2)
    axis.grid(alpha=0.3)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_suffix(".tmp.png")
    figure.savefig(temporary, bbox_inches="tight")
    plt.close(figure)
    temporary.replace(out)
    return out
