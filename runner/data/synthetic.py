"""The synthetic corpus: memorization (facts) and in-context reasoning (pointer, arith) mixed in one stream.

Nakamura et al. 2025 (arXiv 2508.18672) find that memorization follows total parameters
while reasoning also needs active compute. This corpus makes the two skills separable with
known ground truth, after Allen-Zhu & Li's "Physics of Language Models" tasks:
``runner.data.facts`` (a bioS-style knowledge base, task ``facts``, memorization) and
``runner.data.chains`` (``pointer``: k-hop pointer chasing; ``arith``: modular variable
binding chains; reasoning, evaluated on fresh problems of a held-out seed).

Everything is a function of ``(spec, seed)``: the vocabulary of the spec alone, the
knowledge base, the token streams, their loss masks and the evaluation problems of the
seed. Same spec and seed, byte-identical arrays.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from runner.data import TokenCorpus
from runner.data import chains, facts
from runner.data.tokenizer import Tokenizer
from scaling.errors import MoescaleError

SPECIALS = ("<pad>", "<sep>")
FAMILIES = ("facts", "pointer", "arith")


def _default_mixture() -> dict:
    return {"facts": 0.4, "pointer": 0.15, "arith": 0.45}


#: Version of the generated text's layout. Bump it whenever a change to the generators
#: (facts, chains, tokenizer) changes the tokens that one spec and seed give: it enters every
#: synthetic run's run_id (``runner.data.resolve_spec``). 2: pointer chasing lists key-image
#: pairs and ends its prompt with the start symbol.
FORMAT = 2


@dataclass
class SyntheticSpec:
    """What the synthetic corpus holds. ``SyntheticSpec()`` is the ``cpu-tiny`` default.

    Knowledge base (task ``facts``): ``n_people`` individuals, each with a birth date
    (12*28*50 values, log2 = 14.04 bits) and four single-token attributes of
    ``values_per_attribute`` values each (log2 64 = 6 bits): 38.04 bits per individual. Every
    biography appears ``exposures`` times in the training stream, in ``exposures`` rounds
    that each hold every individual once (so a run that reads a fraction q of the stream has
    seen every fact about q*exposures times), templates drawn from the question form and
    ``templates`` statement forms, sentence order re-drawn each time. A biography is ~45
    tokens (5 sentences of ~9 tokens that each repeat the full name).

    Sizing of the default (the ``cpu-tiny`` run data/cpu-tiny-run.yaml: 2 layers, d_model 64,
    E=4 top-1, 1M tokens in steps of 1,024 tokens, lr 1e-2; it must finish in ~2 minutes on 2
    CPU cores). Knowledge: 60 * 38.04 = 2,282 bits. The training stream is 674,952 tokens
    (60 * 100 * ~45 tokens of biographies = 40% of it), so the run reads it about 1.5 times
    and sees each fact ~150 times. Measured with that run through ``moescale train``
    (2026-12-02, quiet 2-core machine, Switch-style top-1 gates): 2 threads, 40.1 s wall,
    facts accuracy 99.6% (chance 1.6%), pointer 59.8% (chance 12.5%), arith 60.2% (chance
    20%), val loss 0.252 nats vs unigram entropy 4.19. Earlier, with Mixtral's constant top-1
    gate: 2 threads facts 97.7%, pointer 100%, arith 63.3%; 1 thread a run (other rounding,
    so another trajectory) seed 0 facts 92.6%, pointer 18.4%, arith 84.0%, seed 1 facts
    96.1%, pointer 100%, arith 87.1%.
    Both reasoning skills appear suddenly, at a step that depends on the seed (pointer
    chasing jumps from chance to ~100% within a few hundred steps, or not within the run):
    at 700k tokens pointer chasing was still at chance on most seeds, and mixtures that give it
    more tokens (0.4/0.3/0.3, 0.35/0.3/0.35, 0.4/0.2/0.4) learned it more often but left
    arith near chance (26-38%). The number of optimizer steps matters more than tokens: 200
    people at 4,096 tokens a step (1M tokens) reached only 12.8% facts accuracy; 80 people at
    1,024 tokens a step 87-95%.

    Capacity: by the published figure (Allen-Zhu & Li 2024, Part 3.3: ~1 bit/param at 100
    exposures, ~2 at 1000) any cpu-tiny model (the smallest dense one has N_total 147,776)
    could hold ~65x this knowledge base; a knowledge base above that needs > 3,900
    individuals = 17.6M tokens of biographies at 100 exposures, 10-60x a cpu-tiny run. At
    cpu-tiny budgets the published capacity cannot bind for a knowledge base seen often
    enough to be learned, so the default is sized for learnability; raise ``n_people`` (and
    the run's tokens) for capacity experiments (benchmarks/bench_capacity.py).

    Reasoning: ``pointer_symbols`` m, ``pointer_hops`` (k uniform in 1..hops), ``arith_ops``
    (n uniform in 1..ops), ``arith_modulus`` p <= 10, ``scratchpad`` (answers list the
    intermediate results, so each step is one in-context lookup a 2-layer model can learn).
    Defaults: 1 hop over 8 symbols (8! * 8 = 322k distinct problems, so evaluation problems
    unseen in training are plentiful; 4 symbols have only 96 and build_corpus refuses them)
    and 1 operation mod 5. Chance: 1/m = 12.5% and 1/p = 20%. Pointer problems end with the
    start symbol and list each image right after its key (see ``runner.data.chains``), so a
    hop is one induction-head lookup.

    Stream: ``mixture`` gives each family's share of training tokens (facts set the size;
    with no facts, ``train_tokens`` does). The validation stream (``val_tokens``) re-renders
    biographies of the same individuals and fresh reasoning problems, so val loss measures
    both memorization and reasoning. ``eval_examples`` problems per reasoning task.
    """

    n_people: int = 60
    exposures: int = 100
    values_per_attribute: int = 64
    templates: int = 3
    pointer_symbols: int = 8
    pointer_hops: int = 1
    arith_ops: int = 1
    arith_modulus: int = 5
    scratchpad: bool = True
    mixture: dict = field(default_factory=_default_mixture)
    train_tokens: int = 1_000_000
    val_tokens: int = 32_768
    eval_examples: int = 512

    def __post_init__(self) -> None:
        ints = {
            "n_people": 1, "exposures": 1, "values_per_attribute": 2, "templates": 1, "pointer_symbols": 2,
            "pointer_hops": 1, "arith_ops": 1, "arith_modulus": 2, "train_tokens": 1, "val_tokens": 1,
            "eval_examples": 1,
        }  # fmt: skip
        for name, low in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise MoescaleError(f"synthetic data: {name} must be an integer >= {low}, got {v!r}")
            setattr(self, name, int(v))
        if not isinstance(self.scratchpad, bool):
            raise MoescaleError(f"synthetic data: scratchpad must be true or false, got {self.scratchpad!r}")
        if self.templates > facts.MAX_TEMPLATES:
            raise MoescaleError(f"synthetic data: templates must be <= {facts.MAX_TEMPLATES}, got {self.templates}")
        if self.pointer_symbols > len(chains.LETTERS):
            raise MoescaleError(f"synthetic data: pointer_symbols must be <= 26, got {self.pointer_symbols}")
        if self.pointer_hops > 9:
            raise MoescaleError(f"synthetic data: pointer_hops must be <= 9 (one digit), got {self.pointer_hops}")
        if self.arith_modulus > 10:
            raise MoescaleError(f"synthetic data: arith_modulus must be <= 10 (one digit), got {self.arith_modulus}")
        if self.arith_ops > 25:
            raise MoescaleError(f"synthetic data: arith_ops must be <= 25 (one letter per variable), got {self.arith_ops}")
        if not isinstance(self.mixture, dict):
            raise MoescaleError(f"synthetic data: mixture must be a mapping of {', '.join(FAMILIES)} to shares")
        unknown = sorted(set(self.mixture) - set(FAMILIES))
        if unknown:
            raise MoescaleError(f"synthetic data: unknown mixture key {unknown[0]!r}; known: {', '.join(FAMILIES)}")
        mix = {}
        for k in FAMILIES:
            v = self.mixture.get(k, 0.0)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise MoescaleError(f"synthetic data: mixture.{k} must be a number >= 0, got {v!r}")
            mix[k] = float(v)
        total = sum(mix.values())
        if total <= 0:
            raise MoescaleError("synthetic data: mixture shares must not all be zero")
        self.mixture = {k: v / total for k, v in mix.items()}

    @classmethod
    def from_dict(cls, data: dict) -> SyntheticSpec:
        """Build from a mapping (a run config's data section without "kind"); unknown keys are an error."""
        if not isinstance(data, dict):
            raise MoescaleError(f"synthetic data: expected a mapping, got {type(data).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in known:
                raise MoescaleError(f"synthetic data: unknown key {key!r}; known: {', '.join(known)}")
        return cls(**data)

    def to_dict(self) -> dict:
        """The fields as a plain dict (YAML/JSON ready); from_dict(to_dict()) == self."""
        return {f.name: (dict(getattr(self, f.name)) if f.name == "mixture" else getattr(self, f.name))
                for f in dataclasses.fields(self)}  # fmt: skip

    @property
    def knowledge_bits(self) -> float:
        """The information in the knowledge base: n_people * sum over attributes of log2 |values|."""
        return self.n_people * sum(facts.value_space_bits(self.values_per_attribute))


def tokenizer_for(spec: SyntheticSpec) -> Tokenizer:
    """The closed vocabulary of a spec: specials, reasoning words, then the facts family's words."""
    words = list(SPECIALS) + chains.vocabulary() + ["bio"]
    for w in facts.vocabulary(spec.n_people, spec.values_per_attribute):
        if w not in words:
            words.append(w)
    return Tokenizer(words)


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *stream])


