"""runner.data.files and load_corpus: nanoGPT .bin memmaps and .txt/.jsonl text as TokenCorpus."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runner.data import TokenCorpus, load_corpus
from runner.data.files import ByteTokenizer
from scaling.errors import MoescaleError


def write_bin(d, train, val, dtype):
    d.mkdir(exist_ok=True)
    np.asarray(train, dtype=dtype).tofile(d / "train.bin")
    np.asarray(val, dtype=dtype).tofile(d / "val.bin")
    return d


@pytest.mark.parametrize("dtype", ["uint16", "uint32"])
def test_bin_memmaps_round_trip(tmp_path, dtype):
    train, val = [5, 1, 70000 if dtype == "uint32" else 7, 3], [2, 9]
    d = write_bin(tmp_path / "d", train, val, dtype)
    c = load_corpus({"kind": "bin", "path": str(d), "dtype": dtype}, seed=0)
    assert isinstance(c, TokenCorpus) and isinstance(c.train, np.memmap)
    assert c.train.tolist() == train and c.val.tolist() == val and c.train.dtype == np.dtype(dtype)
    assert c.vocab_size == max(train + val) + 1 and c.tasks == [] and c.train_mask is None
    c2 = load_corpus({"kind": "bin", "train": str(d / "train.bin"), "val": str(d / "val.bin"), "dtype": dtype,
                      "vocab_size": 80000}, seed=0)  # fmt: skip
    assert c2.vocab_size == 80000 and c2.source == str(d / "train.bin")


def test_bin_errors_name_the_file_and_key(tmp_path):
    d = write_bin(tmp_path / "d", [1, 2, 3], [4], "uint16")
    with pytest.raises(MoescaleError, match=r"nope\.bin: data key 'train': no such file"):
        load_corpus({"kind": "bin", "train": str(d / "nope.bin"), "val": str(d / "val.bin")}, 0)
    with pytest.raises(MoescaleError, match=r"val\.bin: token id 4 is not below data key 'vocab_size' \(4\)"):
        load_corpus({"kind": "bin", "path": str(d), "vocab_size": 4}, 0)
    (d / "val.bin").write_bytes(b"\x01\x02\x03")  # odd size: not uint16 tokens
    with pytest.raises(MoescaleError, match=r"val\.bin: data key 'path': not a token file \(3 bytes"):
        load_corpus({"kind": "bin", "path": str(d)}, 0)
    (d / "val.bin").write_text("Once upon a time there was a corpus!\n\n")
    with pytest.raises(MoescaleError, match=r"val\.bin: data key 'path': not a token file \(it starts with text"):
        load_corpus({"kind": "bin", "path": str(d)}, 0)
    with pytest.raises(MoescaleError, match=r"unknown key\(s\) 'paths'"):
        load_corpus({"kind": "bin", "paths": str(d)}, 0)
    with pytest.raises(MoescaleError, match=r"'dtype': 'int8'"):
        load_corpus({"kind": "bin", "path": str(d), "dtype": "int8"}, 0)
    with pytest.raises(MoescaleError, match=r"data key 'kind': 'csv'"):
        load_corpus({"kind": "csv"}, 0)


def test_text_and_jsonl_are_byte_tokens_with_separators(tmp_path):
    txt = tmp_path / "a.txt"
    txt.write_text("héllo world " * 10, encoding="utf-8")
    c = load_corpus({"kind": "text", "path": str(txt), "val_fraction": 0.25}, 0)
    stream = np.concatenate([c.train, c.val])
    expected = list(("héllo world " * 10).encode("utf-8")) + [ByteTokenizer.SEP]
    assert stream.tolist() == expected and len(c.val) == round(len(expected) * 0.25)
    assert c.vocab_size == 257 and c.tokenizer.decode(c.train[:6]) == "héllo"
    jl = tmp_path / "a.jsonl"
    jl.write_text("\n".join(json.dumps({"body": t}) for t in ["ab", "c"]) + "\n")
    c = load_corpus({"kind": "text", "path": str(jl), "field": "body", "val_fraction": 0.2}, 0)
    assert np.concatenate([c.train, c.val]).tolist() == [97, 98, 256, 99, 256]
    with pytest.raises(MoescaleError, match=r"a\.jsonl:1: data key 'field': no string under 'text'"):
        load_corpus({"kind": "text", "path": str(jl)}, 0)
    with pytest.raises(MoescaleError, match=r"missing\.txt: data key 'path': no such file"):
        load_corpus({"kind": "text", "path": str(tmp_path / "missing.txt")}, 0)
    (tmp_path / "b.bin").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(MoescaleError, match=r"b\.bin: data key 'path': not UTF-8 text"):
        load_corpus({"kind": "text", "path": str(tmp_path / "b.bin")}, 0)


def test_synthetic_spec_errors_name_the_key():
    with pytest.raises(MoescaleError, match="data \\(synthetic\\):.*n_peeple"):
        load_corpus({"kind": "synthetic", "n_peeple": 3}, 0)
