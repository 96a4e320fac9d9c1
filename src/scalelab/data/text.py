"""Text corpora as token streams, for language-model studies.

A corpus is a list of documents (one per file). It is split by document, seeded, into
training, validation and test documents, so held-out text never appears in the training
stream (:func:`split_documents`). Each split's stream is its documents' tokens end to
end, each document followed by the tokenizer's end-of-document token, so a model sees
where one file stops and the next begins and never learns a spurious continuation.

Two tokenizers: :class:`ByteTokenizer`, the UTF-8 bytes themselves (256 symbols plus the
separator, no dependency, no training), and byte-level BPE from the optional
``tokenizers`` package (:func:`train_bpe`, ``pip install 'scalelab[text]'``), trained on
the training documents only and cached on disk.

The data axis of a language-model study is tokens. A cell trains on ``tokens`` tokens
drawn from the first ``unique_tokens`` tokens of the training stream: the
non-overlapping ``context``-token windows of that prefix, reshuffled every epoch
(:func:`training_starts`, :func:`draw_starts`). When ``tokens`` exceeds
``unique_tokens`` the unique data repeats, ``tokens / unique_tokens`` epochs of it
(:func:`plan_tokens`).

Arrays: streams are ``np.uint16`` (``np.int32`` for vocabularies over 65 536);
:func:`windows` returns int64 inputs and next-token targets, what ``nn.Embedding`` and
``F.cross_entropy`` take.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import math
import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scalelab.errors import DatasetError, InputError

SPLITS = ("train", "val", "test")
# Folders of the standard library that are not part of the corpus: installed packages
# (they differ between machines) and test suites (fixtures, generated data and files
# deliberately in other encodings, not the library's code).
STDLIB_SKIPPED = frozenset(
    {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"}
)
BPE_END_OF_DOCUMENT = "<|endoftext|>"
BPE_CACHE_FORMAT = "bytelevel-bpe-v1"  # part of the cache key: a new recipe, a new file


@dataclass(frozen=True)
class Document:
    """One document of a corpus: its name (a path) and its text."""

    name: str
    text: str


# --- tokenizers ---------------------------------------------------------------------


class ByteTokenizer:
    """UTF-8 bytes as tokens 0 … 255, and 256 as the end-of-document token (257 in all)."""

    name = "byte"
    vocab_size = 257
    end_of_document = 256

    def encode(self, text: str) -> np.ndarray:
        """The text's UTF-8 bytes as tokens (no end-of-document token)."""
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)

    def token_bytes(self) -> np.ndarray:
        """Bytes of text each token stands for: one, and none for the separator."""
        lengths = np.ones(self.vocab_size, dtype=np.int64)
        lengths[self.end_of_document] = 0
        return lengths

    def decode(self, tokens) -> str:
        """Text of tokens, end-of-document tokens dropped; a byte sequence cut
        mid-character (a window's edge) decodes to U+FFFD rather than failing."""
        values = np.asarray(tokens)
        kept = values[values != self.end_of_document].astype(np.uint8)
        return kept.tobytes().decode("utf-8", errors="replace")


class BPETokenizer:
    """A trained byte-level BPE tokenizer (``tokenizers.Tokenizer``) with this module's
    interface; :func:`train_bpe` makes one."""

    name = "bpe"

    def __init__(self, tokenizer, path: Path | None = None):
        self._tokenizer = tokenizer
        self.path = path  # where it is cached, when it is
        self.vocab_size = tokenizer.get_vocab_size()
        self.end_of_document = tokenizer.token_to_id(BPE_END_OF_DOCUMENT)

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self._tokenizer.encode(text).ids, dtype=_stream_dtype(self))

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        dtype = _stream_dtype(self)
        encoded = self._tokenizer.encode_batch(texts)  # in parallel, in Rust
        return [np.asarray(item.ids, dtype=dtype) for item in encoded]

    def token_bytes(self) -> np.ndarray:
        """Bytes of text each token stands for. Byte-level BPE spells every token in its
        256-symbol alphabet, one symbol per byte; the separator stands for none."""
        vocab = self._tokenizer.get_vocab()
        lengths = np.zeros(self.vocab_size, dtype=np.int64)
        for token, index in vocab.items():
            if index < self.vocab_size:
                lengths[index] = len(token)
        lengths[self.end_of_document] = 0
        return lengths

    def decode(self, tokens) -> str:
        """Text of tokens, end-of-document tokens dropped."""
        ids = [int(t) for t in np.asarray(tokens) if t != self.end_of_document]
        return self._tokenizer.decode(ids, skip_special_tokens=False)


