"""J&F against speed: one labelled point per run, the failed ones named under the plot."""

from __future__ import annotations

import textwrap
from pathlib import Path

from matplotlib.figure import Figure

from cvos.files import atomic_path
from cvos.reporting.tables import Comparison


def plot_comparison(comparison: Comparison, path: Path, title: str) -> None:
    """J&F against frames per second, one labelled point per successful run; failed named below."""
    done = [run for run in comparison.runs if run.scores is not None]
    failed = [run.name for run in comparison.runs if run.scores is None]
    fig = Figure(figsize=(8, 5.5), dpi=120)  # no pyplot: no global backend state, renders with Agg
    ax = fig.add_subplot()
    for run in done:
        ax.scatter(run.scores.fps, run.scores.jf, s=36, zorder=3)
        ax.annotate(
            comparison.label(run),
            (run.scores.fps, run.scores.jf),
            xytext=(5, 5),
            textcoords="offset points",
            fontsize=8,
        )
    fps = [run.scores.fps for run in done]
    if fps and min(fps) > 0 and max(fps) / min(fps) >= 10:
        ax.set_xscale("log")
    if not done:
        ax.text(0.5, 0.5, "no successful runs", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlabel("frames per second")
    ax.set_ylabel("J&F (validation)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if failed:
        note = textwrap.fill("failed, not plotted: " + ", ".join(failed), width=110)
        fig.subplots_adjust(bottom=0.16 + 0.03 * note.count("\n"))
        fig.text(0.01, 0.01, note, fontsize=7, va="bottom")
    with atomic_path(path) as temporary:
        fig.savefig(temporary, format="png", bbox_inches="tight")
