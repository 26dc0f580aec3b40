"""``python -m mt_dnn.export``: a trained run as Hugging Face model folders, usable with no code of ours.

    python -m mt_dnn.export --run_dir RUN [--checkpoint best|latest|PATH] [--task NAME] --out DIR

writes DIR with ``model.safetensors``, a ``config.json`` whose ``id2label``/``label2id``
come from the task definition, and the run's tokenizer, so that
``AutoModelForSequenceClassification.from_pretrained(DIR)`` and
``pipeline("text-classification", model=DIR)`` load it as they load any model. The pooler and
the task's head are mapped onto the architecture's own classification head
(:mod:`mt_dnn.hf_mapping`); an encoder whose head cannot be mapped exactly is refused with one
line. A multi-task run exported without ``--task`` gets one folder per task, DIR/<task>/.

Every folder is built beside its final name, loaded back with ``from_pretrained`` and checked
against our own logits before it is renamed into place, so DIR is never half-written; Ctrl-C
or SIGTERM removes the folder being built and exits 130/143 with one line.

Only what we wrote is replaced: ``--overwrite`` replaces a folder only when it carries the
export's marker (:data:`PROVENANCE_FILE`, written into every export folder), and ``--out``
is refused when it is, holds or lies inside ``--run_dir`` or any other run folder.
``train.py`` calls :func:`export_after_training` at the end of every finished single-task run
(RUN/hf_model/, unless ``--no_export``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

from mt_dnn.errors import ConfigError, UserError
from mt_dnn.hf_mapping import build_classifier, probe_logits
from mt_dnn.run_files import atomic_write_json
from mt_dnn.run_model import RunModel, load_run_model

logger = logging.getLogger(__name__)

RUN_EXPORT_FOLDER = "hf_model"
PROVENANCE_FILE = "mtdnn_export.json"  # which run, checkpoint and task a folder holds (transformers ignores it)


def _provenance(*, run: RunModel, task_name: str, architecture: str) -> dict:
    manifest = run.checkpoint.with_suffix(".json")
    try:
        sha256 = json.loads(manifest.read_text(encoding="utf-8")).get("sha256")
    except (OSError, ValueError, AttributeError):
        sha256 = None
    return {"run_dir": run.config.get("output_dir"), "checkpoint": str(run.checkpoint),
            "checkpoint_sha256": sha256, "task": task_name, "architecture": architecture,
            "labels": list(run.tasks[task_name].labels)}


def check_out_folder(out: Path, *, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"--out {out}: the folder exists and is not empty; pass --overwrite to replace it")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_out_location(out: Path, *, run_dir: Path) -> None:
    """``--out`` is none of the run's files: not the run folder, not inside it or any run folder, not above one."""
    from mt_dnn.run_folder import is_run_folder

    where, run = out.resolve(), run_dir.resolve()
    if _inside(where, run):
        what = "is" if where == run else "lies inside"
        raise ConfigError(f"--out {out}: {what} the run folder {run_dir}; give a folder outside it")
    if _inside(run, where):
        raise ConfigError(f"--out {out}: holds the run folder {run_dir}; give a folder outside it")
    for folder in (where, *where.parents):
        if is_run_folder(folder):
            raise ConfigError(f"--out {out}: lies inside the run folder {folder}; give a folder outside it")
    if (where / PROVENANCE_FILE).is_file():  # an export --overwrite may replace: no run folder may be inside
        nested = next((p.parent for p in where.rglob("run_config.json") if is_run_folder(p.parent)), None)
        if nested is not None:
            raise ConfigError(f"--out {out}: holds the run folder {nested}; give a folder outside it")


def check_replaceable(out: Path) -> None:
    """An existing non-empty ``out`` is replaced only when it is an export of ours (carries our marker)."""
    if out.is_dir() and any(out.iterdir()) and not (out / PROVENANCE_FILE).is_file():
        raise ConfigError(f"--out {out}: --overwrite replaces only a folder mt_dnn.export wrote (with "
                          f"{PROVENANCE_FILE}), and this one has none; give another --out")


def _replace_folder(built: Path, out: Path) -> None:
    """Put ``built`` at ``out``; an old ``out`` is moved aside first and deleted only afterwards."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    moved = False
    try:
        if out.exists():
            os.replace(out, old)
            moved = True
        os.replace(built, out)
    except BaseException:  # an interrupt between the two renames: the old folder goes back
        if moved and not out.exists():
            os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def export_task(*, run: RunModel, task_name: str, out: Path) -> Path:
    """Write ``task_name``'s Hugging Face folder to ``out`` (replacing it); returns ``out``."""
    import torch
    from transformers import AutoModelForSequenceClassification

    hf_model = build_classifier(model=run.model, task=run.tasks[task_name], tokenizer=run.tokenizer)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    built = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(built, ignore_errors=True)
    try:
        hf_model.save_pretrained(built)
        run.tokenizer.save_pretrained(built)
        if not (built / "model.safetensors").is_file():
            raise UserError(f"--out {out}: transformers wrote no model.safetensors (files: "
                            f"{', '.join(sorted(p.name for p in built.iterdir()))})")
        atomic_write_json(built / PROVENANCE_FILE, _provenance(run=run, task_name=task_name,
                                                               architecture=type(hf_model).__name__))
        # The check a user's from_pretrained would do, before the folder is given its name.
        reloaded = AutoModelForSequenceClassification.from_pretrained(built).eval()
        ours, theirs = probe_logits(model=run.model, task_name=task_name, hf_model=reloaded, tokenizer=run.tokenizer)
        if not torch.allclose(ours, theirs, atol=1e-5, rtol=0):
            raise UserError(f"--out {out}: the folder written does not reload to the same logits "
                            f"(max difference {float((ours - theirs).abs().max()):.3g})")
        _replace_folder(built, out)
    finally:
        shutil.rmtree(built, ignore_errors=True)
    return out


