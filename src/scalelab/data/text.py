"""Text corpora as token streams, for language-model studies.

A corpus is a list of documents (files). They are split by document, seeded, into
training, validation and test documents, so held-out text never appears in the training
stream. Each split is its documents' tokens end to end, each document followed by an
end-of-document token. The default tokenizer is the UTF-8 bytes themselves (256 symbols
plus that separator), which needs no dependency and no training.

The data axis of a language-model study is tokens: a cell trains on ``tokens`` tokens,
drawn from the first ``unique_tokens`` of the training stream; when ``tokens`` exceeds
``unique_tokens`` the unique data repeats, ``tokens / unique_tokens`` epochs of it
(:func:`plan_tokens`). Windows are non-overlapping ``context``-token slices of that
prefix, reshuffled each epoch (:func:`training_starts`).
"""

from __future__ import annotations

import glob
import hashlib
import math
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scalelab.errors import DatasetError

BYTE_VOCAB = 257  # 256 byte values and the end-of-document token
END_OF_DOCUMENT = 256


@dataclass(frozen=True)
class Document:
    name: str
    text: str


def read_documents(path: str | Path) -> list[Document]:
    """The documents at ``path``: one UTF-8 file, every file under a folder (recursively,
    in sorted order) or the files a glob matches; each file is a document.

    Raises :class:`DatasetError` naming the path when nothing matches, a file is not
    UTF-8 text, or every document is empty.
    """
    text = str(path)
    target = Path(text).expanduser()
    if target.is_file():
        files = [target]
    elif target.is_dir():
        files = sorted(p for p in target.rglob("*") if p.is_file())
    else:
        files = sorted(Path(p) for p in glob.glob(str(target), recursive=True) if Path(p).is_file())
    if not files:
        raise DatasetError(f"{text}: no text files found")
    documents = []
    for file in files:
        try:
            documents.append(Document(str(file), file.read_text(encoding="utf-8")))
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{file}: not UTF-8 text (byte {exc.start})") from None
    if not any(doc.text for doc in documents):
        raise DatasetError(f"{text}: the corpus is empty ({len(files)} empty file{'s' * (len(files) != 1)})")
    return [doc for doc in documents if doc.text]


def pystdlib_documents() -> tuple[list[Document], dict]:
    """The Python standard library's own ``.py`` files, in sorted order: a corpus every
    machine has offline. Installed packages (``site-packages``), the test suites
    (``test``, ``idlelib/idle_test``) and vendored third-party code are left out, so the
    corpus is the same for every install of one Python version. Returns the documents
    and a record of the corpus (Python version, file count, SHA-256 of the content)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skipped = {"site-packages", "dist-packages", "test", "tests", "idle_test", "_vendor", "__pycache__"}
    files = sorted(p for p in root.rglob("*.py") if not skipped.intersection(p.relative_to(root).parts))
    documents, digest = [], hashlib.sha256()
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # a few files are deliberately not UTF-8 (encoding tests); not text to learn from
        name = str(file.relative_to(root))
        documents.append(Document(name, text))
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    record = {"python_version": ".".join(map(str, sys.version_info[:3])), "n_files": len(documents), "sha256": digest.hexdigest()}
    return documents, record


def split_documents(documents: list[Document], *, val_share: float, test_share: float, seed: int) -> tuple[list, list, list]:
    """Seeded (train, val, test) split by document; every split gets at least one."""
    if len(documents) < 3:
        raise DatasetError(f"the corpus has {len(documents)} document{'s' * (len(documents) != 1)}; validation and test text come from held-out documents, so it needs at least 3")
    order = np.random.default_rng(seed).permutation(len(documents))
    n_val = max(1, round(val_share * len(documents)))
    n_test = max(1, round(test_share * len(documents)))
    if n_val + n_test >= len(documents):
        raise DatasetError(f"the corpus has {len(documents)} documents: too few to hold out {n_val} for validation and {n_test} for test")
    picked = [[documents[i] for i in sorted(part)] for part in (order[n_val + n_test :], order[:n_val], order[n_val : n_val + n_test])]
    return picked[0], picked[1], picked[2]


def byte_tokens(documents: list[Document]) -> np.ndarray:
    """The documents' UTF-8 bytes end to end, each followed by :data:`END_OF_DOCUMENT`."""
    parts = []
    for doc in documents:
        parts.append(np.frombuffer(doc.text.encode("utf-8"), dtype=np.uint8).astype(np.uint16))
        parts.append(np.array([END_OF_DOCUMENT], dtype=np.uint16))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint16)


