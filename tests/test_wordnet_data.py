"""Real WordNet 3.0 for the WordNet providers: found, loaded as 3.0, installed and laid out for NLTK.

No mocks: the database is the installed one (scripts/install_wordnet.sh puts Debian's
wordnet-base files in an NLTK data folder, with the lexnames file the package lacks).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nltk
import pytest

from noise_training.errors import ProviderDataError as UserError  # the WordNet loader's own error type
from noise_training.wordnet_data import (
    COPIED_FILES,
    DEBIAN_WORDNET_DIR,
    LEXNAMES,
    ensure_wordnet,
    layout_wordnet,
    lexnames_text,
)


def test_ensure_wordnet_loads_wordnet_3_0(wordnet_info):
    from nltk.corpus import wordnet

    assert wordnet_info.version == "3.0"
    assert wordnet.get_version() == "3.0"
    car = wordnet.synset("car.n.01")
    assert "automobile" in car.lemma_names()
    # lexnames drives lexname(): a wrong numbering would name the wrong file here.
    expected_lexnames = {
        "car.n.01": "noun.artifact",
        "dog.n.01": "noun.animal",
        "entity.n.01": "noun.Tops",
        "apple.n.01": "noun.food",
        "tree.n.01": "noun.plant",
        "run.v.01": "verb.motion",
        "eat.v.01": "verb.consumption",
        "rain.v.01": "verb.weather",
        "happy.a.01": "adj.all",
        "quickly.r.01": "adv.all",
    }
    assert {name: wordnet.synset(name).lexname() for name in expected_lexnames} == expected_lexnames
    root = Path(wordnet_info.root)
    if root.is_dir():
        assert (root / "lexnames").is_file() and not (root / "lexnames").is_symlink()
        for name in COPIED_FILES:
            assert (root / name).is_file() and not (root / name).is_symlink(), name


def test_missing_wordnet_exits_with_one_line_saying_how_to_install(tmp_path, monkeypatch):
    from noise_training import wordnet_data

    # Point NLTK and the Debian location at empty folders: nothing to find, nothing to copy.
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nltk_data")])
    monkeypatch.setattr(wordnet_data, "DEBIAN_WORDNET_DIR", tmp_path / "no-debian-wordnet")
    with pytest.raises(UserError) as raised:
        ensure_wordnet(data_dir=tmp_path / "layout")
    message = str(raised.value)
    assert "\n" not in message
    assert "nltk.download('wordnet')" in message and "apt-get install wordnet-base wordnet-sense-index" in message

    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "data.noun").write_text("x")
    with pytest.raises(UserError, match="index.sense"):
        layout_wordnet(source_dir=tmp_path / "partial", data_dir=tmp_path / "layout")


def test_train_without_wordnet_prints_the_providers_error_as_one_line(tmp_path, monkeypatch, capsys):
    """The provider raises its own error type; train.py's entry point still turns it into one line, exit 2."""
    from mt_dnn.cli_train import main as train_main
    from noise_training import wordnet_data
    from tiny_models import tiny_bert, write_anli_like

    model = tiny_bert(tmp_path / "bert")
    data = write_anli_like(tmp_path / "anli", rounds=("R1",), sizes={"train": 8, "dev": 4, "test": 4})
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nltk_data")])
    monkeypatch.setattr(wordnet_data, "DEBIAN_WORDNET_DIR", tmp_path / "no-debian-wordnet")
    monkeypatch.setenv("NLTK_DATA", str(tmp_path / "nltk_data"))
    code = train_main(["--model", str(model), "--data_dir", str(data), "--cache_dir", str(tmp_path / "cache"),
                       "--train_datasets", "anli:r1_train", "--test_datasets", "anli:r1_dev", "--epochs", "1",
                       "--batch_size", "4", "--max_seq_len", "32", "--no_progress", "--perturbation", "wordnet_1.0",
                       "--output_dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: ") and "nltk.download('wordnet')" in err[-1]
    assert not any("Traceback" in line for line in err)


def test_install_script_is_idempotent_and_says_where_wordnet_is(wordnet_info):
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        ["bash", str(repo / "scripts" / "install_wordnet.sh")],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("WordNet 3.0 at "), result.stdout


def _wordnet_source_dir() -> Path:
    if DEBIAN_WORDNET_DIR.is_dir():
        return DEBIAN_WORDNET_DIR
    try:
        found = Path(str(nltk.data.find("corpora/wordnet")))
    except LookupError:
        found = None
    if found is not None and found.is_dir():
        return found
    pytest.skip("no WordNet files to lay out: /usr/share/wordnet is missing and NLTK has no unpacked wordnet folder")


def test_layout_wordnet_into_tmp_folder_copies_real_files(tmp_path):
    source = _wordnet_source_dir()
    target = layout_wordnet(source_dir=source, data_dir=tmp_path)
    assert target == tmp_path / "corpora" / "wordnet"
    for name in COPIED_FILES:
        path = target / name
        assert path.is_file() and not path.is_symlink(), name
        assert path.stat().st_size == (source / name).stat().st_size, name
    assert (target / "lexnames").read_text(encoding="utf-8") == lexnames_text()
    assert not [p for p in target.parent.iterdir() if p.name != "wordnet"], "staging folders left behind"

    # Laid out once: a second call keeps the files; a damaged layout is rebuilt whole.
    before = (target / "data.noun").stat().st_mtime_ns
    assert layout_wordnet(source_dir=source, data_dir=tmp_path) == target
    assert (target / "data.noun").stat().st_mtime_ns == before
    (target / "index.sense").unlink()
    (target / "index.sense").symlink_to(source / "index.sense")
    layout_wordnet(source_dir=source, data_dir=tmp_path)
    assert (target / "index.sense").is_file() and not (target / "index.sense").is_symlink()


def test_lexnames_match_wordnets_own_list():
    """lexnames(5WN), shipped with Debian's wordnet-base, lists the 45 files in order."""
    import gzip

    manual = Path("/usr/share/man/man5/lexnames.5WN.gz")
    if not manual.is_file():
        pytest.skip(f"{manual} is not installed (Debian images may drop man pages), nothing to compare with")
    listed = []
    for line in gzip.open(manual, "rt", encoding="utf-8"):
        fields = line.split("\t")
        if len(fields) >= 2 and len(fields[0]) == 2 and fields[0].isdigit():
            listed.append((int(fields[0]), fields[1].strip()))
    assert listed == [(number, name) for number, (name, _) in enumerate(LEXNAMES)]


def test_lexnames_agree_with_the_data_files():
    """Every synset's lexicographer file number must name a file of its own part of speech."""
    source = _wordnet_source_dir()
    lines = lexnames_text().splitlines()
    assert len(lines) == len(LEXNAMES) == 45
    for number, line in enumerate(lines):
        fields = line.split("\t")
        assert len(fields) == 3 and int(fields[0]) == number and fields[0] == f"{number:02d}"
    category_of_file = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
    used: set[int] = set()
    for suffix, category in category_of_file.items():
        with open(source / f"data.{suffix}", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(" "):
                    continue  # licence header
                lex_filenum = int(line.split(" ", 2)[1])
                used.add(lex_filenum)
                name, listed_category = LEXNAMES[lex_filenum]
                assert listed_category == category, (suffix, line[:40])
                assert name.startswith(suffix + "."), (suffix, name)
    assert used == set(range(45))


# A machine without nltk (a lent GPU machine, a slim container) can still train the WordNet
# methods from a cached synonym table; only building a table needs nltk, and its absence is one line.
_NO_NLTK = """
import sys
sys.modules["nltk"] = None  # `import nltk` now raises ImportError, as where it is not installed
from transformers import AutoTokenizer
from noise_training.errors import ProviderDataError
from noise_training.synonyms import load_or_build_synonym_table
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
try:
    table = load_or_build_synonym_table(tokenizer=tokenizer, cache_dir=sys.argv[2])
except ProviderDataError as exc:
    print("ProviderDataError:", exc)
else:
    print("entries", table.synonym_ids.numel())
"""


def test_a_cached_synonym_table_needs_no_nltk_and_building_one_says_nltk_is_missing(wordnet_info, minilm_path,
                                                                                     tmp_path):
    from transformers import AutoTokenizer

    from noise_training.synonyms import load_or_build_synonym_table

    cached = tmp_path / "cached"
    table = load_or_build_synonym_table(tokenizer=AutoTokenizer.from_pretrained(minilm_path), cache_dir=cached)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def without_nltk(cache_dir: Path) -> str:
        done = subprocess.run([sys.executable, "-c", _NO_NLTK, str(minilm_path), str(cache_dir)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert without_nltk(cached) == f"entries {table.synonym_ids.numel()}"
    empty = tmp_path / "empty"
    assert without_nltk(empty) == ("ProviderDataError: nltk is not installed (pip install nltk); it reads WordNet "
                                   "to build the synonym table, which is then cached")
    assert not empty.exists() or not any(empty.iterdir())