def train_bpe(texts: list[str], vocab_size: int) -> BPETokenizer:
    """Byte-level BPE trained on ``texts`` with at most ``vocab_size`` tokens.

    Every byte is in the vocabulary, so any text round-trips; one id is the
    end-of-document token. A small corpus may stop merging below ``vocab_size``: the
    tokenizer's ``vocab_size`` is the real one. The trained tokenizer is cached as JSON
    under ``$SCALELAB_CACHE_DIR/tokenizers``, keyed by the SHA-256 of ``texts`` and by
    ``vocab_size``, so each cell of a grid gets the same tokenizer without retraining.

    Needs the optional ``tokenizers`` package (``pip install 'scalelab[text]'``).
    Raises :class:`InputError` for a ``vocab_size`` below 257 (256 bytes and the
    separator).
    """
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    except ImportError:
        raise InputError(
            "tokenizer = 'bpe' needs the tokenizers package: "
            "pip install 'scalelab[text]' (or use tokenizer = 'byte')"
        ) from None
    if vocab_size < 257:
        raise InputError(
            f"vocab_size = {vocab_size}: byte-level BPE needs at least 257 "
            "(the 256 bytes and the end-of-document token)"
        )
    from scalelab.data.builtin import cache_dir

    key = f"{BPE_CACHE_FORMAT}-{_texts_sha256(texts)}-{vocab_size}"
    path = cache_dir() / "tokenizers" / f"{key}.json"
    if path.is_file():
        # tokenizers reports a file it cannot parse as a bare Exception; such a file
        # (truncated, foreign) is trained again and replaced.
        with contextlib.suppress(Exception):
            return BPETokenizer(Tokenizer.from_file(str(path)), path)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BPE_END_OF_DOCUMENT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole and renamed, so a reader in another process never sees half a file.
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    tokenizer.save(str(partial))
    os.replace(partial, path)
    return BPETokenizer(tokenizer, path)


def token_stream(documents: list[Document], tokenizer) -> np.ndarray:
    """The documents' tokens end to end, each document followed by the tokenizer's
    end-of-document token."""
    texts = [doc.text for doc in documents]
    if hasattr(tokenizer, "encode_batch"):
        encoded = tokenizer.encode_batch(texts)
    else:
        encoded = [tokenizer.encode(text) for text in texts]
    separator = np.array([tokenizer.end_of_document], dtype=_stream_dtype(tokenizer))
    parts = [piece for tokens in encoded for piece in (tokens, separator)]
    if not parts:
        return np.zeros(0, dtype=separator.dtype)
    return np.concatenate(parts).astype(separator.dtype, copy=False)


def decode_documents(tokens, tokenizer) -> list[str]:
    """The texts of a stream made by :func:`token_stream`, split at its separators."""
    values = np.asarray(tokens)
    ends = np.flatnonzero(values == tokenizer.end_of_document)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [tokenizer.decode(values[a:b]) for a, b in zip(starts, ends)]


def _stream_dtype(tokenizer) -> type:
    return np.uint16 if tokenizer.vocab_size <= 2**16 else np.int32


# --- corpora --------------------------------------------------------------------------


