"""runner.evaluate against float64 references on a stub model whose probabilities are known."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from runner.data import TokenCorpus
from runner.data.tasks import EvalTask
from runner.evaluate import evaluate, knowledge_bits, sampled_accuracy, score_answers, validation_loss
from runner.model import ModelConfig, seeded_model
from scaling.architecture import Architecture
from scaling.errors import MoescaleError

torch.set_num_threads(1)
V = 11


class Bigram(torch.nn.Module):
    """logits[b, t] = W[idx[b, t]]: p(next | prefix) = softmax(W[last token]), known exactly."""

    def __init__(self, W: np.ndarray, seq_len: int = 32):
        super().__init__()
        self.W = torch.nn.Parameter(torch.tensor(W, dtype=torch.float32))
        self.config = SimpleNamespace(arch=SimpleNamespace(seq_len=seq_len))

    def forward(self, idx, targets=None):
        return self.W[idx], None, {}


def _softmax64(row):
    m = max(row)
    e = [math.exp(x - m) for x in row]
    s = sum(e)
    return [x / s for x in e]


def _W(seed=0):
    return np.random.default_rng(seed).normal(0, 2.0, (V, V)).astype(np.float32).astype(np.float64)


def _task(rng, n_people=6, kind="memorization"):
    bits = [math.log2(3), math.log2(5)]  # value spaces of two attributes
    prompts, answers, attribute, individual = [], [], [], []
    for a, alen in enumerate([1, 2]):
        for i in range(n_people):
            prompts.append(rng.integers(0, V, 3 + a))
            answers.append(rng.integers(0, V, alen))
            attribute.append(a)
            individual.append(i)
    return EvalTask("facts", kind, prompts, answers, 1 / 3, np.array(attribute), ["a0", "a1"], bits,
                    np.array(individual), n_people)  # fmt: skip


def _reference(W, task):
    """Per example NLL (nats, float64 loops) and greedy exact match by explicit decoding."""
    nll, exact = [], []
    for p, a in zip(task.prompts, task.answers):
        prev, s = int(p[-1]), 0.0
        for tok in a:
            s -= math.log(_softmax64(list(W[prev]))[int(tok)])
            prev = int(tok)
        nll.append(s)
        prev, ok = int(p[-1]), True
        for tok in a:  # greedy decoding, one token at a time
            g = int(np.argmax(W[prev]))
            ok &= g == int(tok)
            prev = g
        exact.append(ok)
    return np.array(nll), np.array(exact)


def test_task_loss_accuracy_and_knowledge_bits_match_float64_reference():
    W = _W(1)
    rng = np.random.default_rng(2)
    task = _task(rng)
    # make some answers the greedy ones so accuracy is neither 0 nor 1
    for j in (0, 3, 7):
        prev = int(task.prompts[j][-1])
        for t in range(len(task.answers[j])):
            task.answers[j][t] = int(np.argmax(W[prev]))
            prev = int(task.answers[j][t])
    val = rng.integers(0, V, 200).astype(np.uint16)
    corpus = TokenCorpus(train=val, val=val, vocab_size=V, tasks=[task])
    model = Bigram(W)
    ev = evaluate(model, corpus, n_total=1000, batch_size=4)

    nll, exact = _reference(W, task)
    n_tok = sum(len(a) for a in task.answers)
    assert ev.value("facts", "task_loss") == pytest.approx(nll.sum() / n_tok, rel=1e-5)
    assert ev.value("facts", "accuracy") == pytest.approx(exact.mean())
    assert 0 < exact.mean() < 1
    # hand-computed knowledge bits: per attribute, floor(sum_i (log2|V_a| - CE_ia bits)) at 0
    ref = 0.0
    for a, b in enumerate(task.attribute_bits):
        sel = task.attribute == a
        ref += max(0.0, float(np.sum(b - nll[sel] / math.log(2))))
    assert ev.value("facts", "knowledge_bits") == pytest.approx(ref, rel=1e-5, abs=1e-6)
    assert ev.value("facts", "bits_per_param") == pytest.approx(ref / 1000, rel=1e-5, abs=1e-9)
    assert {r["n_examples"] for r in ev.rows} == {12}
    assert all(r["task_kind"] == "memorization" for r in ev.rows)
    assert ev.seconds > 0

    # val loss: mean CE over non-overlapping windows of seq_len (32), by a float64 loop
    T = 32
    n = (len(val) - 1) // T
    ref_val = np.mean([-math.log(_softmax64(list(W[int(val[j])]))[int(val[j + 1])]) for j in range(n * T)])
    assert ev.val_loss == pytest.approx(ref_val, rel=1e-5)


def test_knowledge_bits_formula_on_known_cross_entropies():
    ln2 = math.log(2)
    # attribute 0 (3 bits, value space 8): CEs 1, 2 bits -> 2 + 1 = 3 bits; attribute 1 (1 bit): CEs 3, 3 -> floor 0
    nll = np.array([1, 2, 3, 3]) * ln2
    assert knowledge_bits(nll, np.array([0, 0, 1, 1]), [3.0, 1.0], 2) == pytest.approx(3.0)
    # half of the individuals evaluated: scaled by N / |S_a| = 4 / 2
    assert knowledge_bits(nll, np.array([0, 0, 1, 1]), [3.0, 1.0], 4) == pytest.approx(6.0)
    # the floor is per attribute: (3 - 0) + (3 - 5) = 1 bit, not 3
    assert knowledge_bits(np.array([0, 5]) * ln2, np.array([0, 0]), [3.0], 2) == pytest.approx(1.0)


def test_val_loss_respects_mask():
    W = _W(3)
    val = np.random.default_rng(4).integers(0, V, 65).astype(np.uint16)
    mask = np.zeros(65, np.uint8)
    mask[[5, 9, 40]] = 1
    got = validation_loss(Bigram(W), val, mask)
    ref = np.mean([-math.log(_softmax64(list(W[int(val[j - 1])]))[int(val[j])]) for j in (5, 9, 40)])
    assert got == pytest.approx(ref, rel=1e-5)
    with pytest.raises(MoescaleError, match="no counted targets"):
        validation_loss(Bigram(W), val, np.zeros(65, np.uint8))


def test_greedy_accuracy_equals_explicit_decoding_on_a_transformer():
    arch = Architecture(d_model=32, n_layers=2, n_heads=2, d_ff=32, n_experts=4, top_k=2, vocab_size=V, seq_len=32)
    model = seeded_model(ModelConfig(arch), 0).eval()
    rng = np.random.default_rng(5)
    prompts = [rng.integers(0, V, int(rng.integers(3, 6))) for _ in range(40)]
    with torch.no_grad():
        greedy = []
        for p in prompts:  # decode 3 tokens one at a time; half the answers are the greedy ones
            x = torch.tensor(p)[None]
            for _ in range(3):
                x = torch.cat([x, model(x)[0][:, -1].argmax(-1, keepdim=True)], 1)
            greedy.append(x[0, len(p):].numpy())
        answers = [g if i % 2 == 0 else (g + 1) % V for i, g in enumerate(greedy)]
        nll, exact = score_answers(model, prompts, answers, batch_size=7)
        assert exact.tolist() == [i % 2 == 0 for i in range(40)]
        # temperature 0 sampling is greedy decoding: pass@k = majority@k = accuracy
        p, m, s = sampled_accuracy(model, prompts, answers, 3, 0.0, batch_size=8)
        assert (p, m, s) == (0.5, 0.5, 0.5)
        # the teacher-forced NLL equals the sum of one-token-at-a-time log-probabilities
        for i in (0, 1, 13):
            x = torch.tensor(np.concatenate([prompts[i], answers[i]]))[None]
            logp = torch.log_softmax(model(x)[0][0].double(), -1)
            P = len(prompts[i])
            ref = -sum(float(logp[P - 1 + j, int(answers[i][j])]) for j in range(3))
            assert nll[i] == pytest.approx(ref, rel=1e-4)


def test_pass_and_majority_at_k_on_a_known_distribution():
    # from token 0 the stub puts probability 0.6 on token 1 and 0.4 on token 2
    W = np.full((V, V), -1e9)
    W[0, 1], W[0, 2] = math.log(0.6), math.log(0.4)
    model = Bigram(W)
    prompts = [np.array([0])] * 400
    hit1 = sampled_accuracy(model, prompts, [np.array([1])] * 400, 5, 1.0, batch_size=50, seed=1)
    hit2 = sampled_accuracy(model, prompts, [np.array([2])] * 400, 5, 1.0, batch_size=50, seed=1)
    # pass@5 = 1 - (1 - q)^5; single = q; majority@5 = P(Binomial(5, q) >= 3)
    for (p, m, s), q in ((hit1, 0.6), (hit2, 0.4)):
        maj = sum(math.comb(5, j) * q**j * (1 - q) ** (5 - j) for j in range(3, 6))
        assert s == pytest.approx(q, abs=0.04)
        assert p == pytest.approx(1 - (1 - q) ** 5, abs=0.04)
        assert m == pytest.approx(maj, abs=0.06)
    # deterministic given the seed
    assert hit1 == sampled_accuracy(model, prompts, [np.array([1])] * 400, 5, 1.0, batch_size=50, seed=1)


def test_evaluate_rows_and_modes_on_reasoning_task():
    W = _W(6)
    rng = np.random.default_rng(7)
    task = EvalTask("pointer", "reasoning", [rng.integers(0, V, 4) for _ in range(30)],
                    [rng.integers(0, V, 2) for _ in range(30)], chance=0.1)  # fmt: skip
    val = rng.integers(0, V, 100).astype(np.uint16)
    model = Bigram(W).train()
    ev = evaluate(model, TokenCorpus(val, val, V, tasks=[task]), n_total=10, samples=4, max_examples=10)
    assert model.training  # train mode restored
    assert [r["metric"] for r in ev.rows] == ["accuracy", "task_loss", "pass_at_k", "majority_at_k", "sample_accuracy"]
    assert all(r["n_examples"] == 10 and r["task_kind"] == "reasoning" for r in ev.rows)
    ev0 = evaluate(model, TokenCorpus(val, val, V, tasks=[task]), n_total=10)
    assert [r["metric"] for r in ev0.rows] == ["accuracy", "task_loss"]
    assert ev0.value("pointer", "accuracy") == pytest.approx(_reference(W, task)[1].mean())
