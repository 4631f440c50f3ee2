"""Evaluation of a language model on a TokenCorpus: validation loss and the corpus's tasks.

Per task (``runner.data.tasks.EvalTask``), tagged memorization or reasoning:

- ``accuracy``: exact match of greedy decoding of the answer given the prompt. Computed by
  one teacher-forced forward pass: greedy decoding reproduces the answer exactly when, at
  every answer position, the argmax of the logits given the prompt and the answer's
  previous tokens is the answer's next token (the greedy prefix then equals the answer's
  prefix), so exact match = all_j argmax p(. | prompt, a_<j) == a_j. Ties count as misses
  unless the answer token comes first in argmax order.
- ``task_loss``: the mean negative log-likelihood (nats) of the answer tokens given the
  prompt, over all answer tokens of the task (Nakamura et al. 2025, arXiv 2508.18672,
  measure task loss this way).
- memorization only, ``knowledge_bits`` and ``bits_per_param`` (Allen-Zhu & Li 2024,
  arXiv 2404.05405, Part 3.3). With CE_{i,a} = -sum_j log2 p(a_j | prompt, a_<j) the
  cross-entropy in bits of the value of attribute a of individual i (all its tokens), over
  the evaluated individuals S_a of attribute a::

      bits_a = max(0, (N / |S_a|) * sum_{i in S_a} (log2 |V_a| - CE_{i,a}))
      knowledge_bits = sum_a bits_a;  bits_per_param = knowledge_bits / N_total

  N the number of individuals in the knowledge base (the scaling N/|S_a| is 1 when all
  are evaluated). Values are uniform and independent, so log2 |V_a| is the entropy of the
  attribute and a model that knows nothing about individual i has E[CE_{i,a}] >= log2 |V_a|.
  The floor is taken per attribute, after summing over individuals, which is Allen-Zhu &
  Li's N * (log2 |V| - loss) with loss the mean cross-entropy; flooring each individual
  separately would count the positive half of the noise of an ignorant model as knowledge.
- reasoning only, with ``samples = k > 0``: ``pass_at_k`` (some of k answers sampled at
  ``temperature`` is exact), ``majority_at_k`` (the most frequent of the k sampled answers,
  ties broken by first occurrence, is exact) and ``sample_accuracy`` (the mean exact match
  of single samples), as Nakamura et al. vary test-time compute.

Everything runs batched (examples of equal length share a batch), under torch.no_grad, in
eval mode (the model's training mode is restored afterwards).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from runner.data import TokenCorpus
from scaling.errors import MoescaleError

LOG2E = 1.0 / np.log(2.0)


@dataclass
class Evaluation:
    """val_loss (nats per counted token of the validation stream), one row per task metric, seconds taken."""

    val_loss: float
    rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def value(self, task: str, metric: str) -> float:
        """The value of one row; KeyError if absent."""
        for r in self.rows:
            if r["task"] == task and r["metric"] == metric:
                return r["value"]
        raise KeyError(f"{task}/{metric}")


def _seq_len(model) -> int:
    return int(model.config.arch.seq_len)


@torch.no_grad()
def validation_loss(model, tokens: np.ndarray, mask: np.ndarray | None, *, device="cpu", batch_size: int = 64) -> float:
    """Mean cross-entropy (nats) over the counted targets of non-overlapping windows of seq_len.

    Windows x = v[j:j+T], y = v[j+1:j+T+1] for j = 0, T, 2T, ... (j + T + 1 <= len(v));
    target y_t counts when mask[j+1+t] = 1 (every target when mask is None).
    """
    T = _seq_len(model)
    n = (len(tokens) - 1) // T
    if n < 1:
        raise MoescaleError(f"validation stream of {len(tokens)} tokens is shorter than seq_len + 1 ({T + 1})")
    v = torch.from_numpy(np.asarray(tokens[: n * T + 1], dtype=np.int64))
    x = v[:-1].view(n, T)
    y = v[1:].view(n, T).clone()
    if mask is not None:
        m = torch.from_numpy(np.asarray(mask[1 : n * T + 1], dtype=np.bool_)).view(n, T)
        y[~m] = -1
    total, count = 0.0, 0
    for b in range(0, n, batch_size):
        xb, yb = x[b : b + batch_size].to(device), y[b : b + batch_size].to(device)
        logits, _, _ = model(xb)
        flat = logits.reshape(-1, logits.shape[-1]).float()
        total += float(F.cross_entropy(flat, yb.reshape(-1), ignore_index=-1, reduction="sum"))
        count += int((yb >= 0).sum())
    if count == 0:
        raise MoescaleError("validation stream has no counted targets (its mask is all zero)")
    return total / count


def _buckets(lengths: np.ndarray, batch_size: int):
    """Index batches of equal ``lengths``, in a fixed order (by length, then index)."""
    order = np.lexsort((np.arange(len(lengths)), lengths))
    start = 0
    while start < len(order):
        L = lengths[order[start]]
        end = start
        while end < len(order) and lengths[order[end]] == L and end - start < batch_size:
            end += 1
        yield order[start:end]
        start = end


@torch.no_grad()
def score_answers(model, prompts, answers, *, device="cpu", batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Per example: (NLL in nats of its answer tokens given the prompt, summed; greedy exact match).

    One teacher-forced forward pass of prompt + answer per example (see the module docstring).
    """
    n = len(prompts)
    nll = np.zeros(n, dtype=np.float64)
    exact = np.zeros(n, dtype=bool)
    T = _seq_len(model)
    p_len = np.array([len(p) for p in prompts])
    a_len = np.array([len(a) for a in answers])
    seqs = [np.concatenate([p, a]) for p, a in zip(prompts, answers)]
    lengths = p_len * 10_000 + a_len
    for idx in _buckets(lengths, batch_size):
        P, A = int(p_len[idx[0]]), int(a_len[idx[0]])
        if P + A - 1 > T:
            raise MoescaleError(f"evaluation example of {P + A} tokens exceeds seq_len {T}")
        batch = torch.from_numpy(np.stack([seqs[i] for i in idx]).astype(np.int64)).to(device)
        logits, _, _ = model(batch[:, : P + A - 1])
        logp = torch.log_softmax(logits[:, P - 1 : P + A - 1].float(), dim=-1)
        target = batch[:, P : P + A]
        tok_logp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        nll[idx] = -tok_logp.double().sum(dim=1).cpu().numpy()
        exact[idx] = (logp.argmax(dim=-1) == target).all(dim=1).cpu().numpy()
    return nll, exact


