"""Quality faults: the model's answers made wrong, a class made dead, the output distribution shifted.

Applied after the model computed its class probabilities, in this order; each answer is altered by at most
one of wrong_class_share and output_shift:

1. dead_class: the class's probability is set to 0 and every row renormalised, so the class is never
   answered and an answer that would have been it becomes the model's next most probable class. Other
   answers keep their class (their probabilities are rescaled).
2. wrong_class_share: that share of all answers is replaced by a class different from the model's answer
   (and from the dead class), drawn uniformly from the remaining classes by a seeded RNG.
3. output_shift: that share of the eligible answers is moved to output_shift_class. Eligible: not altered
   by step 2 and not that class already; in "keep_accuracy" mode, also an input the digits data set labels
   (modelserver.quality.DigitsTruth) whose answer is wrong and whose label is not the target, so a moved
   answer is wrong before and after.

Exact shares: answers are numbered in arrival order, over all workers (SharedFaultConfig), from the moment
the quality knobs took their current values, and answer i (0-based) is picked iff
floor(((i+1)*s + 1/2)) > floor((i*s + 1/2)), s the share in millionths. So the first n answers hold exactly
floor(n*s + 1/2) picked ones (n*s rounded half up) for every n: error diffusion, no dice. output_shift
numbers only its eligible answers. The pick does not depend on the input.

Self-consistent probabilities: an altered answer's probabilities are the model's (after step 1) with the
new class's and the old answer's values swapped, so the answered class has the top probability and the
row still sums to 1.

A class the served model does not have (2.2.0-biased never learned 8) is never answered: dead_class on it
changes nothing, and output_shift to it moves nothing.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass, field

import numpy as np

from modelserver.faults import SHARE_RESOLUTION, FaultConfig, SharedFaultConfig

logger = logging.getLogger(__name__)

WRONG_CLASS = "wrong_class"
DEAD_CLASS = "dead_class"
OUTPUT_SHIFT = "output_shift"
UNKNOWN_TRUTH = -1


def picked_before(position: int, share: float) -> int:
    """How many of the first `position` answers a share picks: position*share rounded half up, exactly."""
    ppm = round(share * SHARE_RESOLUTION)
    return (position * ppm + SHARE_RESOLUTION // 2) // SHARE_RESOLUTION


def picked(first: int, count: int, share: float) -> np.ndarray:
    """Which of the answers at positions first..first+count-1 a share picks (boolean mask, error diffusion)."""
    ppm = round(share * SHARE_RESOLUTION)
    # The pattern repeats every SHARE_RESOLUTION positions: keep the products small for int64.
    positions = np.arange(count + 1, dtype=np.int64) + (first % SHARE_RESOLUTION)
    before = (positions * ppm + SHARE_RESOLUTION // 2) // SHARE_RESOLUTION
    mask: np.ndarray = np.diff(before) > 0
    return mask


class DigitsTruth:
    """The digits data set's labels, looked up by image: the truth for inputs that are its own images.

    scikit-learn's load_digits (1,797 8x8 images, pixels 0..16, no two alike). An input whose 64 values are
    not whole numbers, or not one of those images, has no known truth (UNKNOWN_TRUTH).
    """

    def __init__(self) -> None:
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        labels: dict[bytes, int] = {}
        clashes: set[bytes] = set()
        for row, label in zip(np.asarray(X, dtype=np.uint8), y, strict=True):
            key = row.tobytes()
            if key in labels and labels[key] != int(label):
                clashes.add(key)
            labels[key] = int(label)
        for key in clashes:  # the same image under two labels: no truth for it
            del labels[key]
        self._labels = labels

    def __len__(self) -> int:
        return len(self._labels)

    def lookup(self, features: np.ndarray) -> np.ndarray:
        rows = np.asarray(features, dtype=np.float64)
        truth = np.full(len(rows), UNKNOWN_TRUTH, dtype=np.int64)
        whole = np.all((rows == np.round(rows)) & (rows >= 0) & (rows <= 255), axis=1)
        keys = np.where(whole[:, None], rows, 0).astype(np.uint8)
        for i in np.flatnonzero(whole):
            truth[i] = self._labels.get(keys[i].tobytes(), UNKNOWN_TRUTH)
        return truth


@dataclass
class Answers:
    """The answers to a batch: the model's, and the ones served after the quality faults."""

    classes: np.ndarray  # the model's class labels, one per probability column
    model_columns: np.ndarray  # per row: the column the model answered (its argmax)
    columns: np.ndarray  # per row: the column served
    probabilities: np.ndarray  # served probabilities, the served column on top in every row
    altered: dict[str, int] = field(default_factory=dict)  # answers each fault altered (non-zero only)

    @property
    def labels(self) -> np.ndarray:
        labels: np.ndarray = self.classes[self.columns]
        return labels

    @property
    def model_labels(self) -> np.ndarray:
        labels: np.ndarray = self.classes[self.model_columns]
        return labels


