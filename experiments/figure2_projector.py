"""``figure2 --tensorboard DIR``: Figure 2's points in TensorBoard's Embedding Projector.

The paper drew Figure 2 with TensorBoard's Embedding Projector; this writes the figure's own
points (experiments.figure2_points: the same arrays the PNG is drawn from) so that a user can
explore them as its authors did (PCA, t-SNE, nearest neighbours, colouring by word or kind),
one projector tensor per panel, with ``SummaryWriter.add_embedding``:

- ``token_embeddings``: clean, the corrected SMART (``smart``) and 1-1: what those perturb;
- ``embedding_block_output``: clean and MT-DNN's SMART (``smart_mtdnn``), which adds its noise there;
- ``layer<k>``: the hidden states after encoder layer k of all four, each as training computes
  that variant's step 2.

Every point's metadata: its word, its kind (clean, SMART (corrected), SMART (MT-DNN), 1-1) and
its sentence. View with ``tensorboard --logdir DIR`` (Projector tab).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

HEADER = ["word", "kind", "sentence"]


def tensor_tag(space: str) -> str:
    """'token embeddings' -> 'token_embeddings', 'layer 2' -> 'layer2'."""
    tag = re.sub(r"[^A-Za-z0-9]+", "_", space).strip("_")
    return re.sub(r"^layer_(\d+)$", r"layer\1", tag)


def projector_tensors(*, panels, occurrences, sentences: list[str]) -> dict[str, tuple[np.ndarray, list[list[str]]]]:
    """tag -> (points [N, D], metadata rows): each panel's points, variant after variant."""
    tensors = {}
    for panel in panels:
        points, rows = [], []
        for kind, array in panel.points.items():
            points.append(np.asarray(array, dtype=np.float32))
            rows += [[o.word, kind, " ".join(sentences[o.sentence].split())[:120]] for o in occurrences]
        tensors[tensor_tag(panel.space)] = (np.concatenate(points), rows)
    return tensors


def write_projector(*, out_dir: Path, tensors: dict[str, tuple[np.ndarray, list[list[str]]]]) -> Path:
    """The tensors as Embedding Projector data in ``out_dir`` (an event file, projector_config.pbtxt, TSVs)."""
    from mt_dnn.tensorboard_log import summary_writer_class

    writer = summary_writer_class()(log_dir=str(out_dir))
    try:
        for tag, (points, metadata) in tensors.items():
            writer.add_embedding(torch.from_numpy(points), metadata=metadata, metadata_header=HEADER, tag=tag)
    finally:
        writer.close()
    return Path(out_dir)