def export_run(*, run_dir: Path, out: Path, checkpoint: str = "best", task: str | None = None,
               overwrite: bool = False) -> dict[str, Path]:
    """Export one task (``task``, or the run's only one) to ``out``, or every task to ``out/<task>``."""
    out = Path(out)
    check_out_folder(out, overwrite=overwrite)
    run = load_run_model(run_dir=Path(run_dir), checkpoint=checkpoint)
    if task is not None and task not in run.tasks:
        raise ConfigError(f"--task: expected one of {', '.join(run.tasks)}, got {task!r}")
    if task is not None or len(run.tasks) == 1:
        name = task or next(iter(run.tasks))
        targets = {name: out}
    else:
        targets = {name: out / name for name in run.tasks}
    for target in targets.values():  # every folder checked before the first is replaced
        check_replaceable(target)
    return {name: export_task(run=run, task_name=name, out=target) for name, target in targets.items()}


def _already_exported(out: Path, *, checkpoint: Path) -> bool:
    """``out`` holds an export of exactly this checkpoint file (same SHA-256 in its manifest)."""
    try:
        done = json.loads((out / PROVENANCE_FILE).read_text(encoding="utf-8"))
        manifest = json.loads(checkpoint.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(done, dict) and isinstance(manifest, dict) and bool(manifest.get("sha256")) \
        and done.get("checkpoint_sha256") == manifest.get("sha256") and (out / "model.safetensors").is_file()


def export_after_training(*, setup, summary: dict) -> Path | None:
    """RUN/hf_model/ at the end of a finished single-task run (rank 0; best.pt, else the newest checkpoint).

    An export problem is a warning, not a failed run: the training result is in the folder
    either way, and ``python -m mt_dnn.export`` can be run on it later.
    """
    config = setup.config
    if not summary.get("finished") or getattr(config, "no_export", False) or not setup.dist.is_main:
        return None
    trained = sorted({item.split(":")[0] for item in config.train_datasets.split(",") if item})
    if len(trained) != 1:
        return None
    run_dir = Path(setup.output_dir)
    out = run_dir / RUN_EXPORT_FOLDER
    which = "best" if (run_dir / "checkpoints" / "best.pt").is_file() else "latest"
    try:
        from mt_dnn.run_model import checkpoint_path

        if _already_exported(out, checkpoint=checkpoint_path(run_dir=run_dir, which=which)):
            return out
        export_run(run_dir=run_dir, out=out, checkpoint=which, overwrite=True)
    except (UserError, OSError) as exc:
        logger.warning("%s not written: %s (python -m mt_dnn.export --run_dir %s --out DIR)", out, exc, run_dir)
        return None
    logger.info("exported the %s checkpoint as a Hugging Face model folder: %s", which, out)
    return out


def build_parser() -> argparse.ArgumentParser:
    from mt_dnn.cli_train import OneLineErrorParser

    parser = OneLineErrorParser(prog="python -m mt_dnn.export", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run_dir", required=True, help="a training run's --output_dir")
    parser.add_argument("--checkpoint", default="best", help="'best', 'latest', or a path to a checkpoint file")
    parser.add_argument("--task", default=None,
                        help="the task head to export (default: the run's only task; a multi-task run exports "
                             "every task to OUT/<task>/)")
    parser.add_argument("--out", required=True, help="the Hugging Face model folder to write")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out if it is an earlier export (a folder with mtdnn_export.json)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    return parser


class Interrupted(BaseException):
    """SIGTERM, raised where the process is, so that the folder being built is removed as on Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_interrupted(signum, frame) -> None:
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        args = build_parser().parse_args(argv)
        check_out_location(Path(args.out), run_dir=Path(args.run_dir))
        written = export_run(run_dir=Path(args.run_dir), out=Path(args.out), checkpoint=args.checkpoint,
                             task=args.task, overwrite=args.overwrite)
    except (KeyboardInterrupt, Interrupted) as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        print(f"error: interrupted by {signal.Signals(signum).name}; --out was left as it was", file=sys.stderr)
        return 128 + signum
    except UserError as exc:
        if "--debug" in argv:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if "--debug" in argv:
            raise
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(json.dumps({"exported": {task: str(path) for task, path in written.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
