"""Text corpora: documents from files, folders and globs; held-out documents; byte and
BPE tokens; the standard-library corpus; windows; tokens to steps and repetitions."""

from __future__ import annotations

import math
import sys
from collections import Counter

import numpy as np
import pytest

from scalelab.data.text import (
    ByteTokenizer,
    Document,
    build_corpus,
    decode_documents,
    draw_starts,
    plan_tokens,
    pystdlib_documents,
    read_documents,
    split_documents,
    token_stream,
    training_starts,
    unique_prefix,
    windows,
)
from scalelab.errors import DatasetError, InputError


def write_corpus(folder, n=12):
    """``n`` small documents, each with text no other document contains."""
    folder.mkdir()
    for i in range(n):
        text = f"document {i}: " + f"unique-{i}-" * (i + 3) + " é ü 中\n"
        (folder / f"doc{i:02d}.txt").write_text(text, encoding="utf-8")
    return folder


def test_byte_tokens_round_trip_non_ascii_text():
    tokenizer = ByteTokenizer()
    text = "héllo, 世界 🙂"
    tokens = tokenizer.encode(text)
    assert tokens.dtype == np.uint16 and len(tokens) == len(text.encode("utf-8"))
    assert tokenizer.decode(tokens) == text
    stream = token_stream([Document("a", text), Document("b", "x")], tokenizer)
    assert stream.tolist().count(tokenizer.end_of_document) == 2
    assert stream[-1] == tokenizer.end_of_document == 256
    assert decode_documents(stream, tokenizer) == [text, "x"]


def test_held_out_documents_never_appear_in_training(tmp_path):
    folder = write_corpus(tmp_path / "c")
    docs = read_documents(folder)
    corpus = build_corpus(docs, val_share=0.2, test_share=0.2, seed=3)
    names = corpus.documents
    assert all(names[split] for split in ("train", "val", "test"))
    assert not set(names["train"]) & set(names["val"] + names["test"])
    # Separators dropped, documents run together: a stricter test than one by one.
    training_text = ByteTokenizer().decode(corpus.train)
    texts = {doc.name: doc.text for doc in docs}
    for name in names["val"] + names["test"]:
        assert texts[name] not in training_text
    assert decode_documents(corpus.test, ByteTokenizer()) == [
        texts[name] for name in names["test"]
    ]
    assert corpus.sha256 == build_corpus(docs, seed=0, val_share=0.2).sha256


def test_bytes_per_token_turns_nats_per_token_into_bits_per_byte(tmp_path):
    docs = read_documents(write_corpus(tmp_path / "c"))
    corpus = build_corpus(docs, val_share=0.2, test_share=0.2, seed=0)
    test_docs = [doc for doc in docs if doc.name in corpus.documents["test"]]
    n_bytes = sum(len(doc.text.encode()) for doc in test_docs)
    # one token per byte plus one separator per document
    assert corpus.bytes_per_token["test"] == n_bytes / (n_bytes + len(test_docs))
    assert corpus.bits_per_byte(math.log(2), "test") == pytest.approx(
        1 / corpus.bytes_per_token["test"]
    )
    assert corpus.vocab_size == 257 and corpus.train.dtype == np.uint16


def test_document_split_is_fixed_by_its_seed():
    docs = [Document(f"d{i}", f"text {i}") for i in range(20)]
    first, again, other = (
        split_documents(docs, val_share=0.1, test_share=0.1, seed=s) for s in (0, 0, 1)
    )
    assert first == again and first != other
    train, val, test = first
    assert (len(train), len(val), len(test)) == (16, 2, 2)
    assert sorted(d.name for d in train + val + test) == sorted(d.name for d in docs)


def test_too_few_documents_to_hold_out_are_refused():
    with pytest.raises(DatasetError, match="2 documents: too few"):
        build_corpus([Document("a", "x"), Document("b", "y")])


def test_file_folder_and_glob(tmp_path):
    folder = write_corpus(tmp_path / "c", n=4)
    (folder / "sub").mkdir()
    (folder / "sub" / "deep.txt").write_text("nested", encoding="utf-8")
    assert [d.name for d in read_documents(folder / "doc01.txt")] == [
        str(folder / "doc01.txt")
    ]
    everything = read_documents(folder)
    assert [d.name for d in everything] == sorted(
        str(p) for p in folder.rglob("*") if p.is_file()
    )
    assert len(everything) == 5 and everything[-1].text == "nested"
    assert len(read_documents(str(folder / "doc0[12].txt"))) == 2
    assert len(read_documents(str(folder / "**" / "*.txt"))) == 5


def _bad_corpus(kind, folder):
    """A path no corpus can be read from, and the path the refusal must name."""
    if kind == "no match":
        return folder / "missing*.txt", folder / "missing*.txt"
    if kind == "empty":
        (folder / "a.txt").write_text("")
        (folder / "b.txt").write_text("")
        return folder, folder
    (folder / "good.txt").write_text("fine", encoding="utf-8")
    (folder / "latin1.txt").write_bytes("café".encode("latin-1"))
    return folder, folder / "latin1.txt"


@pytest.mark.parametrize(
    ("kind", "needle"),
    [
        ("no match", "no text files found"),
        ("empty", "corpus is empty"),
        ("latin-1", "not UTF-8"),
    ],
)
def test_bad_corpora_are_refused_naming_the_path(tmp_path, kind, needle):
    path, named = _bad_corpus(kind, tmp_path)
    with pytest.raises(DatasetError, match=needle) as raised:
        read_documents(path)
    assert str(raised.value).startswith(f"{named}:")


