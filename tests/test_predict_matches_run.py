"""predict.py gives, on a split, what the trained run's own evaluation of that split gave.

A tiny BERT initialised wide (its predictions depend on the input and on its weights) is
trained for two epochs; ``predict.py --checkpoint best``, ``latest`` and the path of epoch 1's
checkpoint, on the test split, must reproduce the run's prediction file of the matching epoch, example by example
(label and probabilities), and the accuracy it recorded in ``metrics.jsonl``. A predict.py
that scored another checkpoint, or a model it never loaded the weights into, fails here.
"""

from __future__ import annotations

import json

import pytest

from mt_dnn.cli_predict import main as predict_main
from mt_dnn.cli_train import main as train_main
from tiny_models import SIGNAL_INIT, tiny_bert, write_anli_like


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    data = write_anli_like(root / "anli", rounds=("R1",), sizes={"train": 48, "dev": 24, "test": 40})
    out = root / "run"
    assert train_main(["--model", str(tiny_bert(root / "bert", initializer_range=SIGNAL_INIT)),
                       "--data_dir", str(data), "--cache_dir", str(root / "cache"),
                       "--train_datasets", "anli:r1_train", "--test_datasets", "anli:r1_dev,anli:r1_test",
                       "--epochs", "2", "--batch_size", "8", "--max_seq_len", "48", "--learning_rate", "1e-3",
                       "--seed", "4", "--save_every", "6", "--keep_checkpoints", "2",  # 6 updates per epoch
                       "--no_progress", "--output_dir", str(out)]) == 0
    return out


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _recorded(run, epoch):
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    [record] = [r for r in records if r["kind"] == "eval" and r["split"] == "r1_test" and r["epoch"] == epoch]
    return record, _lines(run / "predictions" / f"epoch{epoch}_anli_r1_test.jsonl")


@pytest.mark.numerics
@pytest.mark.parametrize("checkpoint", ["best", "latest", "epoch 1"])
def test_predict_on_a_split_equals_the_runs_own_evaluation(run, checkpoint, tmp_path, capsys):
    summary = json.loads((run / "run_summary.json").read_text())
    epoch = {"best": summary["best_epoch"], "latest": 2, "epoch 1": 1}[checkpoint]
    if checkpoint == "epoch 1":  # the checkpoint of the update that ended epoch 1, named by its path
        checkpoint = str(run / "checkpoints" / "step-000000006.pt")
    record, expected = _recorded(run, epoch)
    # the guard: predictions that depend on the input (not one class everywhere), and that changed in training
    assert len({r["prediction"] for r in expected}) > 1, "fixture degenerate: one class for every example"
    other = 3 - epoch
    assert [r["probabilities"] for r in _recorded(run, other)[1]] != [r["probabilities"] for r in expected]

    out = tmp_path / "pred.jsonl"
    capsys.readouterr()
    assert predict_main(["--run_dir", str(run), "--split", "r1_test", "--checkpoint", checkpoint,
                         "--output", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    got = _lines(out)
    assert [r["uid"] for r in got] == [r["uid"] for r in expected] and len(got) == 40
    assert [r["prediction"] for r in got] == [r["prediction"] for r in expected]
    assert [r.get("gold") for r in got] == [r["gold"] for r in expected]
    for mine, theirs in zip(got, expected):
        assert mine["probabilities"].keys() == theirs["probabilities"].keys()
        for label, p in theirs["probabilities"].items():
            assert mine["probabilities"][label] == pytest.approx(p, abs=2e-6), (mine["uid"], label)  # 6 decimals
    assert printed["accuracy"] == pytest.approx(record["accuracy"], abs=1e-12)
    assert record["accuracy"] == pytest.approx(sum(r["prediction"] == r["gold"] for r in expected) / 40)
