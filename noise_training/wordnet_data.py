"""Make the real WordNet 3.0 usable through ``nltk.corpus.wordnet``, offline.

Experiment 3 of the paper replaces words by WordNet 3.0 synonyms. NLTK normally gets
WordNet by ``nltk.download("wordnet")``, which needs a network; Debian ships the same
database in the packages ``wordnet-base`` + ``wordnet-sense-index`` (``/usr/share/wordnet``)
but without the ``lexnames`` file NLTK's reader insists on and not in NLTK's folder layout.
This module finds WordNet (NLTK's own folders first), otherwise lays the Debian files out,
once, as an NLTK data folder, and always checks that what NLTK loads is version 3.0.

CLI: ``python -m noise_training.wordnet_data [--data-dir DIR]`` prints where WordNet is.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path


from noise_training.errors import ProviderDataError, ProviderError

WORDNET_VERSION = "3.0"
DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")
DEFAULT_DATA_DIR = Path("~/.cache/mt-dnn-noise/nltk_data")

# Exactly the files nltk.corpus.reader.wordnet.WordNetCorpusReader opens (its _FILES):
# index.sense is read at construction (map_wn), cntlist.rev by Lemma.count().
# `lexnames` is not copied: Debian lacks it, so it is generated from LEXNAMES below.
COPIED_FILES = (
    "cntlist.rev",
    "index.sense",
    "index.adj",
    "index.adv",
    "index.noun",
    "index.verb",
    "data.adj",
    "data.adv",
    "data.noun",
    "data.verb",
    "adj.exc",
    "adv.exc",
    "noun.exc",
    "verb.exc",
)

# The 45 WordNet 3.0 lexicographer files (lexnames(5WN)): number = position, and the
# syntactic category 1 noun, 2 verb, 3 adjective, 4 adverb. The data files store only the
# number of each synset's file, so the order here must be exactly WordNet's.
LEXNAMES = (
    ("adj.all", 3),
    ("adj.pert", 3),
    ("adv.all", 4),
    ("noun.Tops", 1),
    ("noun.act", 1),
    ("noun.animal", 1),
    ("noun.artifact", 1),
    ("noun.attribute", 1),
    ("noun.body", 1),
    ("noun.cognition", 1),
    ("noun.communication", 1),
    ("noun.event", 1),
    ("noun.feeling", 1),
    ("noun.food", 1),
    ("noun.group", 1),
    ("noun.location", 1),
    ("noun.motive", 1),
    ("noun.object", 1),
    ("noun.person", 1),
    ("noun.phenomenon", 1),
    ("noun.plant", 1),
    ("noun.possession", 1),
    ("noun.process", 1),
    ("noun.quantity", 1),
    ("noun.relation", 1),
    ("noun.shape", 1),
    ("noun.state", 1),
    ("noun.substance", 1),
    ("noun.time", 1),
    ("verb.body", 2),
    ("verb.change", 2),
    ("verb.cognition", 2),
    ("verb.communication", 2),
    ("verb.competition", 2),
    ("verb.consumption", 2),
    ("verb.contact", 2),
    ("verb.creation", 2),
    ("verb.emotion", 2),
    ("verb.motion", 2),
    ("verb.perception", 2),
    ("verb.possession", 2),
    ("verb.social", 2),
    ("verb.stative", 2),
    ("verb.weather", 2),
    ("adj.ppl", 3),
)

INSTALL_HINT = (
    "WordNet 3.0 is not installed: run `python -c \"import nltk; nltk.download('wordnet')\"` "
    "or, as root on Debian/Ubuntu, `apt-get install wordnet-base wordnet-sense-index` "
    "(or bash scripts/install_wordnet.sh)"
)


@dataclass(frozen=True)
class WordNetInfo:
    """Where NLTK reads WordNet from, and the version it reports."""

    root: str
    version: str
    source: str  # "nltk" (found in NLTK's own folders) or "debian" (laid out from /usr/share/wordnet)


def lexnames_text() -> str:
    """The ``lexnames`` file: ``NN<TAB>name<TAB>category`` per line, as WordNet ships it."""
    return "".join(f"{number:02d}\t{name}\t{category}\n" for number, (name, category) in enumerate(LEXNAMES))


def _layout_is_complete(folder: Path) -> bool:
    """True when ``folder`` holds every file NLTK opens, as real non-empty files."""
    for name in (*COPIED_FILES, "lexnames"):
        path = folder / name
        if path.is_symlink() or not path.is_file() or path.stat().st_size == 0:
            return False
    return (folder / "lexnames").read_text(encoding="utf-8") == lexnames_text()


def layout_wordnet(*, source_dir: Path, data_dir: Path) -> Path:
    """Lay WordNet out as ``data_dir/corpora/wordnet`` from a WordNet ``dict`` folder.

    Files are copied (NLTK's reader must not depend on a symlink target that a package
    upgrade may change under a running job) and ``lexnames`` is generated. The folder is
    built beside its final place and renamed in, so a reader never sees half a layout.
    Returns the ``corpora/wordnet`` folder; an already complete layout is kept as it is.
    """
    source_dir = Path(source_dir)
    target = Path(data_dir).expanduser() / "corpora" / "wordnet"
    if _layout_is_complete(target):
        return target
    missing = [name for name in COPIED_FILES if not (source_dir / name).is_file()]
    if missing:
        raise ProviderDataError(
            f"{source_dir}: WordNet files {', '.join(missing)} are missing "
            "(expected the Debian packages wordnet-base and wordnet-sense-index)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=target.parent))
    try:
        for name in COPIED_FILES:
            shutil.copyfile(source_dir / name, staging / name)
        with open(staging / "lexnames", "w", encoding="utf-8") as handle:
            handle.write(lexnames_text())
            handle.flush()
            os.fsync(handle.fileno())
        for name in COPIED_FILES:
            with open(staging / name, "rb") as handle:
                os.fsync(handle.fileno())
        os.chmod(staging, 0o755)
        old = None
        if target.exists():
            # An incomplete earlier layout: move it aside, since rename cannot replace a
            # non-empty directory.
            old = Path(tempfile.mkdtemp(prefix=".wordnet-old-", dir=target.parent))
            os.replace(target, old / "wordnet")
        try:
            os.replace(staging, target)
        except OSError:
            # Another process renamed its complete layout in first: use that one.
            if not _layout_is_complete(target):
                raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _nltk():
    """nltk, imported only when WordNet itself is read: a cached synonym table needs neither."""
    try:
        import nltk
    except ImportError:
        raise ProviderDataError("nltk is not installed (pip install nltk); it reads WordNet to build the synonym "
                                "table, which is then cached") from None
    return nltk


def _nltk_wordnet_root() -> str | None:
    """The folder (or zip) NLTK itself would load WordNet from, or None."""
    nltk = _nltk()
    for resource in ("corpora/wordnet", "corpora/wordnet.zip/wordnet/"):
        try:
            return str(nltk.data.find(resource))
        except LookupError:
            continue
    return None


def _default_data_dir() -> Path:
    nltk_data = os.environ.get("NLTK_DATA", "")
    first = next((part for part in nltk_data.split(os.pathsep) if part), None)
    return Path(first) if first else DEFAULT_DATA_DIR


def _checked_version(root: str) -> str:
    from nltk.corpus import wordnet

    version = wordnet.get_version()
    if version != WORDNET_VERSION:
        raise ProviderDataError(
            f"{root}: NLTK loads WordNet {version}, expected WordNet {WORDNET_VERSION} "
            "(the paper's version; remove that copy or set $NLTK_DATA to a 3.0 one)"
        )
    return version


def ensure_wordnet(*, data_dir: Path | str | None = None) -> WordNetInfo:
    """Make ``nltk.corpus.wordnet`` usable and check that it is WordNet 3.0.

    Order: NLTK's own data folders (including $NLTK_DATA); else Debian's
    /usr/share/wordnet laid out once into ``data_dir`` ($NLTK_DATA's first folder if set,
    else ~/.cache/mt-dnn-noise/nltk_data) and added to ``nltk.data.path``; else ProviderDataError
    with one line saying how to install it.
    """
    root = _nltk_wordnet_root()
    if root is not None:
        return WordNetInfo(root=root, version=_checked_version(root), source="nltk")
    folder = Path(data_dir).expanduser() if data_dir is not None else _default_data_dir().expanduser()
    # A layout made by an earlier run stays usable even if the Debian package went away.
    if not DEBIAN_WORDNET_DIR.is_dir() and not _layout_is_complete(folder / "corpora" / "wordnet"):
        raise ProviderDataError(INSTALL_HINT)
    layout_wordnet(source_dir=DEBIAN_WORDNET_DIR, data_dir=folder)
    nltk = _nltk()
    if str(folder) not in nltk.data.path:
        nltk.data.path.insert(0, str(folder))
    root = _nltk_wordnet_root()
    if root is None:
        raise ProviderDataError(f"{folder}: laid WordNet out there but NLTK still does not find corpora/wordnet")
    return WordNetInfo(root=root, version=_checked_version(root), source="debian")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir",
        default=None,
        help="NLTK data folder to lay Debian's WordNet out in "
        "(default: $NLTK_DATA's first folder, else ~/.cache/mt-dnn-noise/nltk_data)",
    )
    args = parser.parse_args(argv)
    try:
        info = ensure_wordnet(data_dir=args.data_dir)
    except ProviderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"WordNet {info.version} at {info.root} (source: {info.source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