# stream tags of the independent random streams of one seed
_KB, _TRAIN, _VAL, _EVAL = 1, 2, 3, 4


def build_corpus(spec: SyntheticSpec, seed: int) -> TokenCorpus:
    """The corpus of ``(spec, seed)``: packed train/val streams with loss masks, tokenizer, tasks.

    Packing: documents (each starting with ``<sep>``) back to back, in an order fixed by the
    seed: facts documents of exposure round r get sort keys (r + u) / exposures and reasoning
    documents keys u, u ~ U(0, 1), so the rounds stay in order and the families interleave
    evenly. Reasoning documents are added until each family reaches its token share.
    Tasks: ``facts`` (memorization: the trained individuals), ``pointer`` and ``arith``
    (reasoning: ``eval_examples`` fresh problems each, from a stream of the seed used for
    nothing else, any prompt that occurs in the training stream redrawn), for the families
    with a positive share.
    """
    tok = tokenizer_for(spec)
    mix = spec.mixture
    families = []
    if mix["pointer"] > 0:
        families.append(("pointer", chains.PointerChasing(spec.pointer_symbols, spec.pointer_hops, spec.scratchpad, tok)))
    if mix["arith"] > 0:
        families.append(("arith", chains.ArithmeticChain(spec.arith_ops, spec.arith_modulus, spec.scratchpad, tok)))
    kb = facts.KnowledgeBase(spec.n_people, spec.values_per_attribute, spec.templates, tok, _rng(seed, _KB)) if mix["facts"] > 0 else None

    seen: dict[str, set] = {name: set() for name, _ in families}  # training prompts, kept out of evaluation

    def stream(rng: np.random.Generator, rounds: int, total: int | None, record: bool):
        docs, keys, n_facts = [], [], 0
        if kb is not None:
            for r in range(rounds):
                round_docs = kb.exposure(rng)
                docs += round_docs
                keys.append((r + rng.random(len(round_docs))) / rounds)
            n_facts = sum(len(d[0]) for d in docs)
            total = n_facts / mix["facts"] if total is None else total
        for name, fam in families:
            target, n = mix[name] * total, 0
            fam_docs = []
            while n < target:
                toks, mask, n_prompt = fam.problem(rng)
                fam_docs.append((toks, mask))
                if record:
                    seen[name].add(tuple(toks[:n_prompt]))
                n += len(toks)
            docs += fam_docs
            keys.append(rng.random(len(fam_docs)))
        order = np.argsort(np.concatenate(keys), kind="stable")
        toks, mask = [], []
        for i in order.tolist():
            toks += docs[i][0]
            mask += docs[i][1]
        toks, mask = np.array(toks, dtype=np.uint16), np.array(mask, dtype=np.uint8)
        return toks, mask, n_facts

    train, train_mask, n_facts = stream(_rng(seed, _TRAIN), spec.exposures, None if kb is not None else spec.train_tokens, True)
    # enough biography rounds for the facts share of val_tokens (a round is n_facts / exposures tokens)
    val_rounds = max(1, math.ceil(spec.val_tokens * mix["facts"] * spec.exposures / max(n_facts, 1)))
    val, val_mask, _ = stream(_rng(seed, _VAL), val_rounds, None if kb is not None else spec.val_tokens, False)
    val, val_mask = val[: spec.val_tokens], val_mask[: spec.val_tokens]

    tasks = []
    if kb is not None:
        tasks.append(kb.task())
    eval_rng = _rng(seed, _EVAL)
    for name, fam in families:
        task = chains.reasoning_task(fam, spec.eval_examples, eval_rng, exclude=seen[name])
        if len(task) < spec.eval_examples:
            knobs = "pointer_symbols or pointer_hops" if name == "pointer" else "arith_ops or arith_modulus"
            raise MoescaleError(f"synthetic data: only {len(task)} of eval_examples={spec.eval_examples} {name} problems "
                                f"are unseen in training (too few distinct problems); raise {knobs}")  # fmt: skip
        tasks.append(task)
    return TokenCorpus(train=train, val=val, vocab_size=tok.vocab_size, train_mask=train_mask, val_mask=val_mask,
                       tokenizer=tok, tasks=tasks)  # fmt: skip


__all__ = ["SyntheticSpec", "build_corpus", "tokenizer_for", "FAMILIES"]
