"""Text corpora: documents from files, folders and globs; held-out documents; byte
tokens; the bundled standard-library corpus; tokens to steps and repetitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scalelab.data.text import (
    BYTE_VOCAB,
    END_OF_DOCUMENT,
    Document,
    build_corpus,
    byte_tokens,
    decode_bytes,
    plan_tokens,
    pystdlib_documents,
    read_documents,
    training_starts,
    windows,
)  # fmt: skip
from scalelab.errors import DatasetError


def write_corpus(folder, n=12):
    folder.mkdir()
    for i in range(n):
        (folder / f"doc{i:02d}.txt").write_text(f"document {i}: " + f"unique-{i}-" * (i + 3) + " é ü 中", encoding="utf-8")
    return folder


def test_byte_tokens_round_trip_non_ascii_text():
    docs = [Document("a", "héllo, 世界"), Document("b", "x")]
    tokens = byte_tokens(docs)
    assert tokens.dtype == np.uint16 and tokens.max() <= END_OF_DOCUMENT
    assert list(tokens).count(END_OF_DOCUMENT) == 2
    assert decode_bytes(tokens) == "héllo, 世界\nx\n"


def test_held_out_documents_never_appear_in_training(tmp_path):
    corpus = build_corpus(read_documents(write_corpus(tmp_path / "c")), val_share=0.2, test_share=0.2, seed=3)
    training_text = decode_bytes(corpus.train)
    held_out = corpus.documents["val"] + corpus.documents["test"]
    assert held_out and not set(held_out) & set(corpus.documents["train"])
    for name in held_out:
        text = (tmp_path / "c" / name.rsplit("/", 1)[-1]).read_text(encoding="utf-8")
        assert text not in training_text
    assert corpus.vocab_size == BYTE_VOCAB
    assert corpus.bits_per_byte(math.log(2), "test") == pytest.approx(1 / corpus.bytes_per_token["test"])


def test_document_split_is_fixed_by_its_seed(tmp_path):
    docs = read_documents(write_corpus(tmp_path / "c"))
    first, again, other = (build_corpus(docs, val_share=0.2, test_share=0.2, seed=s).documents for s in (0, 0, 1))
    assert first == again and first != other


def test_file_folder_and_glob(tmp_path):
    folder = write_corpus(tmp_path / "c", n=4)
    assert len(read_documents(folder / "doc01.txt")) == 1
    assert [d.name for d in read_documents(folder)] == sorted(str(p) for p in folder.iterdir())
    assert len(read_documents(str(folder / "doc0[12].txt"))) == 2


def bad_corpus(kind, folder):
    """A path that no corpus can be read from, of the given kind."""
    if kind == "no-match":
        return folder / "missing*.txt"
    path = folder / f"{kind}.txt"
    if kind == "empty":
        path.write_text("")
    else:
        path.write_bytes(b"ok \xff\xfe")
    return path


@pytest.mark.parametrize(("kind", "needle"), [("no-match", "no text files found"), ("empty", "corpus is empty"), ("latin1", "not UTF-8")])
def test_bad_corpora_are_refused_naming_the_path(tmp_path, kind, needle):
    path = bad_corpus(kind, tmp_path)
    with pytest.raises(DatasetError, match=needle) as raised:
        read_documents(path)
    assert str(path) in str(raised.value)


def test_too_few_documents_to_hold_out_are_refused():
    with pytest.raises(DatasetError, match="at least 3"):
        build_corpus([Document("a", "x"), Document("b", "y")])


def test_pystdlib_corpus_is_deterministic_and_records_its_python():
    docs, record = pystdlib_documents()
    again, record_again = pystdlib_documents()
    assert record == record_again and [d.name for d in docs] == [d.name for d in again]
    assert record["n_files"] == len(docs) > 100
    assert record["python_version"].count(".") == 2
    assert not any(d.name.startswith(("test/", "site-packages/")) for d in docs)


def test_windows_are_next_token_pairs():
    tokens = np.arange(20, dtype=np.uint16)
    x, y = windows(tokens, np.array([0, 5]), context=4)
    assert x.dtype == np.int64 and x.shape == (2, 4)
    assert x.tolist() == [[0, 1, 2, 3], [5, 6, 7, 8]] and y.tolist() == [[1, 2, 3, 4], [6, 7, 8, 9]]
    with pytest.raises(DatasetError, match="larger than the text"):
        windows(np.arange(4), np.array([0]), context=4)


def test_tokens_to_steps_and_repetitions():
    plan = plan_tokens(10_000, 2_500, batch_size=8, context=32)
    assert plan["steps"] == math.ceil(10_000 / 256) == 40
    assert plan["tokens"] == 40 * 256 and plan["epochs"] == pytest.approx(40 * 256 / 2_500)
    assert plan_tokens(100, 10_000, batch_size=8, context=32)["steps"] == 1  # a budget below one step is one step
    with pytest.raises(DatasetError, match="unique tokens"):
        plan_tokens(1000, 16, batch_size=1, context=16)


def test_training_windows_cover_the_unique_prefix_once_per_epoch():
    starts = training_starts(1001, 10, epoch=0, seed=0)
    assert sorted(starts.tolist()) == list(range(0, 1000, 10))
    assert training_starts(1001, 10, epoch=1, seed=0).tolist() != starts.tolist()
    assert starts.max() + 10 + 1 <= 1001
