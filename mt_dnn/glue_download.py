"""Fetch GLUE's small tasks from their official sources, verify every file, install them as GLUE lays them out.

The tests and experiments read GLUE as ``download_glue_data.py`` (nyu-mll/GLUE-baselines)
leaves it: ``<TASK>/train.tsv`` and ``<TASK>/dev.tsv``. Users get the same bytes here: CoLA,
SST-2, STS-B and RTE come from GLUE's own zips; MRPC, which GLUE may not host, is built from
its source files (SentEval's copy of the Microsoft corpus and GLUE's list of dev ids) exactly
as that script's ``format_mrpc`` builds it. Every installed file is checked against the
SHA-256 of the official files (those of ../shared/data/glue/SHA256SUMS), and MRPC's sources
against the checksums Hugging Face and TFDS publish; a file goes into place only verified,
one rename each, so a failed or tampered download never leaves half a task.

CLI: ``python -m mt_dnn.glue_download download-glue [--data_dir DIR] [--tasks RTE,MRPC,...]
[--base_url URL] [--mrpc_url URL]`` and ``... verify-glue [--data_dir DIR] [--tasks ...]``.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from mt_dnn.anli_download import _download, hash_file
from mt_dnn.errors import DataError

logger = logging.getLogger(__name__)

DEFAULT_DATA_DIR = "data/glue"
GLUE_BASE_URL = "https://dl.fbaipublicfiles.com/glue/data"
MRPC_BASE_URL = "https://dl.fbaipublicfiles.com"
TASKS = ("CoLA", "SST-2", "MRPC", "STS-B", "RTE")
ZIP_TASKS = ("CoLA", "SST-2", "STS-B", "RTE")  # <TASK>.zip holds <TASK>/train.tsv, <TASK>/dev.tsv

# SHA-256 of the official files (shared/data/glue/SHA256SUMS; PROVENANCE.md says where each is from)
OFFICIAL_FILE_SHA256: dict[str, str] = {
    "CoLA/train.tsv": "cb368ebeb9f27d7ad03720d27ddc95687a311bdb100781a2fe59a5f5b1bc0624",
    "CoLA/dev.tsv": "8c013e21dc39957cac37378d87bebe225b694a0d5fe13eded66c2856628833fd",
    "SST-2/train.tsv": "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1",
    "SST-2/dev.tsv": "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0",
    "MRPC/train.tsv": "69abcedee3cf738c6ce58d772e43e1b7cdf5b4edee4aceda459c0d9f4e5599f3",
    "MRPC/dev.tsv": "9e8f284788040f7c9ecde2e1b3c07237c756f926bd9ef8548ef5d34b56f69f17",
    "STS-B/train.tsv": "41c4d978b6162abdcada7e49a982211954cca5459c228db478af333124b257a2",
    "STS-B/dev.tsv": "fe7dc0632a5033562f3cadff991f6e8d9b9b6311861660e78c3c82eb7db67f59",
    "RTE/train.tsv": "41e3a9b063433392343fad9e962cf2f58b681c78d8f71592f4186f0837246c5c",
    "RTE/dev.tsv": "80230dfa1347282e7b532b06a1004a76a710087541189bf874223ddf0e3819fb",
}
# MRPC's sources, as Hugging Face's glue dataset_infos.json (download_checksums) and TFDS publish them
MRPC_SOURCES: dict[str, tuple[str, str]] = {
    "msr_paraphrase_train.txt": ("senteval/senteval_data/msr_paraphrase_train.txt",
                                 "60a9b09084528f0673eedee2b69cb941920f0b8cd0eeccefc464a98768457f89"),
    "mrpc_dev_ids.tsv": ("glue/data/mrpc_dev_ids.tsv",
                         "971d7767d81b997fd9060ade0ec23c4fc31cbb226a55d1bd4a1bac474eb81dc7"),
}


def task_files(tasks: Sequence[str]) -> dict[str, str]:
    return {rel: sha for rel, sha in OFFICIAL_FILE_SHA256.items() if rel.split("/")[0] in tasks}


def verify_glue(*, data_dir: Path | str, tasks: Sequence[str] = TASKS,
                expected: Mapping[str, str] = OFFICIAL_FILE_SHA256) -> list[str]:
    """Problems (missing or mismatched files) under ``data_dir``; an empty list when all verify."""
    problems = []
    for rel, want in expected.items():
        if rel.split("/")[0] not in tasks:
            continue
        path = Path(data_dir) / rel
        if not path.is_file():
            problems.append(f"missing {path}")
        elif (got := hash_file(path=path, kind="sha256")) != want:
            problems.append(f"checksum mismatch for {path}: expected sha256 {want}, got {got}")
    return problems


def build_mrpc(*, train_source: Path, dev_ids: Path, into: Path) -> None:
    """MRPC/train.tsv and MRPC/dev.tsv from the corpus's train file, as ``format_mrpc`` writes them.

    The header line is copied as read (with the source's byte-order mark: GLUE's MRPC files
    start with one), each row is stripped and split on tabs, and rows whose (id1, id2) is in
    the dev id list go to dev.tsv; the text is read with universal newlines and written
    with LF, as that script does on Linux.
    """
    ids = set()
    with io.open(dev_ids, encoding="utf-8") as handle:
        for row in handle:
            ids.add(tuple(row.strip().split("\t")))
    folder = into / "MRPC"
    folder.mkdir(parents=True, exist_ok=True)
    with io.open(train_source, encoding="utf-8") as data, \
            io.open(folder / "train.tsv", "w", encoding="utf-8", newline="\n") as train, \
            io.open(folder / "dev.tsv", "w", encoding="utf-8", newline="\n") as dev:
        header = data.readline()
        train.write(header)
        dev.write(header)
        for number, row in enumerate(data, start=2):
            fields = row.strip().split("\t")
            if len(fields) != 5:
                raise DataError(f"{train_source}:{number}: expected 5 tab-separated fields "
                                f"(Quality, #1 ID, #2 ID, #1 String, #2 String), got {len(fields)}")
            target = dev if (fields[1], fields[2]) in ids else train
            target.write("\t".join(fields) + "\n")


def _extract_task(*, archive_path: Path, task: str, url: str, into: Path) -> None:
    """``<TASK>/train.tsv`` and ``<TASK>/dev.tsv`` of GLUE's zip, nothing else, under ``into``."""
    try:
        with zipfile.ZipFile(archive_path) as archive:
            names = set(archive.namelist())
            for split in ("train", "dev"):
                member = f"{task}/{split}.tsv"
                if member not in names:
                    raise DataError(f"the archive downloaded from {url} holds no {member}")
                dest = into / member
                dest.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, NotImplementedError, OSError) as err:
        raise DataError(f"could not read the archive downloaded from {url}: {' '.join(str(err).split())}") from None