class QualityFaults:
    """Applies the quality knobs of a SharedFaultConfig to a batch of answers."""

    def __init__(self, shared: SharedFaultConfig, seed: int, truth: DigitsTruth | None = None) -> None:
        self.shared = shared
        self.seed = seed
        self._truth = truth
        self._truth_lock = threading.Lock()
        self._warned: set[tuple[str, int]] = set()

    def truth(self) -> DigitsTruth:
        """The digits labels, loaded on first use (keep_accuracy mode only)."""
        with self._truth_lock:
            if self._truth is None:
                self._truth = DigitsTruth()
            return self._truth

    def wrong_class(self, position: int, candidates: list[int]) -> int:
        """The replacement for the answer at `position`: the same for the same seed and position."""
        rng = random.Random(f"wrong-class:{self.seed}:{position}")
        return candidates[rng.randrange(len(candidates))]

    def apply(self, probabilities: np.ndarray, classes: np.ndarray, features: np.ndarray) -> Answers:
        proba = np.array(probabilities, dtype=np.float64)  # a copy: the model's array stays as it was
        classes = np.asarray(classes)
        n_rows, n_columns = proba.shape
        model_columns = proba.argmax(axis=1)
        answers = Answers(classes, model_columns, model_columns.copy(), proba)
        ticket = self.shared.reserve_answers(n_rows)
        config = ticket.config
        if not config.quality_active or n_rows == 0:
            return answers
        column_of = {int(label): j for j, label in enumerate(classes.tolist())}

        dead = self._column(column_of, config.dead_class, DEAD_CLASS)
        if dead is not None and n_columns > 1:
            self._kill(answers, dead)

        wrong = np.zeros(n_rows, dtype=bool)
        if config.wrong_class_share > 0:
            wrong = picked(ticket.first, n_rows, config.wrong_class_share)
            for row in np.flatnonzero(wrong):
                excluded = {int(model_columns[row]), int(answers.columns[row]), dead}
                candidates = [j for j in range(n_columns) if j not in excluded]
                if not candidates:
                    wrong[row] = False
                    continue
                self._move(answers, int(row), self.wrong_class(ticket.first + int(row), candidates))
            self._count(answers, WRONG_CLASS, int(wrong.sum()))

        target = self._column(column_of, config.output_shift_class, OUTPUT_SHIFT)
        if config.output_shift_share > 0 and target is not None:
            self._shift(answers, config, ticket.generation, target, ~wrong, features)
        return answers

    # --- the steps -------------------------------------------------------------------------------

    def _kill(self, answers: Answers, dead: int) -> None:
        proba = answers.probabilities
        was_dead = answers.columns == dead
        proba[:, dead] = 0.0
        totals = proba.sum(axis=1)
        alive = totals > 0
        proba[alive] /= totals[alive, None]
        if not alive.all():  # the model put everything on the dead class: the first other class gets it
            proba[~alive] = 0.0
            proba[~alive, 1 if dead == 0 else 0] = 1.0
        answers.columns = proba.argmax(axis=1)
        self._count(answers, DEAD_CLASS, int(was_dead.sum()))

    def _shift(
        self,
        answers: Answers,
        config: FaultConfig,
        generation: int,
        target: int,
        untouched: np.ndarray,
        features: np.ndarray,
    ) -> None:
        eligible = untouched & (answers.columns != target)
        if config.output_shift_mode == "keep_accuracy":
            truth = self.truth().lookup(features)
            known = truth != UNKNOWN_TRUTH
            eligible &= known & (answers.labels != truth) & (truth != config.output_shift_class)
        rows = np.flatnonzero(eligible)
        first = self.shared.reserve_shift_eligible(generation, len(rows))
        if first is None:
            logger.info("quality knobs changed during a batch: its answers are not shifted")
            return
        moved = rows[picked(first, len(rows), config.output_shift_share)]
        for row in moved:
            self._move(answers, int(row), target)
        self._count(answers, OUTPUT_SHIFT, len(moved))

    @staticmethod
    def _move(answers: Answers, row: int, column: int) -> None:
        """Answer `column` on `row`: swap its probability with the current answer's, so it is on top."""
        proba = answers.probabilities
        current = int(answers.columns[row])
        proba[row, current], proba[row, column] = proba[row, column], proba[row, current]
        answers.columns[row] = column

    @staticmethod
    def _count(answers: Answers, kind: str, count: int) -> None:
        if count:
            answers.altered[kind] = answers.altered.get(kind, 0) + count

    def _column(self, column_of: dict[int, int], label: int | None, knob: str) -> int | None:
        if label is None:
            return None
        column = column_of.get(label)
        if column is None and (knob, label) not in self._warned:
            self._warned.add((knob, label))
            logger.warning("%s names class %d, which this model never answers: it changes nothing", knob, label)
        return column
