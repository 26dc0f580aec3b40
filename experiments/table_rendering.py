"""The Markdown report of a Summary: accuracy tables in the paper's layout, then the rest.

One job: text. Per model, the accuracy table (mean ± std over seeds, the paper's value in
parentheses), then significance, training time, perturbation size, missing runs and notes.
Two SMARTs appear everywhere: "+SMART" is ``smart_mtdnn`` (MT-DNN's code, what the paper ran,
so the paper's values sit beside it) and "+SMART (corrected)" is ``smart``; each table says so.
The numbers come from experiments.seed_statistics; nothing is computed here.
"""

from __future__ import annotations

from experiments import paper_values
from experiments.run_loading import parse_method
from experiments.seed_statistics import REFERENCES, Summary


def method_label(*, method: str) -> str:
    base, _ = parse_method(method=method)
    label = paper_values.METHOD_LABELS.get(base, f"+{base}")
    return label + method[len(base):]


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _fmt_p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _fmt_percent(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3g}" if value < 1 else f"{value:.1f}"


def _accuracy_table(summary: Summary, model: str) -> list[str]:
    label = paper_values.MODEL_LABELS.get(model)
    lines = [f"## {model}" + (f" ({label})" if label else ""), ""]
    headers = [f"{role} {name}" for role in paper_values.ROLES for name in paper_values.ROUNDS]
    lines.append("| method | n | " + " | ".join(headers) + " |")
    lines.append("|---|---|" + "---|" * len(headers))
    for method in summary.methods[model]:
        cells = []
        for role in paper_values.ROLES:
            for name in paper_values.ROUNDS:
                cell = summary.cells[(model, method, role, name)]
                text = f"{cell.mean:.2f} ± {_fmt(cell.std)}"
                paper = paper_values.paper_accuracy(model=model, method=method, role=role, round_name=name)
                if paper is not None:
                    text += f" ({paper:.1f})"
                cells.append(text)
        n = summary.cells[(model, method, "test", "All")].n
        lines.append(f"| {method_label(method=method)} | {n} | " + " | ".join(cells) + " |")
    return lines + [""]


def render_markdown(*, summary: Summary) -> str:
    """The whole report: accuracy tables in the paper's layout, significance, time, noise, gaps."""
    lines = [
        "# ANLI accuracy (%)",
        "",
        "Cells: mean ± sample std (ddof=1; n/a with one seed) over seeds, the paper's value (mean of "
        f"{paper_values.SEEDS_PER_CELL} seeds) in parentheses. Each run is reported at the epoch with the best "
        "pooled dev accuracy (earliest on ties); test never takes part in that choice. All = pooled over "
        "the rounds' examples.",
        "",
        paper_values.SMART_LEGEND,
        "",
    ]
    if not summary.runs:
        lines += ["No finished runs.", ""]
    for model in summary.models:
        if summary.methods[model]:
            lines += _accuracy_table(summary, model)

    lines += [
        "## Significance (test All)",
        "",
        "Δ = mean(method) − mean(reference) in points. Test over seeds: paired t-test on the seeds both "
        "have when ≥ 2, else Welch's t-test when each has ≥ 2, else n/a.",
        "",
        "| model | method | " + " | ".join(f"Δ vs {method_label(method=r)} | test | p" for r in REFERENCES) + " |",
        "|---|---|" + "---|---|---|" * len(REFERENCES),
    ]
    by_key = {(c.model, c.method, c.reference): c for c in summary.comparisons}
    for model in summary.models:
        for method in summary.methods[model]:
            parts = []
            for reference in REFERENCES:
                c = by_key.get((model, method, reference))
                if c is None:
                    parts += ["—", "—", "—"]
                else:
                    diff = "n/a" if c.difference is None else f"{c.difference:+.2f}"
                    parts += [diff, f"{c.test} ({c.detail})", _fmt_p(c.p_value)]
            lines.append(f"| {model} | {method_label(method=method)} | " + " | ".join(parts) + " |")
    lines.append("")

    lines += [
        "## Training time",
        "",
        "Ratios are seconds per update divided by fine-tuning's (× FT), +SMART's (× SMART, MT-DNN's code, "
        "the paper's) and +SMART (corrected)'s (× SMART corr.), comparing only runs on the same device. Paper: "
        f"the proposed methods take ≈{paper_values.TIME_SAVING_VS_SMART_PERCENT:.0f}% less training time than "
        "SMART (the one it ran); passes per update fine-tuning 1+1, SMART 3+2, proposed 2+1.",
        "",
        "| model | device | method | n | s/update | wall time (s) | fwd/update | bwd/update | paper fwd+bwd | × FT "
        "| × SMART | × SMART corr. |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary.time_rows:
        paper = paper_values.PASSES_PER_UPDATE.get(row.method)
        paper_text = f"{paper[0]:.0f}+{paper[1]:.0f}" if paper else "—"
        lines.append(
            f"| {row.model} | {row.device_name} | {method_label(method=row.method)} | {row.n} | "
            f"{_fmt(row.seconds_per_update, 4)} | {_fmt(row.wall_time_s, 1)} | {_fmt(row.forward_passes_per_update, 1)} | "
            f"{_fmt(row.backward_passes_per_update, 1)} | {paper_text} | {_fmt(row.ratio_to_none, 3)} | "
            f"{_fmt(row.ratio_to_smart_mtdnn, 3)} | {_fmt(row.ratio_to_smart, 3)} |"
        )
    lines.append("")

    lines += [
        "## Perturbation size",
        "",
        "Epoch means from the train_epoch records, averaged over seeds: share of perturbable tokens changed, "
        "and ‖perturbation‖₂ / ‖what it is added to‖₂ over changed tokens (percent): the token embedding, "
        "or for +SMART (MT-DNN's code) the embedding block's output. MT-DNN-logged = the size MT-DNN's "
        "SmartPerturbation logs (mean |η·g / (max|noise + η·g| + ε)| over mean |embedding output|), not the "
        "noise it adds; the paper's SMART ≈ 0.003% is set beside that figure, the nearer of the two.",
        "",
        "| model | method | n | changed tokens % | paper | added to | applied noise / input % "
        "| MT-DNN-logged % | paper (compared with) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary.perturbation_rows:
        paper_changed = "—" if row.paper_changed_percent is None else f"{row.paper_changed_percent:.0f} ({row.paper_changed_kind})"
        paper_noise = _fmt_percent(row.paper_noise_percent)
        if row.paper_noise_percent is not None and row.paper_noise_measure:
            paper_noise += " (MT-DNN-logged)" if row.paper_noise_measure == "mtdnn_logged" else " (applied)"
        lines.append(
            f"| {row.model} | {method_label(method=row.method)} | {row.n} | {_fmt_percent(row.changed_share_percent)} | "
            f"{paper_changed} | {row.space} | {_fmt_percent(row.noise_share_percent)} | "
            f"{_fmt_percent(row.mtdnn_logged_share_percent)} | {paper_noise} |"
        )
    lines.append("")

    lines += ["## Missing or unfinished runs", ""]
    if not summary.missing:
        lines.append("None.")
    for item in summary.missing:
        who = item.model + (f" / {method_label(method=item.method)}" if item.method else "")
        seed = f" seed {item.seed}" if item.seed is not None else ""
        where = f" ({item.path})" if item.path is not None else ""
        lines.append(f"- {who}{seed}: {item.reason}{where}")
    lines.append("")
    if summary.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in summary.notes] + [""]
    return "\n".join(lines)
