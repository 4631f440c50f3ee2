"""Evaluation tasks of the synthetic corpus: prompts with known answers, read by ``runner.evaluate``."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TASK_KINDS = ("memorization", "reasoning")


@dataclass
class EvalTask:
    """One evaluation task: ``prompts[i]`` (token ids) is answered by ``answers[i]`` (token ids).

    name:        the task name written to evals.jsonl ("facts", "pointer", "arith").
    kind:        "memorization" (answers are recalled facts of the training stream) or
                 "reasoning" (answers are computed from the prompt; instances are fresh).
    chance:      accuracy of guessing the answer's final token uniformly from its value
                 space (1/m for pointer chasing over m symbols, 1/p for arithmetic mod p).
    For memorization tasks, the knowledge-bits bookkeeping (Allen-Zhu & Li 2024, Part 3.3):
    attribute:   per example, the index of its attribute in ``attributes``;
    attributes:  attribute names; ``attribute_bits``: log2 of each attribute's value space;
    individual:  per example, the index of the individual it asks about;
    n_individuals: the size of the knowledge base (every individual, evaluated or not).
    """

    name: str
    kind: str
    prompts: list[np.ndarray]
    answers: list[np.ndarray]
    chance: float = 0.0
    attribute: np.ndarray | None = None
    attributes: list[str] = field(default_factory=list)
    attribute_bits: list[float] = field(default_factory=list)
    individual: np.ndarray | None = None
    n_individuals: int = 0

    def __len__(self) -> int:
        return len(self.prompts)


__all__ = ["EvalTask", "TASK_KINDS"]
