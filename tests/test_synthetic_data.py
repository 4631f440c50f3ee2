"""The synthetic corpus: determinism, vocabulary, exposures, mixture, masks and task ground truth."""

import hashlib

import numpy as np
import pytest

from runner.data.synthetic import SyntheticSpec, build_corpus, tokenizer_for
from runner.data.tokenizer import Tokenizer
from scaling.errors import MoescaleError

SMALL = dict(n_people=60, exposures=5, val_tokens=4096, eval_examples=200, pointer_symbols=8, pointer_hops=2, arith_ops=2, arith_modulus=10,
             mixture={"facts": 0.6, "pointer": 0.2, "arith": 0.2})


def _digest(c):
    h = hashlib.sha256()
    for a in (c.train, c.val, c.train_mask, c.val_mask):
        h.update(a.tobytes())
    for t in c.tasks:
        for p, a in zip(t.prompts, t.answers):
            h.update(p.tobytes() + b"|" + a.tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def small():
    return build_corpus(SyntheticSpec(**SMALL), 3)


def test_same_spec_and_seed_give_byte_identical_streams(small):
    again = build_corpus(SyntheticSpec(**SMALL), 3)
    assert _digest(again) == _digest(small)
    assert small.train.dtype == np.uint16 and small.train_mask.dtype == np.uint8
    other = build_corpus(SyntheticSpec(**SMALL), 4)
    assert _digest(other) != _digest(small)
    # the vocabulary depends on the spec only, not on the seed
    assert other.tokenizer == small.tokenizer


def test_default_spec_vocabulary_fits_cpu_tiny_models():
    spec = SyntheticSpec()
    tok = tokenizer_for(spec)
    assert tok.vocab_size <= 512
    assert spec.knowledge_bits == pytest.approx(60 * (np.log2(12 * 28 * 50) + 4 * 6))


def test_spec_dict_round_trip_and_strict_keys():
    spec = SyntheticSpec(n_people=10, mixture={"facts": 1, "pointer": 1})
    assert spec.mixture == {"facts": 0.5, "pointer": 0.5, "arith": 0.0}
    assert SyntheticSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(MoescaleError, match="unknown key 'n_peple'"):
        SyntheticSpec.from_dict({"n_peple": 3})
    with pytest.raises(MoescaleError, match="mixture key 'chains'"):
        SyntheticSpec(mixture={"chains": 1.0})
    with pytest.raises(MoescaleError, match="arith_modulus"):
        SyntheticSpec(arith_modulus=11)
    with pytest.raises(MoescaleError, match="n_people"):
        SyntheticSpec(n_people=0)


def test_tokenizer_round_trip_save_load(tmp_path, small):
    tok = small.tokenizer
    text = tok.decode(small.train[:200])
    assert tok.encode(text) == small.train[:200].tolist()
    tok.save(tmp_path / "tok.json")
    assert Tokenizer.load(tmp_path / "tok.json") == tok
    with pytest.raises(MoescaleError, match="not in the vocabulary"):
        tok.encode("where was Nobody born")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(MoescaleError, match="not a tokenizer file"):
        Tokenizer.load(tmp_path / "bad.json")


def test_every_biography_appears_exposures_times_in_rounds_and_states_the_kb(small):
    tok = small.tokenizer
    facts = small.tasks[0]
    assert facts.name == "facts" and facts.kind == "memorization"
    n = facts.n_individuals
    sep, bio = tok.id("<sep>"), tok.id("bio")
    starts = np.flatnonzero((small.train[:-1] == sep) & (small.train[1:] == bio))
    assert len(starts) == n * 5  # every individual once per exposure round
    # the answer of each question appears after the individual's name in every one of its biographies
    text = " " + tok.decode(small.train) + " "
    for j in range(0, len(facts), 37):
        prompt = tok.decode(facts.prompts[j]).split()
        name = " ".join(w for w in prompt[2:] if w[0].isupper())
        assert text.count(f" {name} ") == 5 * 5  # named in each of its 5 sentences, in each of 5 exposures
        question, answer = " ".join(prompt[2:]), tok.decode(facts.answers[j])
        # the question form, whenever it occurs in training, carries the true value
        assert text.count(f" {question} ") == text.count(f" {question} {answer} . ") > 0 or text.count(f" {question} ") == 0
    # rounds: the first n biographies are the n individuals (the name is the first masked pair after the marker)
    m = small.train_mask
    names = set()
    for s in starts[:n]:
        j = s + 2 + int(np.argmax(m[s + 2 :] == 0))
        names.add((int(small.train[j]), int(small.train[j + 1])))
    assert len(names) == n


def test_reasoning_answers_are_correct_and_fresh(small):
    tok = small.tokenizer
    by_name = {t.name: t for t in small.tasks}
    assert set(by_name) == {"facts", "pointer", "arith"}
    ptr, ari = by_name["pointer"], by_name["arith"]
    assert ptr.kind == ari.kind == "reasoning" and ptr.chance == 1 / 8 and ari.chance == 1 / 10
    hops = set()
    for p, a in zip(ptr.prompts, ptr.answers):
        w = tok.decode(p).split()
        # "<sep> ptr a f(a) , b f(b) , ... ; k s": pairs of key and image, then the hops and the start
        f = {w[i]: w[i + 1] for i in range(2, 2 + 3 * 8, 3)}
        assert sorted(f) == sorted(f.values()) == list("abcdefgh") and w[2 + 3 * 8 - 1] == ";"
        k, x = int(w[-2]), w[-1]
        chain = []
        for _ in range(k):
            x = f[x]
            chain.append(x)
        assert tok.decode(a).split() == chain
        hops.add(k)
    assert hops == {1, 2}
    ops = set()
    for p, a in zip(ari.prompts, ari.answers):
        stmts = tok.decode(p).split(";")[0].split()[2:]
        env, vals = {}, []
        for s in " ".join(stmts).split(","):
            s = s.split()
            if len(s) == 3:
                env[s[0]] = int(s[2])
            else:
                x, y = env[s[2]], int(s[4])
                env[s[0]] = {"+": x + y, "-": x - y, "*": x * y}[s[3]] % 10
                vals.append(str(env[s[0]]))
        assert tok.decode(a).split() == vals
        ops.add(len(vals))
    assert ops == {1, 2}
    # no evaluation prompt occurs in the training stream
    train = tok.decode(small.train)
    for t in (ptr, ari):
        for p in t.prompts[:100]:
            assert tok.decode(p) + " " not in train


def test_mixture_shares_and_loss_mask(small):
    tok = small.tokenizer
    text = tok.decode(small.train).split("<sep>")[1:]
    lengths = {"bio": 0, "ptr": 0, "ari": 0}
    for d in text:
        lengths[d.split()[0]] += len(d.split()) + 1
    total = sum(lengths.values())
    assert lengths["bio"] / total == pytest.approx(0.6, abs=0.01)
    assert lengths["ptr"] / total == pytest.approx(0.2, abs=0.01)
    assert lengths["ari"] / total == pytest.approx(0.2, abs=0.01)
    assert len(small.train_mask) == len(small.train) and len(small.val_mask) == len(small.val) == 4096
    # masked: the family marker, the first mention of the name, random reasoning context
    m, t = small.train_mask, small.train
    assert not m[t == tok.id("bio")].any() and not m[t == tok.id("ptr")].any()
    assert m[t == tok.id("?")].all() and m[t == tok.id(".")].all()
    assert 0.6 < m.mean() < 0.95
    # facts-only streams still work, and reasoning-only streams take train_tokens
    only = build_corpus(SyntheticSpec(n_people=5, exposures=2, mixture={"pointer": 1}, train_tokens=3000, val_tokens=500), 0)
    assert [t.name for t in only.tasks] == ["pointer"] and 3000 <= len(only.train) < 3100


def test_a_reasoning_family_with_too_few_distinct_problems_is_refused():
    # 4 symbols, 1 hop: 4! * 4 = 96 distinct problems, all of them in a 20k-token training stream
    spec = SyntheticSpec(n_people=5, exposures=2, mixture={"pointer": 1}, pointer_symbols=4, pointer_hops=1,
                         train_tokens=20_000, val_tokens=500, eval_examples=50)  # fmt: skip
    with pytest.raises(MoescaleError, match="pointer problems are unseen in training.*pointer_symbols"):
        build_corpus(spec, 0)
