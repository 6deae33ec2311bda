"""A PNG per class for the asset's metadata: the PR curve, and P/R/F1 against the threshold, with today's
and the suggested threshold marked. Matplotlib's Agg backend (no display); kept small (the metadata is
stored in the event log) and inlined as a base64 data URI, which Dagster's markdown renders."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend is chosen first

from samantics_dagster.core.quality.report import ClassQuality  # noqa: E402


def class_png(quality: ClassQuality, group: str, dpi: int = 60) -> bytes:
    curve = quality.curves[group]
    fig, (pr, thr) = plt.subplots(1, 2, figsize=(7.0, 2.8), dpi=dpi)
    pr.plot(curve.recall, curve.precision, color="tab:blue")
    for t, colour, label in ((quality.current, "tab:red", "current"), (quality.suggested, "tab:green", "suggested")):
        if t is None:
            continue
        at = curve.at(t)
        pr.scatter([at["recall"]], [at["precision"]], color=colour, zorder=3, label=f"{label} {t:.2f}")
        thr.axvline(t, color=colour, linestyle="--", linewidth=1)
    pr.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02),
           title=f"{quality.name} ({group}: {curve.reviewed} reviewed, {curve.frames} frames)")
    pr.title.set_fontsize(8)
    pr.legend(fontsize=7, loc="lower left")
    for values, label in ((curve.precision, "precision"), (curve.recall, "recall"), (curve.f1, "F1")):
        thr.plot(curve.grid, values, label=label)
    thr.set(xlabel="threshold", ylim=(0, 1.02))
    thr.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def plots_markdown(classes: list[ClassQuality], group: str) -> str:
    """Markdown with one inline PNG per class that has ``group`` frames."""
    parts = []
    for q in classes:
        if group in q.curves:
            data = base64.b64encode(class_png(q, group)).decode()
            parts.append(f"**{q.name}**\n\n![{q.name}](data:image/png;base64,{data})")
    return "\n\n".join(parts) if parts else f"no reviewed {group} frames"
