"""Synthetic run folders written exactly as docs/run_format.md says, for the tests of the readers.

experiments.summarize, experiments.plots and the tables read RUN/run_config.json,
RUN/metrics.jsonl and RUN/run_summary.json; these tests write such folders with chosen
accuracies, timings and perturbation statistics, so that every expected figure is known.
"""

from __future__ import annotations

import json
from pathlib import Path

ANLI_SIZES = {"r1": 1000, "r2": 1000, "r3": 1200}  # examples per round's dev (and test) set
H200 = "NVIDIA H200"


def pooled_accuracy(values: tuple[float, float, float]) -> float:
    """The accuracy over A1+A2+A3 from the rounds' accuracies (weighted by their sizes)."""
    return sum(v * n for v, n in zip(values, ANLI_SIZES.values())) / sum(ANLI_SIZES.values())


def write_json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value), encoding="utf-8")


def write_run(folder: Path, *, model: str, perturbation: str, seed: int, dev: dict, test: dict,
              options: dict | None = None, pooled: bool = True, finished: bool | None = True,
              device_name: str = H200, seconds_per_update: float = 0.2, passes=(2.0, 1.0),
              shares=None, logged=None, torn_tail: bool = False, best_epoch: int = 2,
              updates_per_epoch: int = 100) -> Path:
    """A run folder: ``dev``/``test`` map each epoch to its (r1, r2, r3) accuracies; ``shares`` (one
    (changed_share, noise_share) per epoch) and ``logged`` (MT-DNN's logged size per epoch) go
    into the train_epoch records' perturbation statistics; ``pooled`` adds eval_pooled records
    (without them the reader must pool the splits itself); ``finished=None`` writes no
    run_summary.json and ``torn_tail`` half a last metrics line, as a killed run leaves them."""
    write_json(folder / "run_config.json", {
        "model": model, "perturbation": perturbation, "perturbation_options": options or {}, "seed": seed,
        "epochs": len(dev), "batch_size": 32, "learning_rate": 2e-5, "train_datasets": ["anli"],
        "test_datasets": [f"anli:{s}_{r}" for r in ("dev", "test") for s in ANLI_SIZES],
        "versions": {"torch": "x", "transformers": "y"}, "device": "cuda", "device_name": device_name,
        "world_size": 1,
    })
    lines = []
    step = 0
    for epoch in sorted(dev):
        step += updates_per_epoch
        record = {"kind": "train_epoch", "epoch": epoch, "global_step": step, "train_loss": 0.9,
                  "updates": updates_per_epoch, "seconds": updates_per_epoch * seconds_per_update, "seconds_per_update": seconds_per_update,
                  "forward_passes_per_update": passes[0], "backward_passes_per_update": passes[1]}
        if shares is not None:
            changed, noise = shares[epoch - 1]
            record["perturbation"] = {"changed_share": changed, "noise_share": noise, "adv_loss": 0.01,
                                      "skipped_steps": 0}
            if logged is not None:
                record["perturbation"]["mtdnn_logged_share"] = logged[epoch - 1]
        lines.append(record)
        for role, table in (("dev", dev), ("test", test)):
            for (split, size), accuracy in zip(ANLI_SIZES.items(), table[epoch]):
                lines.append({"kind": "eval", "epoch": epoch, "global_step": step, "task": "anli",
                              "split": f"{split}_{role}", "role": role, "accuracy": accuracy, "loss": 1.0,
                              "examples": size, "wall_time_s": 1.0})
            if pooled:
                lines.append({"kind": "eval_pooled", "epoch": epoch, "global_step": step, "task": "anli",
                              "role": role, "splits": [f"{s}_{role}" for s in ANLI_SIZES],
                              "accuracy": pooled_accuracy(table[epoch]), "examples": sum(ANLI_SIZES.values())})
    text = "".join(json.dumps(line) + "\n" for line in lines)
    if torn_tail:
        text += '{"kind": "eval", "epoch": 4, "acc'
    (folder / "metrics.jsonl").write_text(text, encoding="utf-8")
    if finished is not None:
        write_json(folder / "run_summary.json", {
            "finished": finished, "epochs": len(dev), "updates": updates_per_epoch * len(dev), "wall_time_s": 1000 * seconds_per_update,
            "train_seconds": 300 * seconds_per_update, "seconds_per_update": seconds_per_update,
            "forward_passes_per_update": passes[0], "backward_passes_per_update": passes[1],
            "best_epoch": best_epoch, "best_dev_accuracy": 0.49,
        })
    return folder
