"""Real data: nanoGPT ``.bin`` memmaps and local ``.txt`` / ``.jsonl`` text, each as a TokenCorpus.

- ``bin``: pre-tokenized uint16 or uint32 arrays in nanoGPT's format (``train.bin`` and
  ``val.bin``, raw little-endian token ids with no header), opened as read-only memmaps.
- ``text``: a ``.txt`` file (one document) or a ``.jsonl`` file (one document per line, the
  string under ``field``), encoded by ``ByteTokenizer`` (UTF-8 bytes 0-255, separator 256);
  the last ``val_fraction`` of the token stream is held out for validation.

Both give a TokenCorpus with no masks and no tasks (validation loss only).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from runner.data import TokenCorpus
from scaling.errors import MoescaleError

BIN_DTYPES = {"uint16": np.uint16, "uint32": np.uint32}
BIN_KEYS = {"kind", "path", "train", "val", "dtype", "vocab_size"}
TEXT_KEYS = {"kind", "path", "field", "val_fraction"}


def _check_keys(spec: dict, known: set[str]) -> None:
    unknown = sorted(set(spec) - known)
    if unknown:
        raise MoescaleError(
            f"data ({spec.get('kind')}): unknown key(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}"
        )


class ByteTokenizer:
    """Byte-level tokenizer: ids 0-255 are UTF-8 bytes, 256 separates documents (vocab_size 257)."""

    SEP = 256
    vocab_size = 257

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids if int(i) < 256).decode("utf-8", errors="replace")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"kind": "bytes", "vocab_size": self.vocab_size, "separator": self.SEP}) + "\n")


def _token_file(path: Path, dtype: np.dtype, key: str) -> np.ndarray:
    if not path.is_file():
        raise MoescaleError(f"{path}: data key {key!r}: no such file")
    size = path.stat().st_size
    itemsize = np.dtype(dtype).itemsize
    if size == 0 or size % itemsize:
        raise MoescaleError(
            f"{path}: data key {key!r}: not a token file ({size} bytes is not a positive multiple of "
            f"{itemsize}, the size of {np.dtype(dtype).name})"
        )
    with open(path, "rb") as fh:
        head = fh.read(64)
    if len(head) >= 16 and all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        # token ids almost never spell 16 printable bytes in a row (ids < 256 have a zero byte)
        raise MoescaleError(f"{path}: data key {key!r}: not a token file (it starts with text; use kind: text)")
    return np.memmap(path, dtype=dtype, mode="r")


def load_bin(spec: dict) -> TokenCorpus:
    """nanoGPT memmaps: ``path`` (a directory holding train.bin and val.bin) or ``train`` and
    ``val`` (two files); ``dtype`` uint16 (default) or uint32; ``vocab_size`` (default: the
    largest id + 1). Ids at or above a given vocab_size are an error naming the file."""
    _check_keys(spec, BIN_KEYS)
    name = spec.get("dtype", "uint16")
    if name not in BIN_DTYPES:
        raise MoescaleError(f"data key 'dtype': {name!r} is not one of {', '.join(BIN_DTYPES)}")
    if "path" in spec:
        if not Path(spec["path"]).is_dir():
            raise MoescaleError(f"{spec['path']}: data key 'path': not a directory holding train.bin and val.bin")
        files = {"train": Path(spec["path"]) / "train.bin", "val": Path(spec["path"]) / "val.bin"}
        keys = {"train": "path", "val": "path"}
    elif "train" in spec and "val" in spec:
        files = {"train": Path(spec["train"]), "val": Path(spec["val"])}
        keys = {"train": "train", "val": "val"}
    else:
        raise MoescaleError("data (bin): give 'path' (a directory with train.bin and val.bin) or both 'train' and 'val'")
    arrays = {part: _token_file(f, BIN_DTYPES[name], keys[part]) for part, f in files.items()}
    largest = {part: int(a.max()) for part, a in arrays.items()}
    vocab = spec.get("vocab_size")
    if vocab is None:
        vocab = max(largest.values()) + 1
    elif not isinstance(vocab, int) or isinstance(vocab, bool) or vocab <= 0:
        raise MoescaleError(f"data key 'vocab_size': must be a positive integer, got {vocab!r}")
    for part, top in largest.items():
        if top >= vocab:
            raise MoescaleError(f"{files[part]}: token id {top} is not below data key 'vocab_size' ({vocab}); not a token file of this vocabulary?")
    return TokenCorpus(train=arrays["train"], val=arrays["val"], vocab_size=int(vocab), source=str(files["train"]))


def load_text(spec: dict) -> TokenCorpus:
    """Local text: ``path`` to a .txt (one document) or .jsonl (one document per line, the
    string under ``field``, default "text"); byte-level tokens; the last ``val_fraction``
    (default 0.1) of the stream is the validation stream."""
    _check_keys(spec, TEXT_KEYS)
    if "path" not in spec:
        raise MoescaleError("data (text): missing key 'path'")
    path = Path(spec["path"])
    if not path.is_file():
        raise MoescaleError(f"{path}: data key 'path': no such file")
    frac = spec.get("val_fraction", 0.1)
    if not isinstance(frac, (int, float)) or isinstance(frac, bool) or not 0 < frac < 1:
        raise MoescaleError(f"data key 'val_fraction': must be a number in (0, 1), got {frac!r}")
    field = spec.get("field", "text")
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MoescaleError(f"{path}: data key 'path': not UTF-8 text ({exc})") from None
    tok = ByteTokenizer()
    if path.suffix == ".jsonl":
        docs = []
        for i, line in enumerate(raw.splitlines()):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise MoescaleError(f"{path}:{i + 1}: malformed JSON line: {exc}") from None
            if not isinstance(obj, dict) or not isinstance(obj.get(field), str):
                raise MoescaleError(f"{path}:{i + 1}: data key 'field': no string under {field!r}")
            docs.append(obj[field])
    elif path.suffix == ".txt":
        docs = [raw]
    else:
        raise MoescaleError(f"{path}: data key 'path': expected a .txt or .jsonl file")
    if not any(doc.strip() for doc in docs):
        raise MoescaleError(f"{path}: data key 'path': holds no text")
    ids: list[int] = []
    for doc in docs:
        ids.extend(tok.encode(doc))
        ids.append(ByteTokenizer.SEP)
    stream = np.asarray(ids, dtype=np.uint16)
    cut = int(round(len(stream) * (1 - frac)))
    return TokenCorpus(train=stream[:cut], val=stream[cut:], vocab_size=tok.vocab_size, tokenizer=tok, source=str(path))


__all__ = ["ByteTokenizer", "load_bin", "load_text", "BIN_DTYPES"]
