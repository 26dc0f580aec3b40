"""GLUE download, offline: GLUE's zips and MRPC's sources rebuilt from the real files, served over file://.

The zips hold the real train/dev files ($GLUE_DIR), so the installed files must verify against
the pinned SHA-256 of the official files; MRPC's sources are rebuilt from the real MRPC files
(the corpus's train file = the header, the dev rows and the train rows; the dev id list) and
the build must reproduce GLUE's MRPC files byte for byte, as download_glue_data.py does.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from mt_dnn.errors import DataError
from mt_dnn.glue_download import OFFICIAL_FILE_SHA256, ZIP_TASKS, download_glue, main, verify_glue
from mt_dnn.anli_download import hash_file


def _zip(folder: Path, glue_dir: Path, task: str, *, spoil: bool = False) -> None:
    with zipfile.ZipFile(folder / f"{task}.zip", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for split in ("train", "dev"):
            data = (glue_dir / task / f"{split}.tsv").read_bytes()
            if spoil and split == "dev":
                data = data.replace(b"\t", b"  ", 1)
            archive.writestr(f"{task}/{split}.tsv", data)
        archive.writestr(f"{task}/test.tsv", b"index\tsentence\n")  # present in GLUE's zips, not installed


def _mrpc_sources(folder: Path, glue_dir: Path) -> dict[str, tuple[str, str]]:
    train = (glue_dir / "MRPC" / "train.tsv").read_text(encoding="utf-8").split("\n")
    dev = (glue_dir / "MRPC" / "dev.tsv").read_text(encoding="utf-8").split("\n")
    header, train_rows, dev_rows = train[0], [r for r in train[1:] if r], [r for r in dev[1:] if r]
    # CRLF as in Microsoft's text (download_glue_data.py reads with universal newlines)
    (folder / "msr_paraphrase_train.txt").write_bytes(
        "\r\n".join([header, *dev_rows, *train_rows]).encode("utf-8") + b"\r\n")
    (folder / "mrpc_dev_ids.tsv").write_text("".join(f"{r.split(chr(9))[1]}\t{r.split(chr(9))[2]}\n" for r in dev_rows))
    # the real sources' checksums cannot hold for these rebuilt ones: pin the rebuilt ones
    return {name: (name, hash_file(path=folder / name, kind="sha256"))
            for name in ("msr_paraphrase_train.txt", "mrpc_dev_ids.tsv")}


def test_download_builds_glues_files_exactly(tmp_path, glue_dir):
    served = tmp_path / "served"
    served.mkdir()
    for task in ZIP_TASKS:
        _zip(served, glue_dir, task)
    sources = _mrpc_sources(served, glue_dir)
    target = tmp_path / "glue"
    download_glue(target_dir=target, base_url=served.as_uri(), mrpc_base_url=served.as_uri(), mrpc_sources=sources)
    assert verify_glue(data_dir=target) == []
    for rel in OFFICIAL_FILE_SHA256:
        assert (target / rel).read_bytes() == (glue_dir / rel).read_bytes(), rel
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()) == \
        sorted(OFFICIAL_FILE_SHA256)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".glue")]  # no staging left behind


def test_a_file_that_does_not_verify_installs_nothing(tmp_path, glue_dir):
    served = tmp_path / "served"
    served.mkdir()
    _zip(served, glue_dir, "RTE", spoil=True)
    target = tmp_path / "glue"
    with pytest.raises(DataError) as info:
        download_glue(target_dir=target, tasks=["RTE"], base_url=served.as_uri())
    message = str(info.value)
    assert "checksum mismatch for RTE/dev.tsv" in message and "nothing installed" in message and "\n" not in message
    assert not (target / "RTE").exists()


def test_mrpc_source_with_another_checksum_is_refused(tmp_path, glue_dir):
    served = tmp_path / "served"
    served.mkdir()
    _mrpc_sources(served, glue_dir)
    with pytest.raises(DataError, match=r"checksum mismatch for .*msr_paraphrase_train\.txt: expected sha256 60a9b090"):
        download_glue(target_dir=tmp_path / "glue", tasks=["MRPC"], mrpc_base_url=served.as_uri(),
                      mrpc_sources={"msr_paraphrase_train.txt": ("msr_paraphrase_train.txt",
                                                                 "60a9b09084528f0673eedee2b69cb941920f0b8cd0eeccefc464a98768457f89"),
                                    "mrpc_dev_ids.tsv": ("mrpc_dev_ids.tsv", "0" * 64)})
    assert not (tmp_path / "glue" / "MRPC").exists()


def test_verify_command_on_the_real_folder_and_bad_tasks(glue_dir, capsys):
    assert main(["verify-glue", "--data_dir", str(glue_dir)]) == 0
    assert "10 files verified" in capsys.readouterr().out
    assert main(["verify-glue", "--data_dir", str(glue_dir), "--tasks", "RTE,QQP"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --tasks RTE,QQP: expected") and "\n" not in err
