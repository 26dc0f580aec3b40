"""Figure 2 of the paper: where both SMARTs' perturbations and 1-1's noise put "she", "he" and "you".

For every occurrence of the words in real sentences (ANLI dev/test hypotheses when the files
are at hand, else a built-in list), the project's own providers, through a StepContext exactly
as in training (experiments.figure2_points), perturb the batch. Three panels, each in one space:

1. token embeddings: clean, + the corrected ``smart``'s δ, + 1-1's noise;
2. the embedding block's output (token + position + segment embeddings, LayerNorm): clean, and
   ``smart_mtdnn`` (SMART as MT-DNN's code runs it, what the paper ran), whose points are that
   output + its noise, since that is where MT-DNN adds it;
3. hidden states after encoder layer 2: all four, each as training computes its step 2.

Each panel is a PCA (numpy SVD) of its points; colours are words, markers are variants. The
paper's point: SMART's perturbation is tiny, and after layer 2 it is invisible while 1-1's
noise is not. The title gives each perturbation's size against the vector it is added to, and
for ``smart_mtdnn`` both its applied size and the size MT-DNN's own code logs.

It prints, per panel, the mean distance clean↔variant divided by the spread of the clean points
(root mean squared distance to their centroid), measured in the full space, not the 2-D
projection, and writes them beside the PNG as JSON.

The encoder: a pretrained model (default bert-base-uncased; ``packaged-minilm`` works offline),
whose classification head is then a seeded random one (SMART's gradient needs some head; the
perturbation's size does not depend on it, since each token's step is normalised to η), or a
training run folder (its best checkpoint, trained head included).

    python -m experiments.figure2 --model packaged-minilm --out runs/figures/figure2_minilm.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

from experiments import figure2_points as points_of
from experiments.figure2_points import CLEAN, CORRECTED, MTDNN, ONE_ONE, SPACE_OF, VARIANTS
from experiments.figure2_sentences import find_sentences, locate

WORDS = ("she", "he", "you")
DPI = 100
FIGURE_SIZE_IN = (18.0, 5.5)  # three panels; fixed size (no tight bbox), so the PNG is 1800 × 550
TASK = "anli"


def load_encoder(*, model: str, seed: int):
    """(MultiTaskModel with an ANLI head, tokenizer, description) from a model name or a run folder."""
    from mt_dnn.checkpoint import CheckpointManager, read_checkpoint
    from mt_dnn.cli_train import DEFAULT_TASK_DEF
    from mt_dnn.model import build_model
    from mt_dnn.packaged_model import resolve_model_name
    from mt_dnn.run_setup import load_tokenizer
    from mt_dnn.task_def import load_task_defs

    folder = Path(model)
    if (folder / "run_config.json").is_file():
        config = json.loads((folder / "run_config.json").read_text(encoding="utf-8"))
        tasks = load_task_defs(paths=config.get("task_def") or [DEFAULT_TASK_DEF])
        trained = sorted({item.split(":")[0] for item in str(config["train_datasets"]).split(",") if item})
        if TASK not in trained:
            raise SystemExit(f"figure2: error: --model {model}: the run trained {', '.join(trained)}, not {TASK}")
        tokenizer = load_tokenizer(str(folder / "model"))
        network = build_model(model_name=str(folder / "model"), tasks={t: tasks[t] for t in trained},
                              from_config_only=True)
        best = folder / "checkpoints" / "best.pt"
        if best.is_file():
            state, which = read_checkpoint(best)["model"], "best.pt"
        else:
            found = CheckpointManager(folder / "checkpoints").load_latest()
            if found is None:
                raise SystemExit(f"figure2: error: --model {model}: no checkpoint in {folder / 'checkpoints'}")
            state, which = found[1]["model"], found[0].name
        network.load_state_dict(state)
        return network, tokenizer, f"run {folder} ({which}, {config.get('model')})"
    tasks = load_task_defs(paths=[DEFAULT_TASK_DEF])
    path = resolve_model_name(model)
    torch.manual_seed(seed)  # the random head SMART's gradient goes through
    try:
        tokenizer = load_tokenizer(path)
        network = build_model(model_name=path, tasks={TASK: tasks[TASK]}, tokenizer=tokenizer)
    except OSError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SystemExit(f"figure2: error: --model {model}: cannot load it ({first}); offline, use "
                         "--model packaged-minilm or a run folder") from None
    return network, tokenizer, f"pretrained {model} (random seeded {TASK} head)"


def perturbed_inputs(*, network, tokenizer, batch: dict, smart_step_size: float | None, noise_size: float | None,
                     cache_dir: Path) -> dict[str, torch.Tensor]:
    """Token embeddings of the batch: "clean", "SMART" (the corrected ``smart``) and "1-1"."""
    return points_of.perturbed_inputs(network=network, tokenizer=tokenizer, batch=batch,
                                      smart_step_size=smart_step_size, noise_size=noise_size,
                                      cache_dir=cache_dir, task=TASK)


def pca_2d(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(projection on the first two principal components, their shares of the variance)."""
    centred = points - points.mean(axis=0, keepdims=True)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    total = float((singular ** 2).sum())
    share = (singular[:2] ** 2) / total if total > 0 else np.zeros(2)
    return centred @ vt[:2].T, share


