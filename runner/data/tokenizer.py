"""A closed word-level tokenizer: one token per whitespace-separated word of a fixed list.

The synthetic corpus (``runner.data.synthetic``) is generated from a known set of words
(name pieces, attribute values, template words, digits, symbols and specials), so its
vocabulary is closed and derived from the spec alone: nothing is trained or downloaded,
and the same spec always gives the same ids. ``save`` writes it as JSON beside a run so
the run directory is enough to decode its data.
"""

from __future__ import annotations

import json
from pathlib import Path

from scaling.errors import MoescaleError
from scaling.files import atomic_write

FORMAT = "moescale-closed-word-tokenizer/1"


class Tokenizer:
    """Word <-> id over a closed vocabulary; id i is ``tokens[i]``.

    encode("a b c") = [id(a), id(b), id(c)] (split on whitespace; a word outside the
    vocabulary is a MoescaleError naming it); decode(ids) joins the words with spaces, so
    decode(encode(s)) == " ".join(s.split()).
    """

    def __init__(self, tokens: list[str]):
        tokens = [str(t) for t in tokens]
        index: dict[str, int] = {}
        for i, tok in enumerate(tokens):
            if not tok or tok.split() != [tok]:
                raise MoescaleError(f"tokenizer: token {i} ({tok!r}) is empty or contains whitespace")
            if tok in index:
                raise MoescaleError(f"tokenizer: token {tok!r} appears twice (ids {index[tok]} and {i})")
            index[tok] = i
        self.tokens = tokens
        self.index = index

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other) -> bool:
        return isinstance(other, Tokenizer) and other.tokens == self.tokens

    def id(self, word: str) -> int:
        """The id of one word."""
        try:
            return self.index[word]
        except KeyError:
            raise MoescaleError(f"tokenizer: word {word!r} is not in the vocabulary") from None

    def encode(self, text: str) -> list[int]:
        """Ids of the whitespace-separated words of ``text``."""
        return [self.id(w) for w in text.split()]

    def decode(self, ids) -> str:
        """The words of ``ids`` joined by single spaces."""
        n = len(self.tokens)
        words = []
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise MoescaleError(f"tokenizer: id {i} is outside the vocabulary [0, {n})")
            words.append(self.tokens[i])
        return " ".join(words)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "tokens": list(self.tokens)}

    def save(self, path: str | Path) -> None:
        """Write the vocabulary as JSON, atomically (temporary file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Read a vocabulary written by ``save``."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise MoescaleError(f"{path}: tokenizer file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MoescaleError(f"{path}: not a tokenizer file ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("tokens"), list):
            raise MoescaleError(f"{path}: not a tokenizer file (expected format {FORMAT!r} and a tokens list)")
        return cls(data["tokens"])


__all__ = ["Tokenizer"]
