"""The shipped SNLI sample and the real SNLI files, read through task_defs/snli.yml and the project's reader.

The quickstart's claim "learns on real SNLI, held-out pairs unseen" rests on these files:
their counts, their three labels, their licence, and that no held-out pair (or premise) is
also a training pair. The real SNLI files ($SNLI_DIR, CI: ../shared/data/snli) are checked
for the counts PROVENANCE.md states, and the sample for being exactly what its
regeneration script cuts from them.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from experiments import snli_sample
from mt_dnn.data import read_examples
from mt_dnn.datasets import SplitRef, resolve_data_dirs, split_path
from mt_dnn.task_def import load_task_defs

SNLI_YML = REPO_ROOT / "task_defs" / "snli.yml"
LABELS = ("entailment", "neutral", "contradiction")
# split -> (pairs, entailment, neutral, contradiction)
SAMPLE_COUNTS = {"train": (3000, 1005, 1007, 988), "dev": (500, 174, 158, 168), "test": (1000, 344, 327, 329)}
REAL_COUNTS = {"dev": (9842, 3329, 3235, 3278), "test": (9824, 3368, 3219, 3237)}


@pytest.fixture(scope="module")
def snli_task():
    return load_task_defs(paths=[SNLI_YML])["snli"]


def _read(task, folder: Path, split: str):
    """One split as train.py finds it: --data_dir snli=FOLDER, the split's path from snli.yml."""
    tasks = {"snli": task}
    dirs = resolve_data_dirs(values=[f"snli={folder}"], tasks=tasks)
    path = split_path(ref=SplitRef(task="snli", split=split), tasks=tasks, data_dirs=dirs)
    return read_examples(path=path, task=task)


def _counts(examples, task) -> tuple[int, ...]:
    by_label = Counter(task.labels[ex.label] for ex in examples)
    return (len(examples), *(by_label[label] for label in LABELS))


def test_snli_yml_reads_the_sample_with_its_counts_and_three_labels(snli_task):
    assert snli_task.labels == LABELS and snli_task.n_class == 3
    for split, expected in SAMPLE_COUNTS.items():
        examples = _read(snli_task, snli_sample.SAMPLE_DIR, split)
        assert _counts(examples, snli_task) == expected, split
        assert all(0 <= ex.label < 3 for ex in examples)


def test_sample_lines_have_snli_field_names_and_are_small():
    total = 0
    for part in snli_sample.PARTS:
        path = snli_sample.SAMPLE_DIR / part.file
        total += path.stat().st_size
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            assert set(record) == {"pairID", "sentence1", "sentence2", "gold_label"}, path
            assert record["pairID"].startswith(part.source.removeprefix("snli_").removesuffix(".jsonl") + "-")
    assert total < 2_000_000


def test_held_out_parts_share_no_pair_uid_or_premise_with_the_training_part(snli_task):
    train = _read(snli_task, snli_sample.SAMPLE_DIR, "train")
    train_uids = {ex.uid for ex in train}
    train_pairs = {(ex.premise, ex.hypothesis) for ex in train}
    train_premises = {ex.premise for ex in train}
    for split in ("dev", "test"):
        held_out = _read(snli_task, snli_sample.SAMPLE_DIR, split)
        assert not train_uids & {ex.uid for ex in held_out}, split
        assert not train_pairs & {(ex.premise, ex.hypothesis) for ex in held_out}, split
        assert not train_premises & {ex.premise for ex in held_out}, split
    dev = _read(snli_task, snli_sample.SAMPLE_DIR, "dev")
    test = _read(snli_task, snli_sample.SAMPLE_DIR, "test")
    assert not {(ex.premise, ex.hypothesis) for ex in dev} & {(ex.premise, ex.hypothesis) for ex in test}


def test_licence_and_attribution_beside_the_sample():
    licence = (snli_sample.SAMPLE_DIR / "LICENSE").read_text(encoding="utf-8")
    assert "Attribution-ShareAlike 4.0 International" in licence
    assert "Section 3 -- License Conditions." in licence  # the full legal code, not a pointer to it
    assert "Bowman" in licence and "subset" in licence
    readme = (snli_sample.SAMPLE_DIR / "README.md").read_text(encoding="utf-8")
    for needed in ("CC BY-SA 4.0", "Bowman", "subset", "python -m experiments.snli_sample", "not the official"):
        assert needed.lower() in readme.lower(), needed


def test_real_snli_files_read_with_their_counts(snli_task, snli_dir):
    for split, expected in REAL_COUNTS.items():
        assert _counts(_read(snli_task, snli_dir, split), snli_task) == expected, split


def test_regeneration_gives_the_shipped_files_byte_for_byte(snli_dir, tmp_path, capsys):
    assert snli_sample.main(["--snli_dir", str(snli_dir), "--out", str(tmp_path)]) == 0
    for part in snli_sample.PARTS:
        assert (tmp_path / part.file).read_bytes() == (snli_sample.SAMPLE_DIR / part.file).read_bytes(), part.file
    assert snli_sample.main(["--snli_dir", str(snli_dir), "--check"]) == 0
    (tmp_path / "snli_test.jsonl").write_bytes(b"{}\n")
    assert snli_sample.main(["--snli_dir", str(snli_dir), "--out", str(tmp_path), "--check"]) == 1
    assert "snli_test.jsonl: differs" in capsys.readouterr().err


def test_regeneration_refuses_other_source_files_and_writes_nothing(snli_dir, tmp_path, capsys):
    source = tmp_path / "snli"
    source.mkdir()
    (source / "snli_dev.jsonl").write_bytes((snli_dir / "snli_dev.jsonl").read_bytes())
    (source / "snli_test.jsonl").write_bytes((snli_dir / "snli_test.jsonl").read_bytes()[:-1])  # one byte short
    out = tmp_path / "out"
    assert snli_sample.main(["--snli_dir", str(source), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "snli_test.jsonl: sha256" in err and "\n" not in err
    assert not out.exists()


def test_regeneration_names_a_missing_folder(tmp_path, capsys):
    assert snli_sample.main(["--snli_dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    assert "cannot read snli_dev.jsonl" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
