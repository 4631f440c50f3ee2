"""The memorization family: a bioS-style knowledge base of synthetic individuals.

Modeled on Allen-Zhu & Li, "Physics of Language Models, Part 3.3: Knowledge Capacity
Scaling Laws" (arXiv 2404.05405), bioS data, written from scratch. Each individual has a
unique full name (a first and a last name from two pools) and five attributes drawn
uniformly and independently: birth date (month, day 1-28, year 1950-1999), birth city,
university, field of study and employer. A biography states every attribute once, each
sentence rendered by one of several templates (every sentence repeats the full name, the
"fullname" variant of bioS) or by the attribute's question form ("where was X born ? V ."),
in a random sentence order. Templates and order are re-drawn at every exposure.

Evaluation asks the question form of every attribute about the trained individuals
("<sep> bio where was X born ?") and scores the value tokens.
"""

from __future__ import annotations

import math

import numpy as np

from runner.data.tasks import EvalTask

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")  # fmt: skip
YEARS = tuple(range(1950, 2000))
DAYS = tuple(range(1, 29))

#: attribute -> (question form, statement templates); "{n}" the full name, "{v}" the value,
#: the name always before the value and the value always right before the final ".".
TEMPLATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "birth_date": ("when was {n} born ? {v} .", (
        "{n} was born on {v} .", "{n} came into this world on {v} .",
        "{n} celebrates a birthday on {v} .", "the birth date of {n} is {v} .")),
    "birth_city": ("where was {n} born ? {v} .", (
        "{n} was born in {v} .", "{n} spent early years in {v} .",
        "{n} is a native of {v} .", "the birthplace of {n} is {v} .")),
    "university": ("which university did {n} attend ? {v} .", (
        "{n} studied at {v} .", "{n} graduated from {v} .",
        "{n} received an education at {v} .", "the alma mater of {n} is {v} .")),
    "field": ("what did {n} study ? {v} .", (
        "{n} majored in {v} .", "{n} specialized in {v} .",
        "{n} completed a degree in {v} .", "the major of {n} was {v} .")),
    "employer": ("who employs {n} ? {v} .", (
        "{n} works for {v} .", "{n} is employed by {v} .",
        "{n} has a job at {v} .", "the employer of {n} is {v} .")),
}  # fmt: skip
ATTRIBUTES = tuple(TEMPLATES)
POOL_ATTRIBUTES = ("birth_city", "university", "field", "employer")
MAX_TEMPLATES = 4

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


def template_words() -> list[str]:
    """Every word of every template except the placeholders, in first-seen order."""
    words: dict[str, None] = {}
    for question, statements in TEMPLATES.values():
        for t in (question, *statements):
            for w in t.split():
                if w not in ("{n}", "{v}"):
                    words[w] = None
    return list(words)


def word_pools(sizes: dict[str, int]) -> dict[str, list[str]]:
    """Distinct pronounceable synthetic words for each pool, fixed by the pool sizes alone.

    Words are capitalized consonant-vowel syllables (2 or 3 of them), drawn without
    replacement from one stream seeded by a constant, pools in the order of ``sizes``:
    the vocabulary depends on the spec, never on the corpus seed.
    """
    syllables = [c + v for c in _CONSONANTS for v in _VOWELS]
    rng = np.random.default_rng(20240405)
    seen: set[str] = set()
    pools: dict[str, list[str]] = {}
    for pool, size in sizes.items():
        words: list[str] = []
        while len(words) < size:
            n = 2 if rng.random() < 0.7 else 3
            w = "".join(syllables[i] for i in rng.integers(0, len(syllables), n)).capitalize()
            if w not in seen:
                seen.add(w)
                words.append(w)
        pools[pool] = words
    return pools


def name_pool_size(n_people: int) -> int:
    """First and last names come from two pools of ceil(sqrt(2 n_people)) words each (2x the pairs needed)."""
    return max(2, math.ceil(math.sqrt(2 * n_people)))


def value_space_bits(values_per_attribute: int) -> list[float]:
    """log2 of each attribute's value space, in ATTRIBUTES order: the date has 12*28*50 values."""
    date = math.log2(len(MONTHS) * len(DAYS) * len(YEARS))
    return [date] + [math.log2(values_per_attribute)] * len(POOL_ATTRIBUTES)