@torch.no_grad()
def sampled_accuracy(model, prompts, answers, k: int, temperature: float, *, device="cpu", batch_size: int = 64,
                     seed: int = 0) -> tuple[float, float, float]:  # fmt: skip
    """(pass@k, majority@k, mean single-sample exact match) of k answers sampled per example.

    Each of the answer's tokens is sampled autoregressively from softmax(logits / temperature)
    at the last position (temperature 0: argmax); a torch.Generator seeded by ``seed`` makes
    it deterministic. majority@k: the most frequent of the k answers (ties: first drawn).
    """
    n = len(prompts)
    gen = torch.Generator(device=device).manual_seed(seed)
    p_len = np.array([len(p) for p in prompts])
    passed = np.zeros(n, dtype=bool)
    major = np.zeros(n, dtype=bool)
    single = np.zeros(n, dtype=np.float64)
    rows = max(1, batch_size // k)
    T = _seq_len(model)
    for idx in _buckets(p_len, rows):
        P = int(p_len[idx[0]])
        A = max(len(answers[i]) for i in idx)
        x = torch.from_numpy(np.stack([prompts[i] for i in idx]).astype(np.int64)).to(device)
        x = x.repeat_interleave(k, dim=0)
        for _ in range(A):
            logits, _, _ = model(x[:, -T:])
            last = logits[:, -1].float()
            if temperature > 0:
                nxt = torch.multinomial(torch.softmax(last / temperature, dim=-1), 1, generator=gen)
            else:
                nxt = last.argmax(dim=-1, keepdim=True)
            x = torch.cat([x, nxt], dim=1)
        out = x[:, P:].cpu().numpy().reshape(len(idx), k, A)
        for r, i in enumerate(idx):
            a = answers[i]
            draws = [tuple(s[: len(a)]) for s in out[r]]
            ok = [d == tuple(a) for d in draws]
            passed[i] = any(ok)
            single[i] = np.mean(ok)
            major[i] = Counter(draws).most_common(1)[0][0] == tuple(a)
    return float(passed.mean()), float(major.mean()), float(single.mean())


def knowledge_bits(nll_nats: np.ndarray, attribute: np.ndarray, attribute_bits, n_individuals: int) -> float:
    """sum_a max(0, (N / |S_a|) * sum_{i in S_a} (log2|V_a| - CE_{i,a})), CE in bits = nats * log2(e).

    See the module docstring (Allen-Zhu & Li 2024, Part 3.3).
    """
    total = 0.0
    ce_bits = np.asarray(nll_nats, dtype=np.float64) * LOG2E
    attribute = np.asarray(attribute)
    for a, bits in enumerate(attribute_bits):
        sel = attribute == a
        if sel.any():
            total += max(0.0, n_individuals / sel.sum() * float((bits - ce_bits[sel]).sum()))
    return total


def example_subset(n: int, max_examples: int | None) -> np.ndarray:
    """Evenly spaced indices: all when max_examples is None or >= n."""
    if max_examples is None or max_examples >= n:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max_examples)).astype(np.int64))


