"""WordNet 3.0 synonyms of a tokenizer's vocabulary, built once, cached, sampled on any device.

Experiment 3 (WordNet_1.0 / WordNet_0.5) feeds, in the second forward pass, a WordNet
synonym of each word that has one. Looking WordNet up per token at every training step
would be far too slow, so the synonyms of every vocabulary token are computed once into a
CSR table (``offsets`` [V+1], ``synonym_ids`` [nnz]) cached as safetensors, and a step
draws one synonym per position with a few tensor operations.

Which tokens get synonyms (the rules, in one place):

- Whole words only. WordPiece (BERT): a ``##`` continuation piece has none. Byte-level BPE
  (RoBERTa, GPT-2): ``Ġcar`` (word start) maps to ``Ġ``-tokens (``Ġauto``), an unmarked
  ``car`` (a word glued to what precedes it, or at the very start) to unmarked tokens, so
  a replacement never changes where words begin.
- ASCII alphabetic words only (``str.isascii() and str.isalpha()``), for the token and for
  its synonyms: WordNet is English, byte-level BPE spells non-ASCII letters as byte
  symbols, and a lemma with ``_``/``-``/digits is never one token. Multi-word lemmas
  (``ice_cream``) are therefore dropped: in these vocabularies they are never one token.
- Synonyms = the lemma names of ALL the synsets, every part of speech, that have the word
  itself as a lemma, i.e. ``wn.synsets(word)`` WITHOUT morphy lemmatisation (the synsets
  ``wn.lemmas(word)`` belongs to). Why no morphy: it would give ``is`` the synonyms of
  ``be`` (``cost``, ``follow``), ``went`` those of ``go`` (``plump``, ``choke``) and
  ``cars`` the singular ``car``: synonyms of a lemma, not of the word as written, which
  also break agreement. Measured on ANLI R1 dev with the uncased MiniLM vocabulary, exact
  forms give 32% of non-special tokens a synonym (the paper reports about 30% for BERT),
  morphy 43%. Special tokens are never synonyms, nor is the word itself in any case: a
  candidate whose lower-cased form is the word's lower-cased form is dropped, so a cased
  vocabulary does not offer ``it`` -> ``IT`` (information technology), ``an`` -> ``AN``
  or ``more`` -> ``More`` (Thomas More): the same word, not a synonym, and in an uncased
  vocabulary such a variant is the word's own token anyway. A different lemma written
  in capitals stays (``Army`` -> ``USA``).
- Case: for an uncased tokenizer (detected from its normalizer, not from a model name)
  lemma names are lower-cased. For a cased one a lower-case word keeps WordNet's spelling
  and a Capitalised word, a single capital letter included (``U``), gets capitalised
  synonyms (``Car`` -> ``Auto``).

No stop-word list: as in the paper, a word gets whatever WordNet lists, so some function
words do get (odd) synonyms (``a`` -> ``amp``, ``in`` -> ``inch``) while ``the`` gets none.
The table is per token and knows no context: at a position where a word-start token is
followed by continuation pieces (``pan ##ini``) it still offers ``pan``'s synonyms; a
caller that wants complete words only masks such positions itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_save
from tqdm.auto import tqdm

from noise_training.atomic_files import atomic_write_bytes
from noise_training.errors import ProviderConfigError
from noise_training.wordnet_data import WORDNET_VERSION, ensure_wordnet

logger = logging.getLogger(__name__)

# Bump when the rules above or the file layout change: old caches then miss by key.
# 2: the word in another case is no synonym; a one-letter capital is capitalised.
FORMAT_VERSION = "2"
BYTE_LEVEL_WORD_START = "\u0120"  # "Ġ": byte-level BPE's symbol for a leading space
CACHE_PREFIX = "wordnet-synonyms-"
LOOKUPS = ("exact", "morphy")


@dataclass(frozen=True, eq=False)
class SynonymTable:
    """CSR synonym lists: token t's synonyms are ``synonym_ids[offsets[t]:offsets[t+1]]``."""

    offsets: torch.Tensor  # int64 [V+1], offsets[0] == 0, non-decreasing
    synonym_ids: torch.Tensor  # int64 [nnz], every id in [0, V)
    key: str  # sha256 of what the table was computed from (see table_key)

    def __post_init__(self) -> None:
        for name in ("offsets", "synonym_ids"):
            tensor = getattr(self, name)
            if tensor.dtype != torch.int64 or tensor.dim() != 1:
                raise ValueError(
                    f"SynonymTable.{name}: expected a 1-D int64 tensor, got {tensor.dtype} {tuple(tensor.shape)}"
                )
        if self.offsets.numel() < 1:
            raise ValueError("SynonymTable.offsets: expected at least one entry (V + 1 offsets)")

    @property
    def vocab_size(self) -> int:
        return self.offsets.numel() - 1

    @property
    def device(self) -> torch.device:
        return self.offsets.device

    def counts(self) -> torch.Tensor:
        """Number of synonyms of every token id, int64 [V]."""
        return self.offsets[1:] - self.offsets[:-1]

    def synonyms_of(self, token_id: int) -> list[int]:
        """The synonym ids of one token (for inspection and tests, not for the training loop)."""
        start, end = int(self.offsets[token_id]), int(self.offsets[token_id + 1])
        return self.synonym_ids[start:end].tolist()

    def to(self, device: torch.device | str) -> SynonymTable:
        return dataclasses.replace(self, offsets=self.offsets.to(device), synonym_ids=self.synonym_ids.to(device))

    def sample(
        self, token_ids: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One uniformly drawn synonym per position; tokens without synonyms come back unchanged.

        ``token_ids``: int64 of any shape on the table's device (a ``generator``, if given,
        must live there too). Returns ``(replacement_ids, has_synonym)`` of that shape.
        """
        start = self.offsets[token_ids]
        count = self.offsets[token_ids + 1] - start
        has_synonym = count > 0
        if self.synonym_ids.numel() == 0:
            return token_ids.clone(), has_synonym
        u = torch.rand(token_ids.shape, generator=generator, device=token_ids.device)
        # min(count - 1) guards against float rounding u * count up to count itself.
        pick = torch.minimum((u * count).floor().to(torch.int64), (count - 1).clamp(min=0))
        # Positions without synonyms read a valid dummy slot, then keep their own id.
        slot = torch.where(has_synonym, start + pick, torch.zeros_like(start))
        replacement = torch.where(has_synonym, self.synonym_ids[slot], token_ids)
        return replacement, has_synonym


def synonym_coverage(*, table: SynonymTable, token_ids: torch.Tensor, mask: torch.Tensor) -> float:
    """Share of the positions where ``mask`` is true whose token has at least one synonym (0.0 if none)."""
    mask = mask.to(torch.bool)
    selected = int(mask.sum())
    if selected == 0:
        return 0.0
    has_synonym = table.counts()[token_ids] > 0
    return int((has_synonym & mask).sum()) / selected


# ----------------------------------------------------------------------------- tokenizer


@dataclass(frozen=True)
class VocabularyScheme:
    """How a tokenizer marks whole words, and whether it lower-cases its input."""

    kind: str  # "wordpiece" or "byte_level_bpe"
    lowercase: bool
    continuation_prefix: str = ""  # WordPiece: pieces that continue a word ("##")
    word_start_marker: str = ""  # byte-level BPE: tokens that start a word ("Ġ")


def _contains_type(spec: object, type_name: str) -> bool:
    """True when a tokenizers JSON component (possibly a Sequence) has a part of that type."""
    if isinstance(spec, dict):
        return spec.get("type") == type_name or any(_contains_type(value, type_name) for value in spec.values())
    if isinstance(spec, list):
        return any(_contains_type(item, type_name) for item in spec)
    return False


def _lowercases(tokenizer, backend) -> bool:
    # Ask the normalizer itself rather than trusting a model name: an uncased vocabulary
    # only ever sees lower-cased text, so its synonyms must be looked up lower-cased.
    normalizer = backend.normalizer
    if normalizer is not None:
        return normalizer.normalize_str("CAR") == "car"
    return bool(getattr(tokenizer, "do_lower_case", False))


def vocabulary_scheme(*, tokenizer) -> VocabularyScheme:
    """Detect WordPiece vs byte-level BPE and lower-casing from a tokenizers-backed tokenizer."""
    name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ProviderConfigError(f"tokenizer {name}: a tokenizers-backed (fast) tokenizer is needed to build the synonym table")
    spec = json.loads(backend.to_str())
    model_type = spec.get("model", {}).get("type")
    lowercase = _lowercases(tokenizer, backend)
    if model_type == "WordPiece":
        prefix = spec["model"].get("continuing_subword_prefix") or "##"
        return VocabularyScheme(kind="wordpiece", lowercase=lowercase, continuation_prefix=prefix)
    if model_type == "BPE" and _contains_type(spec.get("pre_tokenizer"), "ByteLevel"):
        return VocabularyScheme(kind="byte_level_bpe", lowercase=lowercase, word_start_marker=BYTE_LEVEL_WORD_START)
    raise ProviderConfigError(
        f"tokenizer {name}: model type {model_type} is not supported for WordNet synonyms "
        "(expected WordPiece or byte-level BPE)"
    )


def _vocabulary(tokenizer) -> dict[str, int]:
    return dict(tokenizer.get_vocab())


def _vocab_size(tokenizer, vocab: dict[str, int]) -> int:
    return max(len(tokenizer), max(vocab.values()) + 1)


def table_key(*, tokenizer, wordnet_version: str, lookup: str = "exact") -> str:
    """sha256 over everything the table depends on: vocabulary, scheme, specials, WordNet, lookup, format."""
    scheme = vocabulary_scheme(tokenizer=tokenizer)
    vocab = _vocabulary(tokenizer)
    digest = hashlib.sha256()
    header = {
        "format_version": FORMAT_VERSION,
        "wordnet_version": wordnet_version,
        "scheme": dataclasses.asdict(scheme),
        "special_ids": sorted(int(i) for i in tokenizer.all_special_ids),
        "vocab_size": _vocab_size(tokenizer, vocab),
    }
    if lookup != "exact":  # the exact reading's header is as it was before morphy existed
        header["lookup"] = lookup
    digest.update(json.dumps(header, sort_keys=True).encode("utf-8"))
    pairs = sorted(vocab.items(), key=lambda item: (item[1], item[0]))
    digest.update(json.dumps(pairs, ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()


# ----------------------------------------------------------------------------- building


def _is_word(text: str) -> bool:
    return text.isascii() and text.isalpha()


def _split_token(token: str, scheme: VocabularyScheme) -> tuple[str, str] | None:
    """(marker, word) for a whole-word token, None for a continuation piece."""
    if scheme.kind == "wordpiece":
        return None if token.startswith(scheme.continuation_prefix) else ("", token)
    if token.startswith(scheme.word_start_marker):
        return scheme.word_start_marker, token[len(scheme.word_start_marker) :]
    return "", token


def _styled(lemma: str, *, word: str, lowercase: bool) -> str:
    if lowercase:
        return lemma.lower()
    # "U" is capitalised too ("".islower() is False, so the rest is tested only when there is one).
    if word[:1].isupper() and (len(word) == 1 or word[1:].islower()):
        return lemma[:1].upper() + lemma[1:]
    return lemma


def _lemma_names(word: str, wordnet, *, lookup: str = "exact") -> list[str]:
    """Lemma names of the synsets of ``word``: those that list the word itself ("exact", no
    morphy: see the module docstring), or all that ``wn.synsets(word)`` returns ("morphy")."""
    form = word.lower()
    names: dict[str, None] = {}
    for synset in wordnet.synsets(form):
        lemma_names = synset.lemma_names()
        # wn.synsets() also returns the synsets of morphy's base forms (is -> be); the exact
        # reading keeps only those where the written form is itself a lemma.
        if lookup == "morphy" or any(name.lower() == form for name in lemma_names):
            for name in lemma_names:
                names[name] = None
    return list(names)


def build_synonym_table(*, tokenizer, wordnet_version: str | None = None, lookup: str = "exact") -> SynonymTable:
    """Compute the table from WordNet (no cache); ``ensure_wordnet()`` is called when no version is given.

    ``lookup``: "exact" (the default) or "morphy" (see :func:`_lemma_names`)."""
    if lookup not in LOOKUPS:
        raise ValueError(f"lookup: expected one of {LOOKUPS}, got {lookup!r}")
    if wordnet_version is None:
        wordnet_version = ensure_wordnet().version
    from nltk.corpus import wordnet

    scheme = vocabulary_scheme(tokenizer=tokenizer)
    vocab = _vocabulary(tokenizer)
    size = _vocab_size(tokenizer, vocab)
    special = {int(i) for i in tokenizer.all_special_ids}
    tokens_by_id: dict[int, str] = {token_id: token for token, token_id in vocab.items()}
    lemma_cache: dict[str, list[str]] = {}
    offsets = [0]
    synonym_ids: list[int] = []
    for token_id in tqdm(range(size), desc="WordNet synonyms", unit="tok", mininterval=1.0):
        token = tokens_by_id.get(token_id)
        found: set[int] = set()
        parts = None if token is None or token_id in special else _split_token(token, scheme)
        if parts is not None and _is_word(parts[1]):
            marker, word = parts
            if word not in lemma_cache:
                lemma_cache[word] = _lemma_names(word, wordnet, lookup=lookup)
            for lemma in lemma_cache[word]:
                candidate = _styled(lemma, word=word, lowercase=scheme.lowercase)
                # The same word in another case ("it" -> "IT") is another token of a cased
                # vocabulary, but not a synonym: compare the words, not only the ids.
                if not _is_word(candidate) or candidate.lower() == word.lower():
                    continue
                candidate_id = vocab.get(marker + candidate)
                if candidate_id is not None and candidate_id not in special:
                    found.add(candidate_id)
        synonym_ids.extend(sorted(found))
        offsets.append(len(synonym_ids))
    return SynonymTable(
        offsets=torch.tensor(offsets, dtype=torch.int64),
        synonym_ids=torch.tensor(synonym_ids, dtype=torch.int64),
        key=table_key(tokenizer=tokenizer, wordnet_version=wordnet_version, lookup=lookup),
    )


# ----------------------------------------------------------------------------- cache


def _validated(path: Path, *, key: str, vocab_size: int) -> SynonymTable:
    """Read a cached table, raising ValueError/SafetensorError/OSError when it is not the right one."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        names = set(handle.keys())
        if names != {"offsets", "synonym_ids"}:
            raise ValueError(f"tensors {sorted(names)}, expected offsets and synonym_ids")
        offsets = handle.get_tensor("offsets")
        synonym_ids = handle.get_tensor("synonym_ids")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"format_version {metadata.get('format_version')}, expected {FORMAT_VERSION}")
    if metadata.get("key") != key:
        raise ValueError("key does not match this tokenizer/WordNet")
    table = SynonymTable(offsets=offsets, synonym_ids=synonym_ids, key=key)
    if offsets.shape != (vocab_size + 1,):
        raise ValueError(f"offsets shape {tuple(offsets.shape)}, expected ({vocab_size + 1},)")
    if int(offsets[0]) != 0 or int(offsets[-1]) != synonym_ids.numel():
        raise ValueError("offsets do not span synonym_ids")
    if bool((table.counts() < 0).any()):
        raise ValueError("offsets are not monotone")
    if synonym_ids.numel() and (int(synonym_ids.min()) < 0 or int(synonym_ids.max()) >= vocab_size):
        raise ValueError(f"synonym ids outside [0, {vocab_size})")
    return table