class KnowledgeBase:
    """n_people individuals with unique names and uniform, independent attributes.

    names (n, 2) ids of the first and last name; values[a][i] the value token ids of
    attribute a of individual i (the date is 7 tokens: month, 2 day digits, 4 year digits).
    """

    def __init__(self, n_people: int, values_per_attribute: int, templates: int, tok, rng: np.random.Generator):
        pools = word_pools(pool_sizes(n_people, values_per_attribute))
        n_names = name_pool_size(n_people)
        pairs = rng.choice(n_names * n_names, size=n_people, replace=False)
        first = np.array([tok.id(w) for w in pools["first_name"]])
        last = np.array([tok.id(w) for w in pools["last_name"]])
        self.names = np.stack([first[pairs // n_names], last[pairs % n_names]], axis=1)
        self.n_people = n_people
        digits = np.array([tok.id(str(d)) for d in range(10)])
        months = np.array([tok.id(m) for m in MONTHS])
        m = rng.integers(0, 12, n_people)
        d = rng.integers(1, 29, n_people)
        y = rng.integers(YEARS[0], YEARS[-1] + 1, n_people)
        date = np.stack([months[m], digits[d // 10], digits[d % 10], digits[y // 1000], digits[y // 100 % 10],
                         digits[y // 10 % 10], digits[y % 10]], axis=1)  # fmt: skip
        self.values = [date]
        for attr in POOL_ATTRIBUTES:
            ids = np.array([tok.id(w) for w in pools[attr]])
            self.values.append(ids[rng.integers(0, values_per_attribute, n_people)][:, None])
        self.attribute_bits = value_space_bits(values_per_attribute)
        # per attribute: forms[0] is the question, forms[1:] the first `templates` statements;
        # each form is (words before the name, between name and value, after the value)
        self.forms = []
        for attr in ATTRIBUTES:
            question, statements = TEMPLATES[attr]
            self.forms.append([_split(t, tok) for t in (question, *statements[:templates])])
        self._names = self.names.tolist()  # python ints: list concatenation is the hot loop
        self._values = [v.tolist() for v in self.values]
        self.marker = tok.id("bio")
        self.sep = tok.id("<sep>")

    def sentence(self, i: int, a: int, form: int) -> list[int]:
        pre, mid, post = self.forms[a][form]
        return pre + self._names[i] + mid + self._values[a][i] + post

    def biography(self, i: int, forms: np.ndarray, order: np.ndarray) -> tuple[list[int], list[int]]:
        """Tokens and loss mask of one biography: <sep> bio, then the sentences in ``order``.

        Mask 0 on the marker (which family comes next is random) and on the first mention of
        the name (which individual comes next is random); 1 elsewhere.
        """
        toks = [self.sep, self.marker]
        mask = [1, 0]
        first = True
        for a in order:
            s = self.sentence(i, a, forms[a])
            m = [1] * len(s)
            if first:
                k = len(self.forms[a][forms[a]][0])
                m[k] = m[k + 1] = 0
                first = False
            toks += s
            mask += m
        return toks, mask

    def exposure(self, rng: np.random.Generator) -> list[tuple[list[int], list[int]]]:
        """Every individual once, in a random order, with templates and sentence order re-drawn."""
        n, n_attr = self.n_people, len(ATTRIBUTES)
        perm = rng.permutation(n).tolist()
        forms = rng.integers(0, len(self.forms[0]), size=(n, n_attr)).tolist()
        orders = np.argsort(rng.random((n, n_attr)), axis=1).tolist()
        return [self.biography(i, forms[j], orders[j]) for j, i in enumerate(perm)]

    def task(self) -> EvalTask:
        """The question form of every attribute of every individual; answers are the value tokens."""
        prompts, answers, attribute, individual = [], [], [], []
        for a in range(len(ATTRIBUTES)):
            pre, mid, _ = self.forms[a][0]
            for i in range(self.n_people):
                prompts.append(np.array([self.sep, self.marker] + pre + list(self.names[i]) + mid, dtype=np.int64))
                answers.append(np.asarray(self.values[a][i], dtype=np.int64))
                attribute.append(a)
                individual.append(i)
        return EvalTask(
            name="facts", kind="memorization", prompts=prompts, answers=answers,
            chance=float(2.0 ** -min(self.attribute_bits)), attribute=np.array(attribute),
            attributes=list(ATTRIBUTES), attribute_bits=list(self.attribute_bits),
            individual=np.array(individual), n_individuals=self.n_people,
        )  # fmt: skip


def pool_sizes(n_people: int, values_per_attribute: int) -> dict[str, int]:
    """Sizes of the word pools: two name pools, then one per single-token attribute."""
    n_names = name_pool_size(n_people)
    return {"first_name": n_names, "last_name": n_names, **{a: values_per_attribute for a in POOL_ATTRIBUTES}}


def vocabulary(n_people: int, values_per_attribute: int) -> list[str]:
    """The words of the family: template words, months, and the name and value pools."""
    words = template_words() + list(MONTHS)
    for pool in word_pools(pool_sizes(n_people, values_per_attribute)).values():
        words += pool
    return words


def _split(template: str, tok) -> tuple[list[int], list[int], list[int]]:
    words = template.split()
    n, v = words.index("{n}"), words.index("{v}")
    return tok.encode(" ".join(words[:n])), tok.encode(" ".join(words[n + 1 : v])), tok.encode(" ".join(words[v + 1 :]))


__all__ = ["ATTRIBUTES", "TEMPLATES", "KnowledgeBase", "vocabulary", "value_space_bits", "name_pool_size"]
