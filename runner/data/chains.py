"""The reasoning families: problems whose answer is computed from the context, never recalled.

After the in-context reasoning tasks of Allen-Zhu & Li's "Physics of Language Models"
(Depo: multi-hop pointer retrieval; Mano: modular arithmetic), written from scratch:

- ``pointer`` (k-hop pointer chasing): a random permutation f of m symbols is listed in key
  order as key-image pairs, then a hop count k (1 <= k <= hops) and a start symbol s:
  ``<sep> ptr a f , b c , ... ; k s`` answered by f(s), f(f(s)), ..., f^k(s) with the
  scratchpad on (the default), else by f^k(s) alone; then ``.``. The prompt ends with s and
  every image follows its key, so each hop is one induction-head lookup (copy the token
  that followed the earlier occurrence of the current one; Olsson et al. 2022, "In-context
  Learning and Induction Heads"), which a 2-layer model can learn within a cpu-tiny run
  (when it does depends on the seed: ``runner.data.synthetic.SyntheticSpec``). An earlier
  layout, ``a > f , ... ; s k ?``, put two tokens between s and its answer; at that budget
  its accuracy stayed at chance.
- ``arith`` (variable-binding chain mod p): n operations (1 <= n <= ops) of + - * on digits:
  ``<sep> ari x = 3 , q = x + 4 , w = q * 2 ; w ?`` answered by the values of q, w (here
  7 4 mod 10) with the scratchpad, else the last value alone; then ``.``.

Every random choice of a problem (the permutation, the start, the hop count, variable
names, operands) has loss mask 0 (it cannot be predicted); structure and answers have 1.
Chance accuracy (guessing the final value) is 1/m and 1/p.
"""

from __future__ import annotations

import numpy as np

from runner.data.tasks import EvalTask

LETTERS = tuple("abcdefghijklmnopqrstuvwxyz")
DIGITS = tuple(str(d) for d in range(10))
OPS = ("+", "-", "*")


def vocabulary() -> list[str]:
    """The words of both families: markers, letters, digits, operators and punctuation."""
    return ["ptr", "ari", *LETTERS, *DIGITS, *OPS, "=", ",", ";", "?", "."]


class PointerChasing:
    """Generator of k-hop pointer-chasing problems over ``symbols`` letters."""

    name = "pointer"

    def __init__(self, symbols: int, hops: int, scratchpad: bool, tok):
        self.m, self.hops, self.scratchpad = symbols, hops, scratchpad
        self.sym = [tok.id(c) for c in LETTERS[:symbols]]
        self.digit = [tok.id(c) for c in DIGITS]
        self.t = {w: tok.id(w) for w in ("<sep>", "ptr", ",", ";", ".")}
        self.chance = 1.0 / symbols

    def problem(self, rng: np.random.Generator) -> tuple[list[int], list[int], int]:
        """(tokens, mask, prompt length): the answer is tokens[prompt length:-1]."""
        t = self.t
        f = rng.permutation(self.m).tolist()
        s, k = rng.integers((0, 1), (self.m, self.hops + 1)).tolist()
        toks, mask = [t["<sep>"], t["ptr"]], [1, 0]
        for key in range(self.m):
            toks += [self.sym[key], self.sym[f[key]], t[","] if key < self.m - 1 else t[";"]]
            mask += [1, 0, 1]
        toks += [self.digit[k], self.sym[s]]
        mask += [0, 0]
        chain, x = [], s
        for _ in range(k):
            x = int(f[x])
            chain.append(self.sym[x])
        answer = chain if self.scratchpad else chain[-1:]
        n_prompt = len(toks)
        toks += answer + [t["."]]
        mask += [1] * (len(answer) + 1)
        return toks, mask, n_prompt


class ArithmeticChain:
    """Generator of variable-binding chains of up to ``ops`` operations mod ``modulus``."""

    name = "arith"

    def __init__(self, ops: int, modulus: int, scratchpad: bool, tok):
        self.ops, self.p, self.scratchpad = ops, modulus, scratchpad
        self.var = [tok.id(c) for c in LETTERS]
        self.digit = [tok.id(c) for c in DIGITS]
        self.op = [tok.id(c) for c in OPS]
        self.t = {w: tok.id(w) for w in ("<sep>", "ari", "=", ",", ";", "?", ".")}
        self.chance = 1.0 / modulus

    def problem(self, rng: np.random.Generator) -> tuple[list[int], list[int], int]:
        """(tokens, mask, prompt length): the answer is tokens[prompt length:-1]."""
        t, p = self.t, self.p
        n = int(rng.integers(1, self.ops + 1))
        names = rng.permutation(len(LETTERS))[: n + 1].tolist()
        draws = rng.integers(0, p * len(OPS), size=2 * n + 1).tolist()
        x = draws[0] % p
        toks = [t["<sep>"], t["ari"], self.var[names[0]], t["="], self.digit[x]]
        mask = [1, 0, 0, 1, 0]
        values = []
        for j in range(1, n + 1):
            o, y = draws[2 * j - 1] % len(OPS), draws[2 * j] % p
            x = (x + y if o == 0 else x - y if o == 1 else x * y) % p
            values.append(self.digit[x])
            toks += [t[","], self.var[names[j]], t["="], self.var[names[j - 1]], self.op[o], self.digit[y]]
            mask += [1, 0, 1, 1, 0, 0]
        toks += [t[";"], self.var[names[n]], t["?"]]
        mask += [1, 1, 1]
        answer = values if self.scratchpad else values[-1:]
        n_prompt = len(toks)
        toks += answer + [t["."]]
        mask += [1] * (len(answer) + 1)
        return toks, mask, n_prompt


def reasoning_task(family, n: int, rng: np.random.Generator, exclude: set | None = None) -> EvalTask:
    """``n`` fresh problems of a family as an EvalTask (prompt = the problem up to its answer, answer = the values).

    A problem whose prompt (as a tuple of ids) is in ``exclude`` (the training problems) is
    redrawn, so no evaluation problem was seen in training.
    """
    prompts, answers = [], []
    exclude = exclude or set()
    for _ in range(100 * n):
        if len(prompts) == n:
            break
        toks, _, n_prompt = family.problem(rng)
        if tuple(toks[:n_prompt]) in exclude:
            continue
        prompts.append(np.array(toks[:n_prompt], dtype=np.int64))
        answers.append(np.array(toks[n_prompt:-1], dtype=np.int64))
    return EvalTask(name=family.name, kind="reasoning", prompts=prompts, answers=answers, chance=family.chance)


__all__ = ["PointerChasing", "ArithmeticChain", "reasoning_task", "vocabulary"]