def decode_bytes(tokens: np.ndarray) -> str:
    """Text of byte tokens, end-of-document tokens as newlines."""
    values = np.asarray(tokens)
    return bytes(np.where(values == END_OF_DOCUMENT, ord("\n"), values).astype(np.uint8)).decode("utf-8", errors="replace")


@dataclass(frozen=True)
class TokenCorpus:
    """A corpus's token streams by split, with what converts a loss to bits per byte."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    vocab_size: int
    bytes_per_token: dict  # split -> UTF-8 bytes of text per token
    documents: dict  # split -> document names
    sha256: str  # of the whole corpus, in document order

    def bits_per_byte(self, loss_nats_per_token: float, split: str) -> float:
        """A loss in nats per token as bits per byte of the split's text."""
        return loss_nats_per_token / math.log(2) / self.bytes_per_token[split]


def build_corpus(documents: list[Document], *, val_share: float = 0.05, test_share: float = 0.05, seed: int = 0) -> TokenCorpus:
    """Split ``documents`` by document and tokenize each split as bytes."""
    digest = hashlib.sha256()
    for doc in documents:
        digest.update(doc.name.encode() + b"\0" + doc.text.encode() + b"\0")
    splits = dict(zip(("train", "val", "test"), split_documents(documents, val_share=val_share, test_share=test_share, seed=seed)))
    tokens = {name: byte_tokens(docs) for name, docs in splits.items()}
    per_token = {name: sum(len(d.text.encode()) for d in docs) / len(tokens[name]) for name, docs in splits.items()}
    return TokenCorpus(
        train=tokens["train"], val=tokens["val"], test=tokens["test"], vocab_size=BYTE_VOCAB, bytes_per_token=per_token,
        documents={name: [d.name for d in docs] for name, docs in splits.items()}, sha256=digest.hexdigest(),
    )  # fmt: skip


def plan_tokens(tokens: int, unique_tokens: int, *, batch_size: int, context: int) -> dict:
    """Steps and repetitions of a cell that trains on ``tokens`` tokens drawn from
    ``unique_tokens`` distinct ones: ``steps`` of ``batch_size`` windows of ``context``
    tokens (the last step whole, so at least ``tokens`` are seen) and ``epochs`` over the
    unique data."""
    if context + 1 > unique_tokens:
        raise DatasetError(f"context = {context} needs at least {context + 1} unique tokens; there are {unique_tokens}")
    per_step = batch_size * context
    steps = max(1, math.ceil(tokens / per_step))
    return {"steps": steps, "tokens": steps * per_step, "epochs": steps * per_step / unique_tokens}


def training_starts(unique_tokens: int, context: int, *, epoch: int, seed: int) -> np.ndarray:
    """Window starts for one epoch over the first ``unique_tokens`` tokens: the
    non-overlapping windows of that prefix (each needs ``context + 1`` tokens: inputs and
    next-token targets), in an order shuffled per epoch and seed."""
    n_windows = (unique_tokens - 1) // context
    if n_windows < 1:
        raise DatasetError(f"context = {context} needs at least {context + 1} unique tokens; there are {unique_tokens}")
    return np.random.default_rng([seed, epoch]).permutation(n_windows) * context


def windows(tokens: np.ndarray, starts: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and next-token targets, int64 arrays of shape ``(len(starts), context)``."""
    if len(tokens) < context + 1:
        raise DatasetError(f"context = {context} is larger than the text ({len(tokens)} tokens)")
    index = np.asarray(starts)[:, None] + np.arange(context + 1)[None, :]
    chunk = np.asarray(tokens, dtype=np.int64)[index]
    return chunk[:, :-1], chunk[:, 1:]