def evaluate(model, corpus: TokenCorpus, *, n_total: int, device="cpu", batch_size: int = 64, samples: int = 0,
             temperature: float = 1.0, max_examples: int | None = None, seed: int = 0) -> Evaluation:  # fmt: skip
    """Validation loss and, per task of the corpus, the metrics of the module docstring.

    n_total: the model's total parameters (Architecture.n_total), the denominator of
    bits_per_param. samples: k of pass@k / majority@k (0: off). max_examples: at most that
    many examples per task (evenly spaced; knowledge bits are scaled to the whole knowledge
    base). Rows: dicts with task, task_kind, metric, value, n_examples, ready for
    RunWriter.log_eval(step, tokens, **row).
    """
    if samples < 0:
        raise MoescaleError(f"evaluation: samples must be >= 0, got {samples}")
    t0 = time.perf_counter()
    was_training = model.training
    model.eval()
    rows: list[dict] = []
    try:
        with torch.no_grad():
            val_loss = validation_loss(model, corpus.val, corpus.val_mask, device=device, batch_size=batch_size)
            for task in corpus.tasks:
                idx = example_subset(len(task), max_examples)
                prompts = [task.prompts[i] for i in idx]
                answers = [task.answers[i] for i in idx]
                nll, exact = score_answers(model, prompts, answers, device=device, batch_size=batch_size)
                n_tokens = sum(len(a) for a in answers)

                def row(metric, value, _task=task, _n=len(idx)):
                    rows.append({"task": _task.name, "task_kind": _task.kind, "metric": metric,
                                 "value": float(value), "n_examples": int(_n)})  # fmt: skip

                row("accuracy", exact.mean())
                row("task_loss", nll.sum() / n_tokens)
                if task.kind == "memorization" and task.attribute is not None:
                    bits = knowledge_bits(nll, task.attribute[idx], task.attribute_bits, task.n_individuals)
                    row("knowledge_bits", bits)
                    row("bits_per_param", bits / n_total)
                if task.kind == "reasoning" and samples > 0:
                    p, m, s = sampled_accuracy(model, prompts, answers, samples, temperature, device=device,
                                               batch_size=batch_size, seed=seed)
                    row("pass_at_k", p)
                    row("majority_at_k", m)
                    row("sample_accuracy", s)
    finally:
        model.train(was_training)
    return Evaluation(val_loss=val_loss, rows=rows, seconds=time.perf_counter() - t0)


__all__ = ["Evaluation", "evaluate", "validation_loss", "score_answers", "sampled_accuracy", "knowledge_bits"]
