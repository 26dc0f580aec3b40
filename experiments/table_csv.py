"""The CSV files of a Summary, and the atomic text writer every table and report file goes through.

One job: files. write_csv writes accuracy/significance/time/perturbation/missing/runs CSVs
(an empty field means "not available"); write_text_atomic writes any text file so that a
crash never leaves half of one.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from experiments import paper_values
from experiments.seed_statistics import Summary
from noise_training.atomic_files import atomic_write_bytes


def write_text_atomic(path: Path, text: str) -> Path:
    """Write via a temporary file in the same folder, fsync, rename: never half a file."""
    atomic_write_bytes(Path(path), text.encode("utf-8"))
    return Path(path)


def _csv_text(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if value is None else value for value in row])
    return buffer.getvalue()


def write_csv(*, summary: Summary, out_dir: Path | str) -> list[Path]:
    """accuracy/significance/time/perturbation/missing/runs CSVs; empty field = not available."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables: dict[str, tuple[list[str], list[list]]] = {}
    accuracy_rows = []
    for model in summary.models:
        for method in summary.methods[model]:
            for role in paper_values.ROLES:
                for name in paper_values.ROUNDS:
                    cell = summary.cells[(model, method, role, name)]
                    accuracy_rows.append([
                        model, method, role, name, round(cell.mean, 4),
                        None if cell.std is None else round(cell.std, 4), cell.n,
                        " ".join(map(str, cell.seeds)),
                        paper_values.paper_accuracy(model=model, method=method, role=role, round_name=name),
                    ])
    tables["accuracy.csv"] = (["model", "method", "role", "round", "mean", "std", "n", "seeds", "paper"], accuracy_rows)
    tables["significance.csv"] = (
        ["model", "method", "reference", "difference", "test", "p_value", "detail"],
        [[c.model, c.method, c.reference, None if c.difference is None else round(c.difference, 4), c.test,
          c.p_value, c.detail] for c in summary.comparisons],
    )
    tables["time.csv"] = (
        ["model", "device_name", "method", "n", "seconds_per_update", "wall_time_s", "forward_passes_per_update",
         "backward_passes_per_update", "ratio_to_none", "ratio_to_smart_mtdnn", "ratio_to_smart"],
        [[r.model, r.device_name, r.method, r.n, r.seconds_per_update, r.wall_time_s, r.forward_passes_per_update,
          r.backward_passes_per_update, r.ratio_to_none, r.ratio_to_smart_mtdnn, r.ratio_to_smart]
         for r in summary.time_rows],
    )
    tables["perturbation.csv"] = (
        ["model", "method", "n", "changed_share_percent", "paper_changed_percent", "paper_changed_kind",
         "space", "noise_share_percent", "mtdnn_logged_share_percent", "paper_noise_percent", "paper_noise_measure"],
        [[r.model, r.method, r.n, r.changed_share_percent, r.paper_changed_percent, r.paper_changed_kind,
          r.space, r.noise_share_percent, r.mtdnn_logged_share_percent, r.paper_noise_percent, r.paper_noise_measure]
         for r in summary.perturbation_rows],
    )
    tables["missing.csv"] = (
        ["model", "method", "seed", "path", "reason"],
        [[m.model, m.method, m.seed, None if m.path is None else str(m.path), m.reason] for m in summary.missing],
    )
    tables["runs.csv"] = (
        ["model", "method", "seed", "reported_epoch", "dev_all", "test_all", "device_name", "path"],
        [[r.model, r.method, r.seed, r.reported_epoch, r.accuracy[("dev", "All")], r.accuracy[("test", "All")],
          r.device_name, str(r.path)] for r in summary.runs],
    )
    written = []
    for name, (header, rows) in tables.items():
        path = out_dir / name
        write_text_atomic(path, _csv_text(header, rows))
        written.append(path)
    return written