def download_glue(
    *, target_dir: Path | str, tasks: Sequence[str] = TASKS, base_url: str = GLUE_BASE_URL,
    mrpc_base_url: str = MRPC_BASE_URL, expected: Mapping[str, str] = OFFICIAL_FILE_SHA256,
    mrpc_sources: Mapping[str, tuple[str, str]] = MRPC_SOURCES, timeout: float = 60.0,
) -> Path:
    """Make ``target_dir`` hold the verified files of ``tasks``; download only what does not verify yet."""
    unknown = [task for task in tasks if task not in TASKS]
    if unknown:
        raise DataError(f"unknown GLUE task {unknown[0]!r}; expected some of {', '.join(TASKS)}")
    target = Path(target_dir).absolute()
    todo = [task for task in tasks if verify_glue(data_dir=target, tasks=[task], expected=expected)]
    if not todo:
        logger.info("GLUE files of %s in %s already verify; nothing downloaded", ", ".join(tasks), target)
        return target
    target.mkdir(parents=True, exist_ok=True)
    # staging next to the target: the final renames stay on one filesystem
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.glue-", dir=target.parent))
    try:
        for task in todo:
            if task == "MRPC":
                sources = {}
                for name, (path, want) in mrpc_sources.items():
                    url = f"{mrpc_base_url}/{path}"
                    dest = staging / "sources" / name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    logger.info("downloading %s", url)
                    _download(url=url, dest=dest, timeout=timeout, target=target,
                              expected={f"MRPC/{s}.tsv": () for s in ("train", "dev")})
                    got = hash_file(path=dest, kind="sha256")
                    if got != want:
                        raise DataError(f"checksum mismatch for {url}: expected sha256 {want}, got {got}; "
                                        f"nothing installed into {target}")
                    sources[name] = dest
                build_mrpc(train_source=sources["msr_paraphrase_train.txt"], dev_ids=sources["mrpc_dev_ids.tsv"],
                           into=staging)
            else:
                url = f"{base_url}/{task}.zip"
                archive = staging / f"{task}.zip"
                logger.info("downloading %s", url)
                _download(url=url, dest=archive, timeout=timeout, target=target,
                          expected={f"{task}/{s}.tsv": () for s in ("train", "dev")})
                _extract_task(archive_path=archive, task=task, url=url, into=staging)
        problems = verify_glue(data_dir=staging, tasks=todo, expected=expected)
        if problems:
            problems = [p.replace(str(staging) + os.sep, "") for p in problems]
            raise DataError(f"GLUE files failed verification, nothing installed into {target}: {'; '.join(problems)}")
        try:
            for rel in (rel for rel in expected if rel.split("/")[0] in todo):
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / rel, target / rel)
        except OSError as err:
            raise DataError(f"could not move the verified GLUE files into {target}: {' '.join(str(err).split())}") \
                from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("installed the verified GLUE files of %s into %s", ", ".join(todo), target)
    return target


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mt_dnn.glue_download", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("download-glue", "download, verify and install GLUE's small tasks"),
                       ("verify-glue", "check the GLUE files in a folder against the pinned hashes")):
        command = commands.add_parser(name, help=text)
        command.add_argument("--data_dir", default=None,
                             help=f"the GLUE folder (default: $GLUE_DIR, else {DEFAULT_DATA_DIR})")
        command.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, of {', '.join(TASKS)}")
        if name == "download-glue":
            command.add_argument("--base_url", default=GLUE_BASE_URL, help="where <TASK>.zip are (http(s):// or file://)")
            command.add_argument("--mrpc_url", default=MRPC_BASE_URL,
                                 help="where MRPC's sources are (senteval/..., glue/data/mrpc_dev_ids.tsv)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    data_dir = Path(args.data_dir or os.environ.get("GLUE_DIR") or DEFAULT_DATA_DIR)
    tasks = [task.strip() for task in args.tasks.split(",") if task.strip()]
    if not tasks or any(task not in TASKS for task in tasks):
        print(f"error: --tasks {args.tasks}: expected comma-separated names of {', '.join(TASKS)}", file=sys.stderr)
        return 2
    try:
        if args.command == "download-glue":
            folder = download_glue(target_dir=data_dir, tasks=tasks, base_url=args.base_url.rstrip("/"),
                                   mrpc_base_url=args.mrpc_url.rstrip("/"))
            print(f"GLUE ({', '.join(tasks)}) ready in {folder}: {len(task_files(tasks))} files verified")
            return 0
        problems = verify_glue(data_dir=data_dir, tasks=tasks)
        if problems:
            raise DataError(f"GLUE in {data_dir} does not verify: {'; '.join(problems)}")
        print(f"GLUE ({', '.join(tasks)}) in {data_dir}: {len(task_files(tasks))} files verified")
        return 0
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
