"""figure2 --tensorboard: the figure's own points, both SMARTs included, for TensorBoard's Embedding Projector."""

from __future__ import annotations

import csv

import numpy as np
import pytest

pytest.importorskip("tensorboard", reason="the tensorboard extra (pip install -e .[tensorboard]) is needed")


@pytest.mark.slow
def test_projector_holds_every_variant_with_word_and_kind(minilm_path, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    from experiments.figure2 import main as figure2_main

    board = tmp_path / "board"
    assert figure2_main(["--model", "packaged-minilm", "--per_word", "2", "--out", str(tmp_path / "fig.png"),
                         "--cache_dir", str(tmp_path / "cache"), "--tensorboard", str(board)]) == 0
    config = (board / "projector_config.pbtxt").read_text()
    tensors = {}
    for block in config.split("embeddings {")[1:]:
        fields = dict(line.strip().split(": ", 1) for line in block.strip().splitlines() if ": " in line)
        tag = fields["tensor_name"].strip('"').rsplit(":", 1)[0]  # "layer2:00000": tag and global step
        points = np.loadtxt(board / fields["tensor_path"].strip('"'), delimiter="\t", ndmin=2)
        with open(board / fields["metadata_path"].strip('"'), encoding="utf-8") as handle:
            rows = list(csv.reader(handle, delimiter="\t"))
        assert rows[0] == ["word", "kind", "sentence"] and len(rows) - 1 == len(points)
        tensors[tag] = (points, rows[1:])
    assert set(tensors) == {"token_embeddings", "embedding_block_output", "layer2"}
    kinds = {tag: sorted({row[1] for row in rows}) for tag, (_, rows) in tensors.items()}
    assert kinds == {"token_embeddings": ["1-1", "SMART (corrected)", "clean"],
                     "embedding_block_output": ["SMART (MT-DNN)", "clean"],
                     "layer2": ["1-1", "SMART (MT-DNN)", "SMART (corrected)", "clean"]}
    points, rows = tensors["token_embeddings"]
    assert points.shape[1] == 384 and {row[0] for row in rows} == {"she", "he", "you"}
    # a clean point is the word's own row of the embedding matrix: the points are what they say
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    table = AutoModel.from_pretrained(minilm_path).get_input_embeddings().weight.detach().numpy()
    for point, (word, kind, _) in zip(points, rows):
        if kind == "clean":
            np.testing.assert_allclose(point, table[tokenizer.convert_tokens_to_ids(word)], rtol=1e-5, atol=1e-6)
    # SMART's step is tiny, 1-1's noise is not (the paper's point), in the projector's own points too
    by_kind = {kind: points[[row[1] == kind for row in rows]] for kind in ("clean", "SMART (corrected)", "1-1")}
    smart_move = np.linalg.norm(by_kind["SMART (corrected)"] - by_kind["clean"], axis=1).mean()
    noise_move = np.linalg.norm(by_kind["1-1"] - by_kind["clean"], axis=1).mean()
    assert 0 < smart_move < 1e-2 * noise_move