def _write_atomically(path: Path, table: SynonymTable) -> None:
    payload = safetensors_save(
        {"offsets": table.offsets.cpu().contiguous(), "synonym_ids": table.synonym_ids.cpu().contiguous()},
        metadata={"key": table.key, "format_version": FORMAT_VERSION},
    )
    atomic_write_bytes(path, payload)


def cache_path(*, cache_dir: Path | str, key: str) -> Path:
    return Path(cache_dir) / f"{CACHE_PREFIX}{key[:16]}.safetensors"


def load_or_build_synonym_table(*, tokenizer, cache_dir: Path | str, lookup: str = "exact") -> SynonymTable:
    """The synonym table of ``tokenizer``'s vocabulary, from ``cache_dir`` or built from WordNet and cached.

    WordNet itself is loaded (seconds) only when the table must be built: ``ensure_wordnet``
    accepts nothing but version 3.0, so the cache key can name that version up front.
    """
    key = table_key(tokenizer=tokenizer, wordnet_version=WORDNET_VERSION, lookup=lookup)
    vocab_size = _vocab_size(tokenizer, _vocabulary(tokenizer))
    path = cache_path(cache_dir=cache_dir, key=key)
    if path.exists():
        try:
            table = _validated(path, key=key, vocab_size=vocab_size)
            logger.info("loaded WordNet synonym table from %s", path)
            return table
        except (OSError, ValueError, SafetensorError) as error:
            warnings.warn(f"{path}: invalid synonym table cache ({error}); rebuilding it", stacklevel=2)
    info = ensure_wordnet()
    started = time.perf_counter()
    table = build_synonym_table(tokenizer=tokenizer, wordnet_version=info.version, lookup=lookup)
    elapsed = time.perf_counter() - started
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, table)
    covered = int((table.counts() > 0).sum())
    logger.info(
        "built WordNet synonym table in %.1f s: %d of %d tokens have synonyms, %d entries; cached at %s",
        elapsed,
        covered,
        table.vocab_size,
        table.synonym_ids.numel(),
        path,
    )
    return table