def text_files(path: str | Path) -> list[Path]:
    """The files of a text corpus at ``path``: the file itself, every file under a folder
    (recursively), or the files a glob pattern matches, in sorted order."""
    target = Path(str(path)).expanduser()
    if target.is_file():
        return [target]
    if target.is_dir():
        return sorted(p for p in target.rglob("*") if p.is_file())
    return sorted(Path(p) for p in glob.glob(str(target), recursive=True) if Path(p).is_file())


def read_documents(path: str | Path) -> list[Document]:
    """The documents at ``path`` (:func:`text_files`): each file is a document, named by
    its path. Empty files are left out.

    Raises :class:`DatasetError` naming the path when nothing matches or every file is
    empty, and naming the file when one is not UTF-8 text.
    """
    text = str(path)
    files = text_files(path)
    if not files:
        raise DatasetError(
            f"{text}: no text files found (no such file or folder, or no match)"
        )
    documents = []
    for file in files:
        try:
            documents.append(Document(str(file), file.read_text(encoding="utf-8")))
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{file}: not UTF-8 text (byte {exc.start})") from None
    documents = [doc for doc in documents if doc.text]
    if not documents:
        plural = "s" * (len(files) != 1)
        raise DatasetError(
            f"{text}: the corpus is empty ({len(files)} empty file{plural})"
        )
    return documents


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files() -> list[Path]:
    """The standard library's ``.py`` files, sorted by their path relative to the library
    (:func:`pystdlib_documents` says which are left out)."""
    root = stdlib_root()
    files = []
    for folder, subfolders, names in os.walk(root):
        # Pruned in place, so os.walk never descends into site-packages (it is large).
        subfolders[:] = [name for name in subfolders if name not in STDLIB_SKIPPED]
        files += [Path(folder, name) for name in names if name.endswith(".py")]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def pystdlib_documents() -> tuple[list[Document], dict]:
    """The running Python's standard library ``.py`` files: a corpus every machine has.

    Files come in sorted order of their path relative to the library, which names
    them. Left out: installed packages (``site-packages``, ``dist-packages``), test
    suites (every ``test``, ``tests`` and ``idle_test`` folder) and the few files that
    are not UTF-8; so one Python version gives one corpus on every machine. Returns the
    documents and a record ``{"python_version", "n_files", "sha256"}``, the SHA-256 of
    the texts (:func:`corpus_sha256`).
    """
    root = stdlib_root()
    files = stdlib_files()
    documents = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # deliberately in another encoding: not text to learn from
        if text:
            documents.append(Document(file.relative_to(root).as_posix(), text))
    record = {
        "python_version": ".".join(map(str, sys.version_info[:3])),
        "n_files": len(documents),
        "sha256": corpus_sha256(documents),
    }
    return documents, record


def corpus_sha256(documents: list[Document]) -> str:
    """SHA-256 of the documents' texts in order; names are left out, so a corpus keeps
    its hash when its folder moves."""
    return _texts_sha256([doc.text for doc in documents])


