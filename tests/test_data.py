"""runner.data: the corpus cache and the training stream (runner.data.stream)."""

from __future__ import annotations

import numpy as np
import pytest

import runner.data as data
from runner.data import CorpusCache
from runner.data.stream import Stream, unigram_entropy


def test_stream_windows_advance_and_wrap():
    tokens = np.arange(50, dtype=np.uint16)
    mask = (np.arange(50) % 2).astype(np.uint8)
    s = Stream(tokens, mask, seq_len=8)
    starts = s.starts(7)
    assert starts.tolist() == [0, 8, 16, 24, 32, 40, 0]  # 48 + 9 > 50: wraps to 0
    x, y = s.batch(starts[:2])
    assert x[1].tolist() == list(range(8, 16))
    assert y[1].tolist() == [9, -1, 11, -1, 13, -1, 15, -1]  # targets 9..16, masked where even
    assert s.n_targets(starts[:2]) == 8


def test_unigram_entropy_matches_direct_sum():
    t = np.array([0, 0, 1, 2, 2, 2, 2, 5])
    p = np.array([2, 1, 4, 1]) / 8
    assert unigram_entropy(t) == pytest.approx(-(p * np.log(p)).sum())
    assert unigram_entropy(t, np.array([1, 1, 0, 0, 0, 0, 0, 0])) == pytest.approx(0.0)


def test_corpus_cache_builds_a_synthetic_corpus_once_per_spec_and_seed(monkeypatch):
    built = []

    def fake_load(spec, seed):
        built.append((spec["kind"], seed))
        return object()

    monkeypatch.setattr(data, "load_corpus", fake_load)
    cache = CorpusCache()
    spec = {"kind": "synthetic", "n_people": 40}
    first = cache.load(spec, 0)
    assert cache.load(dict(spec), 0) is first and built == [("synthetic", 0)]
    assert cache.load(spec, 1) is not first and len(built) == 2  # another seed: another corpus
    assert cache.load(spec, 0) is not first and len(built) == 3  # only the latest is kept
    cache.load({"kind": "bin", "path": "x"}, 0)
    cache.load({"kind": "bin", "path": "x"}, 0)
    assert built[-2:] == [("bin", 0), ("bin", 0)]  # files are read every time


def test_corpus_cache_corpus_equals_a_fresh_build():
    spec = {"kind": "synthetic", "n_people": 20, "exposures": 2, "eval_examples": 8, "val_tokens": 2048}
    cached = CorpusCache().load(spec, 3)
    fresh = data.load_corpus(spec, 3)
    assert np.array_equal(cached.train, fresh.train) and np.array_equal(cached.val, fresh.val)
    assert cached.vocab_size == fresh.vocab_size
    with pytest.raises(Exception):
        CorpusCache().load({"kind": "nope"}, 0)