def distances(points: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean clean↔variant distance, the clean points' spread, and their ratios (full dimension)."""
    clean = points[CLEAN]
    spread = float(np.sqrt(((clean - clean.mean(axis=0)) ** 2).sum(axis=1).mean()))
    result = {"clean_spread": spread}
    for variant in [v for v in points if v != CLEAN]:
        mean_distance = float(np.linalg.norm(points[variant] - clean, axis=1).mean())
        result[f"clean_to_{variant}"] = mean_distance
        result[f"clean_to_{variant}_relative"] = mean_distance / spread if spread > 0 else float("inf")
    return result


def draw(*, panels: list[tuple[str, dict[str, np.ndarray], dict]], words: list[str], title: str, out: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGURE_SIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    order = list(dict.fromkeys(words))  # first-seen order
    palette = [f"C{i % 10}" for i in range(len(order))]
    colours = dict(zip(order, palette))
    style = {CLEAN: dict(marker="o", s=90, facecolors="none", linewidths=1.5),
             CORRECTED: dict(marker="x", s=40, linewidths=1.2),
             MTDNN: dict(marker="+", s=60, linewidths=1.2),
             ONE_ONE: dict(marker="^", s=40, alpha=0.8)}
    word_array = np.array(words)
    for axes, (name, points, stats) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        shown = [v for v in VARIANTS if v in points]
        stacked = np.concatenate([points[v] for v in shown])
        projected, share = pca_2d(stacked)
        n = len(words)
        for index, variant in enumerate(shown):
            block = projected[index * n:(index + 1) * n]
            for word in colours:
                chosen = block[word_array == word]
                if not len(chosen):
                    continue
                kwargs = dict(style[variant])
                key = "edgecolors" if variant == CLEAN else "c"
                kwargs[key] = colours[word]
                axes.scatter(chosen[:, 0], chosen[:, 1], label=f'"{word}" {variant}', **kwargs)
        moves = ", ".join(f"{v} {stats[f'clean_to_{v}_relative']:.2g}" for v in shown[1:])
        axes.set_title(f"{name}\n" + textwrap.fill(f"clean↔variant ÷ clean spread: {moves}", width=70), fontsize=9)
        axes.set_xlabel(f"PC1 ({100 * share[0]:.0f}% of variance)")
        axes.set_ylabel(f"PC2 ({100 * share[1]:.0f}% of variance)")
        axes.legend(fontsize=6, ncol=2, loc="best")
    figure.suptitle(title, fontsize=11)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        figure.savefig(handle, format="png", dpi=DPI)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, out)
    return out


def make_figure2(*, model: str, data_dir: Path | None, out: Path, words: tuple[str, ...] = WORDS, per_word: int = 20,
                 layer: int = 2, smart_step_size: float | None = None, noise_size: float | None = None,
                 seed: int = 1, cache_dir: Path | None = None, tensorboard: Path | None = None) -> dict:
    """Draw the figure to ``out`` (PNG) and write ``out`` with .json; returns the measurements.

    ``tensorboard``: also write the points for TensorBoard's Embedding Projector there
    (experiments.figure2_projector)."""
    from mt_dnn.run_setup import default_cache_dir

    if tensorboard is not None:
        from mt_dnn.tensorboard_log import summary_writer_class

        summary_writer_class()  # a missing package is one line now, not after the work
    torch.manual_seed(seed)
    network, tokenizer, described = load_encoder(model=model, seed=seed)
    network.eval()  # no dropout: the panels compare inputs, not dropout masks
    encoder_layers = getattr(network.encoder.config, "num_hidden_layers", None)
    if encoder_layers is not None and not 1 <= layer <= encoder_layers:
        raise SystemExit(f"figure2: error: --layer {layer}: expected 1..{encoder_layers} for this encoder")
    sentences = find_sentences(data_dir=data_dir, words=words, per_word=per_word)
    encoded = tokenizer(sentences, padding=True, truncation=True, max_length=128, return_tensors="pt",
                        return_offsets_mapping=True)
    offsets = encoded.pop("offset_mapping")
    batch = {key: value for key, value in encoded.items() if key in ("input_ids", "attention_mask", "token_type_ids")}
    occurrences = locate(sentences=sentences, offsets=offsets, attention_mask=batch["attention_mask"], words=words)
    missing = [w for w in words if not any(o.word == w for o in occurrences)]
    if missing:
        raise SystemExit(f"figure2: error: --words: no single-token occurrence of {', '.join(missing)} with this "
                         "tokenizer; choose words the vocabulary holds whole")
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    inputs = perturbed_inputs(network=network, tokenizer=tokenizer, batch=batch, smart_step_size=smart_step_size,
                              noise_size=noise_size, cache_dir=cache)
    mtdnn = points_of.mtdnn_input(network=network, tokenizer=tokenizer, batch=batch, smart_step_size=smart_step_size,
                                  cache_dir=cache, task=TASK)
    rows = torch.tensor([o.sentence for o in occurrences])
    cols = torch.tensor([o.position for o in occurrences])
    panels, extra = points_of.panels(network=network, batch=batch, rows=rows, cols=cols, inputs=inputs, mtdnn=mtdnn,
                                     layer=layer)
    shares = points_of.shares_percent(panels)
    measured = {"model": described, "sentences": len(sentences), "layer": layer,
                "occurrences": {w: sum(o.word == w for o in occurrences) for w in words},
                # each against the vector it is added to (perturbation_space)
                "perturbation_share_percent": shares, "perturbation_space": dict(SPACE_OF),
                # what MT-DNN's own code logs as its perturbation's size (the whole batch, all positions)
                "mtdnn_logged_share_percent": 100 * mtdnn.logged_share,
                "panels": {}}
    drawn = []
    for panel in panels:
        stats = distances(panel.points)
        measured["panels"][panel.name] = stats
        drawn.append((panel.name, panel.points, stats))
    layer_stats = measured["panels"][panels[-1].name]
    # smart_mtdnn's step 2 also re-applies the embedding block: how far that alone moves the points
    layer_stats["clean_to_MT-DNN re-embedding alone"] = float(
        np.linalg.norm(extra["reembedded"] - panels[-1].points[CLEAN], axis=1).mean())
    word_list = [o.word for o in occurrences]
    title = (f"Figure 2: {', '.join(words)} in {len(sentences)} sentences; {described}\n"
             f"{CORRECTED} δ = {shares[CORRECTED]:.2g}% of the token embedding, 1-1 noise = {shares[ONE_ONE]:.2g}% of it; "
             f"{MTDNN} noise = {shares[MTDNN]:.2g}% of the embedding output applied, "
             f"{measured['mtdnn_logged_share_percent']:.2g}% as MT-DNN's code logs it")
    measured["png"] = str(draw(panels=drawn, words=word_list, title=title, out=out))
    json_path = out.with_suffix(".json")
    tmp = json_path.with_name(f".{json_path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(measured, indent=2, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, json_path)
    measured["json"] = str(json_path)
    if tensorboard is not None:
        from experiments.figure2_projector import projector_tensors, write_projector

        tensors = projector_tensors(panels=panels, occurrences=occurrences, sentences=sentences)
        measured["tensorboard"] = str(write_projector(out_dir=Path(tensorboard), tensors=tensors))
    return measured


def report(measured: dict) -> str:
    lines = [f"Figure 2 ({measured['model']}): occurrences {measured['occurrences']}",
             "perturbation / the vector it is added to (L2, %): " + ", ".join(
                 f"{k} {v:.3g} (of the {measured['perturbation_space'][k]})"
                 for k, v in measured["perturbation_share_percent"].items())
             + f"; {MTDNN} as MT-DNN's code logs it: {measured['mtdnn_logged_share_percent']:.3g}",
             "",
             "| panel | clean spread | " + " | ".join(f"clean↔{v} | ÷ spread" for v in VARIANTS[1:]) + " |",
             "|---|---|" + "---|---|" * (len(VARIANTS) - 1)]
    for name, s in measured["panels"].items():
        cells = [f"{s[f'clean_to_{v}']:.3g} | {s[f'clean_to_{v}_relative']:.3g}" if f"clean_to_{v}" in s else "— | —"
                 for v in VARIANTS[1:]]
        lines.append(f"| {name} | {s['clean_spread']:.4g} | " + " | ".join(cells) + " |")
    layer_stats = list(measured["panels"].values())[-1]
    lines.append(f"({MTDNN}'s step 2 also re-applies the embedding block; that alone moves the layer-"
                 f"{measured['layer']} points by {layer_stats['clean_to_MT-DNN re-embedding alone']:.3g})")
    lines += ["", f"wrote {measured['png']} and {measured['json']}"]
    if "tensorboard" in measured:
        lines.append(f"wrote the Embedding Projector's points to {measured['tensorboard']} "
                     f"(tensorboard --logdir {measured['tensorboard']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.figure2", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.environ.get("REPRO_FIGURE2_MODEL") or "bert-base-uncased",
                        help="encoder name or folder, 'packaged-minilm', or a training run folder "
                             "($REPRO_FIGURE2_MODEL; default bert-base-uncased)")
    parser.add_argument("--data_dir", default=os.environ.get("ANLI_DIR"),
                        help="ANLI folder whose dev/test hypotheses give the sentences ($ANLI_DIR; "
                             "default: data/anli_v1.0 when present, else the built-in sentences)")
    parser.add_argument("--words", default=",".join(WORDS), help="comma-separated words (default she,he,you)")
    parser.add_argument("--per_word", type=int, default=20, help="sentences per word (default 20)")
    parser.add_argument("--layer", type=int, default=2, help="encoder layer of the second panel (default 2)")
    parser.add_argument("--adv_step_size", type=float, default=None,
                        help="both SMARTs' step η (default: the providers' default, 1e-5)")
    parser.add_argument("--noise_size", type=float, default=None, help="1-1's noise_size (default: the provider's, 0.5)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache_dir", default=None, help="neighbour-table cache (default: train.py's)")
    parser.add_argument("--out", default=None,
                        help="PNG path (default $REPRO_RUNS or runs/paper, then /plots/figure2_<model>.png)")
    parser.add_argument("--tensorboard", default=None, metavar="DIR",
                        help="also write the points (clean, both SMARTs, 1-1; embeddings and layer outputs) for "
                             "TensorBoard's Embedding Projector to DIR")
    args = parser.parse_args(argv)
    words = tuple(w.strip().lower() for w in args.words.split(",") if w.strip())
    if not words or len(set(words)) != len(words):
        parser.error(f"--words {args.words!r}: expected distinct comma-separated words")
    if args.per_word < 1:
        parser.error(f"--per_word {args.per_word}: expected a whole number >= 1")
    data_dir = Path(args.data_dir) if args.data_dir else Path("data/anli_v1.0")
    if not data_dir.is_dir():
        if args.data_dir:
            parser.error(f"--data_dir {args.data_dir}: no such folder")
        data_dir = None
    from experiments.summarize import model_tag

    tag = model_tag(model=args.model)
    out = Path(args.out) if args.out else Path(os.environ.get("REPRO_RUNS") or "runs/paper") / "plots" / f"figure2_{tag}.png"
    from mt_dnn.errors import UserError
    from noise_training.errors import ProviderError

    try:
        measured = make_figure2(model=args.model, data_dir=data_dir, out=out, words=words, per_word=args.per_word,
                                layer=args.layer, smart_step_size=args.adv_step_size, noise_size=args.noise_size,
                                seed=args.seed, cache_dir=Path(args.cache_dir) if args.cache_dir else None,
                                tensorboard=Path(args.tensorboard) if args.tensorboard else None)
    except (UserError, ProviderError) as exc:
        print(f"figure2: error: {exc}", file=sys.stderr)
        return 2
    print(report(measured))
    return 0


if __name__ == "__main__":
    sys.exit(main())