def test_pystdlib_corpus_is_deterministic_and_records_its_python():
    docs, record = pystdlib_documents()
    again, record_again = pystdlib_documents()
    assert record == record_again and [d.name for d in docs] == [d.name for d in again]
    assert record["n_files"] == len(docs) > 100
    assert record["python_version"] == ".".join(map(str, sys.version_info[:3]))
    assert len(record["sha256"]) == 64
    names = [d.name for d in docs]
    assert names == sorted(names) and "os.py" in names
    assert not any(
        part in ("test", "tests", "site-packages")
        for name in names
        for part in name.split("/")
    )


def test_windows_are_next_token_pairs():
    tokens = np.arange(20, dtype=np.uint16)
    x, y = windows(tokens, np.array([0, 5]), context=4)
    assert x.dtype == y.dtype == np.int64 and x.shape == y.shape == (2, 4)
    assert x.tolist() == [[0, 1, 2, 3], [5, 6, 7, 8]]
    assert y.tolist() == [[1, 2, 3, 4], [6, 7, 8, 9]]
    with pytest.raises(DatasetError, match="context = 4 is larger than the text"):
        windows(np.arange(4), np.array([0]), context=4)
    with pytest.raises(DatasetError, match="runs past"):
        windows(tokens, np.array([16]), context=4)


def test_a_split_shorter_than_the_context_is_refused(tmp_path):
    corpus = build_corpus(read_documents(write_corpus(tmp_path / "c")), seed=0)
    corpus.check_context(16)
    with pytest.raises(DatasetError, match="larger than the text: the val split"):
        corpus.check_context(len(corpus.val))


def test_tokens_to_steps_and_repetitions():
    plan = plan_tokens(10_000, 2_500, batch_size=8, context=32)
    assert plan["steps"] == math.ceil(10_000 / 256) == 40
    assert plan["tokens"] == 40 * 256
    assert plan["epochs"] == pytest.approx(40 * 256 / 2_500)  # about 4 repeats
    single = plan_tokens(100, 10_000, batch_size=8, context=32)
    assert single["steps"] == 1 and single["epochs"] < 1
    with pytest.raises(DatasetError, match="unique_tokens = 16"):
        plan_tokens(1000, 16, batch_size=1, context=16)
    with pytest.raises(DatasetError, match="unique_tokens = 50 is more"):
        unique_prefix(np.arange(40), 50)


def test_training_windows_cover_the_unique_prefix_once_per_epoch():
    starts = training_starts(1001, 10, epoch=0, seed=0)
    assert sorted(starts.tolist()) == list(range(0, 1000, 10))
    assert training_starts(1001, 10, epoch=1, seed=0).tolist() != starts.tolist()
    assert training_starts(1001, 10, epoch=0, seed=0).tolist() == starts.tolist()


def test_a_budget_beyond_the_unique_data_repeats_it_evenly():
    unique, context = 401, 10  # 40 windows
    plan = plan_tokens(1000, unique, batch_size=10, context=context)
    starts = draw_starts(unique, context, n_windows=plan["steps"] * 10, seed=0)
    counts = Counter(starts.tolist())
    assert len(starts) == 100 and set(counts) == set(range(0, 400, 10))
    assert sorted(set(counts.values())) == [
        2,
        3,
    ]  # 2.5 epochs: each window 2 or 3 times
    assert plan["epochs"] == pytest.approx(1000 / unique)
    x, y = windows(unique_prefix(np.arange(5000), unique), starts, context)
    assert x.max() < unique and y.max() < unique  # never beyond the unique tokens


def test_tokenizer_options_are_checked():
    docs = [Document(f"d{i}", "x") for i in range(5)]
    with pytest.raises(InputError, match="vocab_size = 300"):
        build_corpus(docs, vocab_size=300)
    with pytest.raises(InputError, match="'words'"):
        build_corpus(docs, tokenizer="words")
    with pytest.raises(InputError, match="needs a vocab_size"):
        build_corpus(docs, tokenizer="bpe")


def test_bpe_trains_on_the_training_split_and_round_trips(tmp_path, monkeypatch):
    pytest.importorskip(
        "tokenizers",
        reason="BPE needs the optional tokenizers package (scalelab[text])",
    )
    monkeypatch.setenv("SCALELAB_CACHE_DIR", str(tmp_path / "cache"))
    docs = read_documents(write_corpus(tmp_path / "c", n=20))
    corpus = build_corpus(docs, tokenizer="bpe", vocab_size=300, val_share=0.1, seed=0)
    assert corpus.tokenizer == "bpe" and 257 < corpus.vocab_size <= 300
    assert corpus.bytes_per_token["train"] > 1.5  # merges make tokens longer than bytes
    cached = list((tmp_path / "cache" / "tokenizers").glob("*.json"))
    assert len(cached) == 1
    again = build_corpus(docs, tokenizer="bpe", vocab_size=300, val_share=0.1, seed=0)
    assert np.array_equal(again.train, corpus.train)
    cached[0].write_text("{truncated")  # a damaged cache is trained again
    repaired = build_corpus(
        docs, tokenizer="bpe", vocab_size=300, val_share=0.1, seed=0
    )
    assert np.array_equal(repaired.train, corpus.train)

    from scalelab.data.text import train_bpe

    train_texts = [d.text for d in docs if d.name in corpus.documents["train"]]
    tokenizer = train_bpe(train_texts, 300)  # the cached one
    assert tokenizer.path == cached[0]
    texts = {d.name: d.text for d in docs}
    held_out = decode_documents(corpus.test, tokenizer)
    assert held_out == [texts[name] for name in corpus.documents["test"]]
    assert tokenizer.decode(tokenizer.encode("naïve 中文 🙂")) == "naïve 中文 🙂"


def test_bpe_without_tokenizers_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # import fails
    from scalelab.data.text import train_bpe

    with pytest.raises(InputError, match=r"pip install 'scalelab\[text\]'"):
        train_bpe(["some text"], 300)
