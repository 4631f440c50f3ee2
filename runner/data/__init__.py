"""Training data: what the training loop and the evaluator read.

Every source (the synthetic memorization/reasoning corpus, a nanoGPT ``.bin`` memmap, a
local ``.txt``/``.jsonl`` file) becomes one ``TokenCorpus``: a packed training stream, a
held-out validation stream, optional loss masks, the tokenizer and, for the synthetic
corpus, its evaluation tasks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np


@dataclass
class TokenCorpus:
    """Packed token streams and what goes with them.

    train, val:   1-D integer arrays (uint16 or uint32) of token ids, documents packed
                  back to back with separator tokens.
    train_mask, val_mask: None (every target counts) or 1-D uint8 arrays of the same
                  length; mask[i] = 1 when token i counts as a prediction target. A window
                  x = train[j:j+T] has targets y = train[j+1:j+T+1] weighted by
                  train_mask[j+1:j+T+1].
    vocab_size:   ids lie in [0, vocab_size); the model's vocab_size must be >= it.
    tokenizer:    None for pre-tokenized files, else an object with encode(str) -> list[int],
                  decode(ids) -> str and save(path).
    tasks:        evaluation tasks (synthetic corpus only), read by runner.evaluate.
    source:       the file the corpus came from (for error messages), None for synthetic data.
    """

    train: np.ndarray
    val: np.ndarray
    vocab_size: int
    train_mask: np.ndarray | None = None
    val_mask: np.ndarray | None = None
    tokenizer: object | None = None
    tasks: list = field(default_factory=list)
    source: str | None = None


DATA_KINDS = ("synthetic", "bin", "text")


def resolve_spec(spec: dict) -> dict:
    """The data spec with every default filled in, so that a run id hashed from it changes
    when a default of the synthetic corpus changes; file specs are returned as given.

    A synthetic spec also gets ``format``, ``runner.data.synthetic.FORMAT``: the version of
    the generators' text layout, so that runs of an older layout (other tokens from the same
    spec and seed) are never reused or resumed as runs of the new one."""
    from scaling.errors import MoescaleError

    if isinstance(spec, dict) and spec.get("kind") == "synthetic":
        from runner.data.synthetic import FORMAT, SyntheticSpec

        rest = {k: v for k, v in spec.items() if k != "kind"}
        try:
            return {"kind": "synthetic", "format": FORMAT, **SyntheticSpec.from_dict(rest).to_dict()}
        except MoescaleError as exc:
            raise MoescaleError(f"data (synthetic): {exc}") from None
    return spec


def load_corpus(spec: dict, seed: int) -> TokenCorpus:
    """The TokenCorpus a data spec names: spec["kind"] is "synthetic" (the other keys go to
    ``runner.data.synthetic.SyntheticSpec.from_dict``, built with ``seed``), "bin" (nanoGPT
    memmaps, ``runner.data.files.load_bin``) or "text" (.txt/.jsonl, ``load_text``).
    Bad specs raise MoescaleError naming the key (and file)."""
    from scaling.errors import MoescaleError

    if not isinstance(spec, dict) or "kind" not in spec:
        raise MoescaleError(f"data: expected a mapping with a 'kind' ({', '.join(DATA_KINDS)}), got {spec!r}")
    kind = spec["kind"]
    if kind == "synthetic":
        from runner.data.synthetic import SyntheticSpec, build_corpus

        rest = {k: v for k, v in spec.items() if k != "kind"}
        try:
            parsed = SyntheticSpec.from_dict(rest)
        except MoescaleError as exc:
            raise MoescaleError(f"data (synthetic): {exc}") from None
        return build_corpus(parsed, seed)
    if kind == "bin":
        from runner.data.files import load_bin

        return load_bin(spec)
    if kind == "text":
        from runner.data.files import load_text

        return load_text(spec)
    raise MoescaleError(f"data key 'kind': {kind!r} is not one of {', '.join(DATA_KINDS)}")


class CorpusCache:
    """Builds each synthetic corpus once and hands the same one to later runs with the same (spec, seed).

    A sweep worker trains run after run, usually on one synthetic spec and seed; building the
    corpus takes seconds to tens of seconds. Building is deterministic from (spec, seed) and
    training only reads the corpus, so a reused corpus trains exactly as a fresh build. Files
    ("bin", "text") are read each time (they may change on disk). Keeps the latest corpus only,
    to bound memory. Pass one to ``runner.train.train(..., corpora=cache)``.
    """

    def __init__(self):
        self._key = None
        self._corpus: TokenCorpus | None = None

    def load(self, spec: dict, seed: int) -> TokenCorpus:
        """``load_corpus(spec, seed)``, reusing the last synthetic corpus when (spec, seed) is the same."""
        if not isinstance(spec, dict) or spec.get("kind") != "synthetic":
            return load_corpus(spec, seed)
        key = (json.dumps(spec, sort_keys=True, default=str), seed)
        if key != self._key:
            self._key, self._corpus = None, None  # drop the old corpus before building the next
            self._corpus = load_corpus(spec, seed)
            self._key = key
        return self._corpus