def _texts_sha256(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        # Length-prefixed, so ["ab", "c"] and ["a", "bc"] hash differently.
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


def split_documents(
    documents: list[Document], *, val_share: float, test_share: float, seed: int
) -> tuple[list[Document], list[Document], list[Document]]:
    """A seeded ``(train, val, test)`` split by document, each kept in corpus order.

    Validation and test get ``round(share · n)`` documents, at least one each; the
    rest train. Raises :class:`DatasetError` when the corpus is too small for three
    non-empty splits.
    """
    n = len(documents)
    n_val = max(1, round(val_share * n))
    n_test = max(1, round(test_share * n))
    if n_val + n_test >= n:
        raise DatasetError(
            f"the corpus has {n} document{'s' * (n != 1)}: too few to hold out {n_val} "
            f"for validation and {n_test} for test and train on the rest (validation "
            "and test text come from held-out documents; give more, smaller files)"
        )
    order = np.random.default_rng(seed).permutation(n)
    parts = (order[n_val + n_test :], order[:n_val], order[n_val : n_val + n_test])
    train, val, test = ([documents[i] for i in sorted(part)] for part in parts)
    return train, val, test


@dataclass(frozen=True)
class TokenCorpus:
    """A corpus's token streams by split, and what converts a loss to bits per byte.

    ``train``, ``val`` and ``test`` are the token streams of disjoint sets of documents
    (:func:`token_stream`: each document followed by ``end_of_document``).
    ``bytes_per_token[split]`` is the split's UTF-8 bytes of text over its tokens,
    separators included, so a loss in nats per token averaged over a split's tokens
    is ``loss / ln 2 / bytes_per_token`` bits per byte (:meth:`bits_per_byte`), a
    number comparable across tokenizers. ``sha256`` is :func:`corpus_sha256` of all
    the documents; ``documents[split]`` names each split's documents.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    vocab_size: int
    end_of_document: int
    tokenizer: str  # "byte" or "bpe"
    bytes_per_token: dict[str, float]
    documents: dict[str, tuple[str, ...]]
    sha256: str
    token_bytes: np.ndarray | None = None  # bytes of text per token id (separator: 0)

    def split(self, name: str) -> np.ndarray:
        """The token stream of ``"train"``, ``"val"`` or ``"test"``."""
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def bits_per_byte(self, loss_nats_per_token: float, split: str) -> float:
        """A loss in nats per token as bits per byte of the split's text."""
        return loss_nats_per_token / math.log(2) / self.bytes_per_token[split]

    def bytes_of(self, tokens) -> int:
        """Bytes of text that ``tokens`` (any shape) stand for, exactly."""
        return int(self.token_bytes[np.asarray(tokens)].sum())

    def check_context(self, context: int) -> None:
        """Raise :class:`DatasetError` when a split is too short for one window
        (``context`` inputs and the next token)."""
        for name in SPLITS:
            check_context(self.split(name), context, what=f"the {name} split")


def build_corpus(
    documents: list[Document],
    *,
    tokenizer: str = "byte",
    vocab_size: int | None = None,
    val_share: float = 0.05,
    test_share: float = 0.05,
    seed: int = 0,
) -> TokenCorpus:
    """Split ``documents`` by document and tokenize each split.

    ``tokenizer = "byte"`` (vocabulary 257; ``vocab_size`` unset) or ``"bpe"``, trained
    on the training documents only, with ``vocab_size`` tokens at most (required).
    Raises :class:`DatasetError` for a corpus too small to split, :class:`InputError`
    for an unknown tokenizer or a ``vocab_size`` that does not fit it.
    """
    train, val, test = split_documents(
        documents, val_share=val_share, test_share=test_share, seed=seed
    )
    if tokenizer == "byte":
        if vocab_size not in (None, ByteTokenizer.vocab_size):
            raise InputError(
                f"vocab_size = {vocab_size}: the byte tokenizer's vocabulary is "
                "always 257; vocab_size is for tokenizer = 'bpe'"
            )
        encoder = ByteTokenizer()
    elif tokenizer == "bpe":
        if vocab_size is None:
            raise InputError("tokenizer = 'bpe' needs a vocab_size (at least 257)")
        encoder = train_bpe([doc.text for doc in train], vocab_size)
    else:
        raise InputError(f"tokenizer = {tokenizer!r}: unknown; use 'byte' or 'bpe'")
    splits = dict(zip(SPLITS, (train, val, test)))
    streams = {name: token_stream(docs, encoder) for name, docs in splits.items()}
    n_bytes = {
        name: sum(len(d.text.encode()) for d in docs) for name, docs in splits.items()
    }
    return TokenCorpus(
        train=streams["train"],
        val=streams["val"],
        test=streams["test"],
        vocab_size=encoder.vocab_size,
        end_of_document=encoder.end_of_document,
        tokenizer=encoder.name,
        bytes_per_token={name: n_bytes[name] / len(streams[name]) for name in SPLITS},
        documents={name: tuple(d.name for d in docs) for name, docs in splits.items()},
        sha256=corpus_sha256(documents),
        token_bytes=encoder.token_bytes(),
    )


# --- windows and token budgets ----------------------------------------------------------


def check_context(tokens, context: int, *, what: str = "the text") -> None:
    """Raise :class:`DatasetError` when ``tokens`` cannot hold one window of
    ``context`` inputs and its next-token target (``context + 1`` tokens)."""
    if context + 1 > len(tokens):
        raise DatasetError(
            f"context = {context} is larger than the text: {what} has {len(tokens)} "
            f"tokens and one window needs context + 1 = {context + 1}"
        )


def windows(tokens, starts, context: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``x = tokens[s : s + context]`` and targets ``y = tokens[s + 1 : s +
    context + 1]`` for each start ``s``: int64 arrays of shape ``(len(starts), context)``.
    """
    check_context(tokens, context)
    starts = np.asarray(starts, dtype=np.int64)
    if len(starts) and (starts.min() < 0 or starts.max() + context + 1 > len(tokens)):
        raise DatasetError(
            f"a window start of {int(starts.max())} with context = {context} runs past "
            f"the text's {len(tokens)} tokens"
        )
    index = starts[:, None] + np.arange(context + 1)[None, :]
    chunk = np.asarray(tokens)[index].astype(np.int64)
    return chunk[:, :-1], chunk[:, 1:]


def training_starts(
    unique_tokens: int, context: int, *, epoch: int, seed: int
) -> np.ndarray:
    """Window starts for one epoch over the first ``unique_tokens`` training tokens.

    The prefix is cut into its non-overlapping windows, ``0, context, 2·context, …``
    (``(unique_tokens - 1) // context`` of them, each needing ``context + 1`` tokens
    for its targets), and they come in an order drawn from ``(seed, epoch)``: every
    epoch sees each window once, in a new order.
    """
    check_context(
        range(unique_tokens), context, what=f"unique_tokens = {unique_tokens}"
    )
    n_windows = (unique_tokens - 1) // context
    return np.random.default_rng([seed, epoch]).permutation(n_windows) * context


def draw_starts(
    unique_tokens: int, context: int, *, n_windows: int, seed: int
) -> np.ndarray:
    """The first ``n_windows`` window starts of a run: epoch 0's
    :func:`training_starts`, then epoch 1's, and so on, so a budget beyond the unique
    data repeats it, each window as often as every other (to within one)."""
    per_epoch = (unique_tokens - 1) // context
    n_epochs = max(1, math.ceil(n_windows / max(per_epoch, 1)))
    epochs = [
        training_starts(unique_tokens, context, epoch=e, seed=seed)
        for e in range(n_epochs)
    ]
    return np.concatenate(epochs)[:n_windows]


def plan_tokens(
    tokens: int, unique_tokens: int, *, batch_size: int, context: int
) -> dict:
    """Steps and repetitions of a cell that trains on ``tokens`` tokens drawn from
    ``unique_tokens`` distinct ones.

    Returns ``steps`` of ``batch_size`` windows of ``context`` tokens (rounded up to
    whole steps, so at least ``tokens`` are seen, and at least one step), the
    ``tokens`` those steps see, and ``epochs``, that number over ``unique_tokens``:
    above 1 the unique data repeats. Raises :class:`DatasetError` when
    ``unique_tokens`` cannot hold one window.
    """
    check_context(
        range(unique_tokens), context, what=f"unique_tokens = {unique_tokens}"
    )
    per_step = batch_size * context
    steps = max(1, math.ceil(tokens / per_step))
    seen = steps * per_step
    return {"steps": steps, "tokens": seen, "epochs": seen / unique_tokens}


def unique_prefix(train, unique_tokens: int) -> np.ndarray:
    """The first ``unique_tokens`` tokens of a training stream: all the distinct data a
    cell may see. Raises :class:`DatasetError` when the stream is shorter."""
    if unique_tokens > len(train):
        raise DatasetError(
            f"unique_tokens = {unique_tokens} is more than the training split's "
            f"{len(train)} tokens"
        )
    return np.asarray(train)[:unique_tokens]
