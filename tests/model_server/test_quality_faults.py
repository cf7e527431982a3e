"""Quality fault knobs: wrong classes, a dead class, output drift (any answer, or keeping accuracy).

In process against the seldon user class and the real artifacts, then over HTTP against real
seldon-core-microservice processes: the admin API, the environment at start, and the Prometheus series.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import requests
from google.protobuf import json_format
from modelserver import faults, quality, train
from modelserver.faults import FaultConfig, FaultConfigError
from modelserver.modelcard import MODEL_FILE_NAME
from modelserver.server import DigitsClassifier
from seldon_core import seldon_methods
from seldon_core.metrics import SeldonMetrics
from seldon_core.proto import prediction_pb2

from .conftest import ServerProcess, metric_total

VERSION = "2.0.0"
SEED = 7
# Uneven batch sizes, 450 rows in all (the held-out set): shares must be exact across batch boundaries.
BATCHES = (1, 7, 50, 92, 150, 150)
ADMIN_TOKEN = "quality-admin-token-5e8a1c"


def round_half_up(share: float, n: int) -> int:
    """n*share rounded half up, in exact integer arithmetic (shares have at most 6 decimals here)."""
    ppm = round(share * 1_000_000)
    return (n * ppm + 500_000) // 1_000_000


def in_batches(rows: np.ndarray, sizes: tuple[int, ...] = BATCHES) -> Iterator[np.ndarray]:
    assert sum(sizes) == len(rows)
    start = 0
    for size in sizes:
        yield rows[start : start + size]
        start += size


# --- configuration ---------------------------------------------------------------------------------------


def test_quality_knobs_are_off_by_default() -> None:
    config = FaultConfig.from_env({})
    assert config.quality_knobs() == (0.0, None, None, 0.0, "any")
    assert not config.quality_active and not config.active
    # A shift class without a share arms nothing.
    assert not FaultConfig(output_shift_class=3).quality_active


def test_quality_knobs_from_env() -> None:
    config = FaultConfig.from_env(
        {
            faults.ENV_WRONG_CLASS_SHARE: "0.2",
            faults.ENV_DEAD_CLASS: "8",
            faults.ENV_SHIFT_CLASS: " 3 ",
            faults.ENV_SHIFT_SHARE: "0.5",
            faults.ENV_SHIFT_MODE: "keep_accuracy",
        }
    )
    assert config.quality_knobs() == (0.2, 8, 3, 0.5, "keep_accuracy")
    assert config.quality_active and not config.serving_active
    for none in ("", "none", "None", "null", "off"):
        assert FaultConfig.from_env({faults.ENV_DEAD_CLASS: none}).dead_class is None
    assert FaultConfig.from_env({faults.ENV_DEAD_CLASS: "0"}).dead_class == 0


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({faults.ENV_WRONG_CLASS_SHARE: "1.5"}, "wrong_class_share must be within [0, 1]"),
        ({faults.ENV_WRONG_CLASS_SHARE: "-0.1"}, "wrong_class_share must be within [0, 1]"),
        ({faults.ENV_WRONG_CLASS_SHARE: "lots"}, "MODEL_FAULT_WRONG_CLASS_SHARE='lots' is not a number"),
        ({faults.ENV_WRONG_CLASS_SHARE: "nan"}, "wrong_class_share must be within [0, 1]"),
        ({faults.ENV_WRONG_CLASS_SHARE: "0.0000001"}, "applied in millionths"),
        ({faults.ENV_DEAD_CLASS: "eight"}, "MODEL_FAULT_DEAD_CLASS='eight' is not a class 0..9 or none"),
        ({faults.ENV_DEAD_CLASS: "-1"}, "is not a class 0..9 or none"),
        ({faults.ENV_DEAD_CLASS: "3.0"}, "is not a class 0..9 or none"),
        ({faults.ENV_DEAD_CLASS: "10"}, "dead_class must be a class 0..9 or null (none), got 10"),
        ({faults.ENV_SHIFT_CLASS: "x"}, "MODEL_FAULT_OUTPUT_SHIFT_CLASS='x'"),
        ({faults.ENV_SHIFT_SHARE: "2"}, "output_shift_share must be within [0, 1]"),
        ({faults.ENV_SHIFT_SHARE: "0.3"}, "output_shift_share > 0 needs output_shift_class"),
        (
            {faults.ENV_SHIFT_CLASS: "3", faults.ENV_SHIFT_SHARE: "0.3", faults.ENV_SHIFT_MODE: "sideways"},
            "output_shift_mode must be one of any, keep_accuracy, got 'sideways'",
        ),
        ({faults.ENV_SHIFT_CLASS: "4", faults.ENV_DEAD_CLASS: "4"}, "output_shift_class 4 is the dead_class"),
    ],
)
def test_bad_quality_env_values_are_refused(env: dict[str, str], words: str) -> None:
    with pytest.raises(FaultConfigError) as caught:
        FaultConfig.from_env(env)
    assert words in str(caught.value)


def test_quality_updates_are_checked() -> None:
    config = FaultConfig().updated({"wrong_class_share": 0.25, "dead_class": 8, "output_shift_class": 3})
    assert config.quality_knobs() == (0.25, 8, 3, 0.0, "any")
    config = config.updated({"output_shift_share": 1, "output_shift_mode": "keep_accuracy"})
    assert config.quality_knobs() == (0.25, 8, 3, 1.0, "keep_accuracy")
    assert config.updated({"dead_class": None}).dead_class is None  # JSON null clears a class
    assert config.updated({"latency_ms": 5}).quality_knobs() == config.quality_knobs()
    bad: list[tuple[dict[str, Any], str]] = [
        ({"dead_class": "3"}, "dead_class must be a class 0..9 (a JSON integer) or null"),
        ({"dead_class": 3.0}, "dead_class must be a class 0..9 (a JSON integer) or null"),
        ({"dead_class": True}, "dead_class must be a class 0..9 (a JSON integer) or null"),
        ({"dead_class": 12}, "dead_class must be a class 0..9 or null (none), got 12"),
        ({"output_shift_class": -1}, "output_shift_class must be a class 0..9"),
        ({"wrong_class_share": "0.2"}, "wrong_class_share must be a number"),
        ({"wrong_class_share": True}, "wrong_class_share must be a number"),
        ({"wrong_class_share": 1.01}, "wrong_class_share must be within [0, 1]"),
        ({"output_shift_mode": 1}, "output_shift_mode must be a string"),
        ({"output_shift_mode": "drift"}, "output_shift_mode must be one of"),
        ({"output_shift_class": None}, "output_shift_share > 0 needs output_shift_class"),
        ({"dead_class": 3}, "output_shift_class 3 is the dead_class"),
        ({"wrong_share": 0.1}, "unknown fault settings ['wrong_share']"),
    ]
    for change, words in bad:
        with pytest.raises(FaultConfigError) as caught:
            config.updated(change)
        assert words in str(caught.value), change


def test_shared_config_and_its_answer_counters() -> None:
    shared = faults.SharedFaultConfig(FaultConfig())
    wanted = FaultConfig(10.0, 0.0, "normal", 0.1, 503, 0.2, 0, 9, 0.5, "keep_accuracy")
    shared.set(wanted)
    assert shared.get() == wanted
    first = shared.reserve_answers(5)
    assert (first.config, first.first) == (wanted, 0)
    assert shared.reserve_answers(3).first == 5
    assert shared.reserve_shift_eligible(first.generation, 4) == 0
    assert shared.reserve_shift_eligible(first.generation, 2) == 4
    # The same quality values again, or other knobs only: the counts run on.
    shared.set(wanted)
    shared.set(replace_knobs(wanted, latency_ms=0.0, error_rate=0.5))
    assert shared.reserve_answers(1).first == 8
    # Another quality value: a new generation, both counts restart, and a batch of the old one is not shifted.
    shared.set(replace_knobs(wanted, wrong_class_share=0.3))
    fresh = shared.reserve_answers(2)
    assert (fresh.first, fresh.generation) == (0, first.generation + 1)
    assert shared.reserve_shift_eligible(first.generation, 1) is None
    assert shared.reserve_shift_eligible(fresh.generation, 1) == 0
    shared.set(FaultConfig())
    assert shared.get() == FaultConfig() and shared.reserve_answers(1).first == 0


def replace_knobs(config: FaultConfig, **changes: Any) -> FaultConfig:
    return config.updated(changes)


@pytest.mark.parametrize("share", [0.0, 0.000001, 0.1, 0.2, 0.25, 0.333333, 0.5, 0.7, 0.999999, 1.0])
def test_a_share_picks_exactly_its_rounded_count_at_every_length(share: float) -> None:
    n = 3000
    mask = quality.picked(0, n, share)
    counts = np.concatenate([[0], np.cumsum(mask)])
    expected = np.array([round_half_up(share, k) for k in range(n + 1)])
    np.testing.assert_array_equal(counts, expected)  # every prefix: exactly n*share rounded half up
    assert all(quality.picked_before(k, share) == expected[k] for k in (0, 1, 2, 449, 450, n))
    # Split into batches anywhere (and far along the count), the picks are the same.
    cuts = [0, 1, 8, 58, 150, 151, 1999, n]
    split = np.concatenate([quality.picked(a, b - a, share) for a, b in pairwise(cuts)])
    np.testing.assert_array_equal(split, mask)
    far = 10**12 + 17
    np.testing.assert_array_equal(
        np.concatenate([[0], np.cumsum(quality.picked(far, 500, share))]),
        [quality.picked_before(far + k, share) - quality.picked_before(far, share) for k in range(501)],
    )


def test_named_counts() -> None:
    assert quality.picked(0, 450, 0.2).sum() == 90
    assert quality.picked(0, 7, 0.3).sum() == 2  # 2.1
    assert quality.picked(0, 2, 0.25).sum() == 1  # 0.5, rounded up
    assert quality.picked(0, 1, 0.5).sum() == 1
    assert quality.picked(0, 3, 0.5).tolist() == [True, False, True]


def test_digits_truth_knows_the_data_set_images_only(dataset: train.Dataset) -> None:
    truth = quality.DigitsTruth()
    assert len(truth) == dataset.n_samples
    np.testing.assert_array_equal(truth.lookup(dataset.X_test), dataset.y_test)
    nudged = dataset.X_test[:20].copy()
    nudged[:, 0] = np.where(nudged[:, 0] < 16, nudged[:, 0] + 0.5, 15.5)  # no longer whole numbers
    moved = dataset.X_test[:20].copy()
    moved[:, 0] = 16 - moved[:, 0]  # whole numbers, but not the data set's images
    assert (truth.lookup(nudged) == quality.UNKNOWN_TRUTH).all()
    assert (truth.lookup(moved) == quality.UNKNOWN_TRUTH).all()


# --- in process: the seldon user class ----------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MODEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv(faults.ENV_SEED, str(SEED))


@pytest.fixture(scope="module")
def reference(model_dir: Callable[[str], Path]) -> Any:
    return joblib.load(model_dir(VERSION) / MODEL_FILE_NAME)


def loaded(model_dir: Callable[[str], Path], version: str = VERSION, **knobs: Any) -> DigitsClassifier:
    model = DigitsClassifier(model_uri=str(model_dir(version)))
    model.load()
    model.fault_config.set(FaultConfig(**knobs))
    return model


class Served:
    """What a model served for a sequence of batches, and the counters it handed to seldon-core."""

    def __init__(self) -> None:
        self.labels: list[int] = []
        self.proba: list[list[float]] = []
        self.counters: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()

    def count(self, key: str, **labels: str) -> float:
        return sum(
            v for (k, tags), v in self.counters.items() if k == key and all((n, x) in tags for n, x in labels.items())
        )


def serve(model: DigitsClassifier, rows: np.ndarray, sizes: tuple[int, ...] = BATCHES, proba: bool = False) -> Served:
    served = Served()
    for batch in in_batches(rows, sizes):
        request: dict[str, Any] = {"data": {"ndarray": batch.tolist()}}
        if proba:
            request["meta"] = {"tags": {"return_proba": True}}
        answer = model.predict_raw(request)
        if proba:
            served.proba.extend(answer["data"]["ndarray"])
        else:
            assert answer["data"]["names"] == ["class"]
            served.labels.extend(answer["data"]["ndarray"])
        for metric in answer["meta"]["metrics"]:
            if metric["type"] == "COUNTER":
                served.counters[(metric["key"], tuple(sorted(metric["tags"].items())))] += metric["value"]
    return served


def test_knobs_off_answers_are_the_models(
    clean_env: None, model_dir: Callable[[str], Path], dataset: train.Dataset, reference: Any
) -> None:
    model = loaded(model_dir)
    plain = serve(model, dataset.X_test)
    with_proba = serve(model, dataset.X_test, proba=True)
    assert plain.labels == reference.predict(dataset.X_test).tolist()
    np.testing.assert_array_equal(with_proba.proba, np.round(reference.predict_proba(dataset.X_test), 6))
    assert plain.count("altered_answers_total") == 0 and with_proba.count("altered_answers_total") == 0


def test_wrong_class_share_alters_exactly_that_share(
    clean_env: None, model_dir: Callable[[str], Path], dataset: train.Dataset, reference: Any
) -> None:
    share, n = 0.2, len(dataset.X_test)
    model_labels = reference.predict(dataset.X_test)
    served = serve(loaded(model_dir, wrong_class_share=share), dataset.X_test)
    labels = np.asarray(served.labels)
    changed = labels != model_labels
    assert changed.sum() == round_half_up(share, n) == 90
    # Exactly the positions the error diffusion picks (in arrival order, across the batch boundaries) ...
    np.testing.assert_array_equal(changed, quality.picked(0, n, share))
    # ... and every one the server says it altered is one that differs from the model's answer.
    assert served.count("altered_answers_total", fault="wrong_class", artifact_version=VERSION) == 90
    assert set(labels.tolist()) <= set(range(10))
    # The per-class counters count what was served, not what the model said, under the served version.
    for cls in range(10):
        counted = served.count("predictions_total", **{"class": str(cls), "served_model_version": VERSION})
        assert counted == int(np.sum(labels == cls)), cls
    # Against the truth: the model is right on 97% of these, so nearly every altered answer is a lost one.
    truth = dataset.y_test
    assert int(np.sum(labels == truth)) < int(np.sum(model_labels == truth)) - 80


def test_wrong_classes_are_reproducible_from_the_seed(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, model_dir: Callable[[str], Path], dataset: train.Dataset
) -> None:
    first = serve(loaded(model_dir, wrong_class_share=0.3), dataset.X_test).labels
    again = serve(loaded(model_dir, wrong_class_share=0.3), dataset.X_test, sizes=(450,)).labels
    assert first == again  # same seed, same positions: same answers, however the rows were batched
    monkeypatch.setenv(faults.ENV_SEED, str(SEED + 1))
    other = serve(loaded(model_dir, wrong_class_share=0.3), dataset.X_test).labels
    differs = [i for i, (a, b) in enumerate(zip(first, other, strict=True)) if a != b]
    assert differs  # another seed draws other wrong classes ...
    assert set(differs) <= set(np.flatnonzero(quality.picked(0, 450, 0.3)).tolist())  # ... at the same positions


def test_probabilities_agree_with_the_altered_class(
    clean_env: None, model_dir: Callable[[str], Path], dataset: train.Dataset, reference: Any
) -> None:
    model_proba = reference.predict_proba(dataset.X_test)
    served = np.asarray(serve(loaded(model_dir, wrong_class_share=0.2), dataset.X_test, proba=True).proba)
    served_top = served.argmax(axis=1)
    changed = served_top != model_proba.argmax(axis=1)
    np.testing.assert_array_equal(changed, quality.picked(0, 450, 0.2))
    # A swap: the same probabilities, the served class now holding the model's top one.
    np.testing.assert_allclose(np.sort(served, axis=1), np.sort(np.round(model_proba, 6), axis=1), atol=1e-9)
    np.testing.assert_allclose(served.max(axis=1), np.round(model_proba.max(axis=1), 6), atol=1e-9)
    np.testing.assert_allclose(served.sum(axis=1), 1.0, atol=1e-4)
    assert (np.sum(served == served.max(axis=1, keepdims=True), axis=1) == 1).all()  # one top, no tie


def test_dead_class_is_never_answered(
    clean_env: None, model_dir: Callable[[str], Path], dataset: train.Dataset, reference: Any
) -> None:
    rows = np.vstack([dataset.X_train, dataset.X_test])
    model_proba = reference.predict_proba(rows)
    model_labels = model_proba.argmax(axis=1)
    dead = 8
    would_be_dead = model_labels == dead
    assert would_be_dead.sum() > 100
    sizes = (1000, len(rows) - 1000)
    served = serve(loaded(model_dir, dead_class=dead), rows, sizes=sizes)
    labels = np.asarray(served.labels)
    assert dead not in labels
    np.testing.assert_array_equal(labels[~would_be_dead], model_labels[~would_be_dead])  # the rest: the model's
    runner_up = np.argsort(model_proba, axis=1)[:, -2]
    np.testing.assert_array_equal(labels[would_be_dead], runner_up[would_be_dead])
    assert served.count("altered_answers_total", fault="dead_class") == would_be_dead.sum()
    assert served.count("predictions_total", **{"class": str(dead)}) == 0
    # Probabilities: the dead class has none, and the rest are the model's, renormalised.
    proba = np.asarray(serve(loaded(model_dir, dead_class=dead), rows, sizes=sizes, proba=True).proba)
    assert (proba[:, dead] == 0).all()
    np.testing.assert_array_equal(proba.argmax(axis=1), labels)
    expected = np.delete(model_proba, dead, axis=1)
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(np.delete(proba, dead, axis=1), expected, atol=1e-6)


def test_output_shift_moves_that_share_of_the_other_answers(
    clean_env: None, model_dir: Callable[[str], Path], dataset: train.Dataset, reference: Any
) -> None:
    target, share = 3, 0.5
    model_labels = reference.predict(dataset.X_test)
    served = serve(loaded(model_dir, output_shift_class=target, output_shift_share=share), dataset.X_test)
    labels = np.asarray(served.labels)
    eligible = model_labels != target
    moved = labels != model_labels
    assert moved.sum() == round_half_up(share, int(eligible.sum()))
    assert (labels[moved] == target).all() and (model_labels[moved] != target).all()
    # Which of the eligible answers: error diffusion over them, in arrival order.
    np.testing.assert_array_equal(moved[eligible], quality.picked(0, int(eligible.sum()), share))
    # The distribution as stated: the target gains share*(answers not already it), every other class
    # keeps (1 - share) of its answers up to rounding.
    before, after = Counter(model_labels.tolist()), Counter(labels.tolist())
    assert after[target] == before[target] + moved.sum()
    for cls in set(before) - {target}:
        assert after[cls] == before[cls] - int(np.sum(moved & (model_labels == cls)))
        assert abs(after[cls] - (1 - share) * before[cls]) <= max(4, 0.2 * before[cls]), cls
    assert served.count("altered_answers_total", fault="output_shift") == moved.sum()
    # Mode "any" costs accuracy: each moved answer that was right (and whose truth is not the target) is lost.
    truth = dataset.y_test
    lost = int(np.sum(moved & (model_labels == truth)))
    gained = int(np.sum(moved & (truth == target)))
    assert int(np.sum(labels == truth)) == int(np.sum(model_labels == truth)) - lost + gained
    assert lost > 150


def test_keep_accuracy_shift_keeps_every_answers_correctness(
    clean_env: None, model_dir: Callable[[str], Path], dataset: train.Dataset
) -> None:
    rows, truth = np.vstack([dataset.X_train, dataset.X_test]), np.concatenate([dataset.y_train, dataset.y_test])
    sizes = (997, 800)
    for version in ("1.0.0", "2.1.0-degraded"):
        model_labels = joblib.load(model_dir(version) / MODEL_FILE_NAME).predict(rows)
        target = 8
        eligible = (model_labels != truth) & (truth != target) & (model_labels != target)
        for share in (1.0, 0.5):
            model = loaded(
                model_dir, version, output_shift_class=target, output_shift_share=share,
                output_shift_mode="keep_accuracy",
            )
            labels = np.asarray(serve(model, rows, sizes=sizes).labels)
            moved = labels != model_labels
            assert moved.sum() == round_half_up(share, int(eligible.sum())) > 20, version
            assert (moved <= eligible).all() and (labels[moved] == target).all()
            # Right stays right, wrong stays wrong: the accuracy is exactly the model's.
            np.testing.assert_array_equal(labels == truth, model_labels == truth)
            assert np.sum(labels == target) == np.sum(model_labels == target) + moved.sum()


def test_keep_accuracy_never_touches_inputs_of_unknown_truth(
    clean_env: None, model_dir: Callable[[str], Path], dataset: train.Dataset, reference: Any
) -> None:
    rows = dataset.X_test.copy()
    rows[:, 0] = 16 - rows[:, 0]  # not the data set's images any more
    model_labels = reference.predict(rows)
    model = loaded(model_dir, output_shift_class=1, output_shift_share=1.0, output_shift_mode="keep_accuracy")
    assert serve(model, rows).labels == model_labels.tolist()
    # The same model does shift the data set's own images.
    assert serve(model, dataset.X_test).labels != reference.predict(dataset.X_test).tolist()


def test_knobs_compose_each_answer_altered_at_most_once(
    clean_env: None, model_dir: Callable[[str], Path], dataset: train.Dataset
) -> None:
    rows = np.vstack([dataset.X_train, dataset.X_test])
    model_proba = joblib.load(model_dir("1.0.0") / MODEL_FILE_NAME).predict_proba(rows)
    after_dead = model_proba.copy()
    dead, target, wrong_share, shift_share = 2, 5, 0.3, 0.4
    after_dead[:, dead] = -1
    alive = after_dead.argmax(axis=1)  # the model's answer with the dead class gone
    model = loaded(
        model_dir, "1.0.0", wrong_class_share=wrong_share, dead_class=dead, output_shift_class=target,
        output_shift_share=shift_share,
    )
    served = serve(model, rows, sizes=(600, 600, 597))
    labels = np.asarray(served.labels)
    assert dead not in labels
    wrong = quality.picked(0, len(rows), wrong_share)
    assert (labels[wrong] != model_proba.argmax(axis=1)[wrong]).all() and (labels[wrong] != alive[wrong]).all()
    eligible = ~wrong & (alive != target)
    shifted = quality.picked(0, int(eligible.sum()), shift_share)
    np.testing.assert_array_equal(labels[eligible][shifted], target)
    np.testing.assert_array_equal(labels[eligible][~shifted], alive[eligible][~shifted])
    np.testing.assert_array_equal(labels[~wrong & ~eligible], alive[~wrong & ~eligible])
    assert served.count("altered_answers_total", fault="wrong_class") == round_half_up(wrong_share, len(rows))
    assert served.count("altered_answers_total", fault="output_shift") == round_half_up(
        shift_share, int(eligible.sum())
    )


def test_a_class_the_model_never_learned_is_left_alone(
    clean_env: None, model_dir: Callable[[str], Path], dataset: train.Dataset
) -> None:
    """2.2.0-biased has no class 8: no answer moves to it, and killing it changes nothing."""
    model_labels = joblib.load(model_dir("2.2.0-biased") / MODEL_FILE_NAME).predict(dataset.X_test).tolist()
    shifted = loaded(model_dir, "2.2.0-biased", output_shift_class=8, output_shift_share=1.0)
    killed = loaded(model_dir, "2.2.0-biased", dead_class=8)
    assert serve(shifted, dataset.X_test).labels == model_labels
    assert serve(killed, dataset.X_test).labels == model_labels


def feedback_message(**fields: Any) -> prediction_pb2.Feedback:
    return json_format.ParseDict(fields, prediction_pb2.Feedback())


def test_feedback_scores_what_was_served(
    clean_env: None, model_dir: Callable[[str], Path], dataset: train.Dataset, reference: Any
) -> None:
    rows, truth = dataset.X_test, dataset.y_test
    model = loaded(model_dir, wrong_class_share=0.2)
    answer = model.predict_raw({"data": {"ndarray": rows.tolist()}})
    served = np.asarray(answer["data"]["ndarray"])
    scored = json_format.MessageToDict(model.send_feedback_raw(feedback_message(
        response={"data": answer["data"], "meta": {"tags": answer["meta"]["tags"]}},
        truth={"data": {"ndarray": truth.tolist()}},
    )))["jsonData"]
    assert scored["correct"] == int(np.sum(served == truth)) < int(np.sum(reference.predict(rows) == truth)) - 70

    # A feedback with only the request is scored against the answer the server gives it now, faults included.
    model.fault_config.set(FaultConfig(dead_class=4))
    proba = reference.predict_proba(rows)
    proba[:, 4] = -1
    expected_right = int(np.sum(proba.argmax(axis=1) == truth))
    reply = model.send_feedback_raw(feedback_message(
        request={"data": {"ndarray": rows.tolist()}}, truth={"data": {"ndarray": truth.tolist()}},
    ))
    scored = json_format.MessageToDict(reply)["jsonData"]
    assert scored["correct"] == expected_right
    assert expected_right < int(np.sum(reference.predict(rows) == truth))
    altered = [m for m in json_format.MessageToDict(reply)["meta"]["metrics"] if m["key"] == "altered_answers_total"]
    assert [(m["tags"]["fault"], m["value"]) for m in altered] == [
        ("dead_class", float(np.sum(reference.predict(rows) == 4)))
    ]


def test_grpc_shaped_answers_are_altered_and_their_metrics_recorded(
    clean_env: None, model_dir: Callable[[str], Path], dataset: train.Dataset, reference: Any
) -> None:
    """A SeldonMessage in, through seldon-core's own predict path: the knobs apply, and the metrics (zero-valued
    gauges among them, which protobuf would drop) reach SeldonMetrics without a KeyError."""
    model = loaded(model_dir, wrong_class_share=0.5)
    rows = dataset.X_test[:40]
    request = json_format.ParseDict({"data": {"ndarray": rows.tolist()}}, prediction_pb2.SeldonMessage())
    recorded = SeldonMetrics()
    try:
        answer = seldon_methods.predict(model, request, recorded)
        labels = np.asarray(json_format.MessageToDict(answer)["data"]["ndarray"], dtype=np.int64)
        assert int(np.sum(labels != reference.predict(rows))) == 20
        series = {key[1]: item["value"] for key, item in next(iter(recorded.data.values())).items()}
    finally:
        del recorded
    assert series["altered_answers_total"] == 20
    assert series["fault_wrong_class_share"] == 0.5


# --- over HTTP: the admin API, the environment, Prometheus ---------------------------------------------------


@pytest.fixture(scope="module")
def server(start_server: Callable[..., ServerProcess], model_dir: Callable[[str], Path]) -> ServerProcess:
    return start_server(
        model_dir(VERSION), MODEL_ADMIN_ENABLED="1", MODEL_ADMIN_TOKEN=ADMIN_TOKEN, MODEL_FAULT_SEED=str(SEED)
    )


@pytest.fixture
def admin(server: ServerProcess) -> Iterator[ServerProcess]:
    yield server
    requests.delete(server.admin_url, headers=server.admin_headers(), timeout=5).raise_for_status()


def put(server: ServerProcess, body: Any) -> requests.Response:
    return requests.put(server.admin_url, json=body, headers=server.admin_headers(), timeout=5)


def http_serve(server: ServerProcess, rows: np.ndarray, proba: bool = False) -> list[Any]:
    served: list[Any] = []
    for batch in in_batches(rows):
        response = server.predict(batch.tolist(), **({"return_proba": True} if proba else {}))
        assert response.status_code == 200, response.text
        served.extend(response.json()["data"]["ndarray"])
    return served


def test_admin_api_sets_reads_and_clears_the_quality_knobs(admin: ServerProcess) -> None:
    auth = admin.admin_headers()
    set_to = put(admin, {"wrong_class_share": 0.2, "dead_class": 8, "output_shift_class": 3,
                         "output_shift_share": 0.5, "output_shift_mode": "keep_accuracy"})
    assert set_to.status_code == 200, set_to.text
    shown = requests.get(admin.admin_url, headers=auth, timeout=5).json()
    assert shown == set_to.json()
    assert {k: shown[k] for k in ("wrong_class_share", "dead_class", "output_shift_class", "output_shift_share",
                                  "output_shift_mode")} == {
        "wrong_class_share": 0.2, "dead_class": 8, "output_shift_class": 3, "output_shift_share": 0.5,
        "output_shift_mode": "keep_accuracy",
    }
    bad: list[tuple[dict[str, Any], str]] = [
        ({"wrong_class_share": 1.5}, "wrong_class_share must be within [0, 1]"),
        ({"wrong_class_share": "high"}, "wrong_class_share must be a number"),
        ({"dead_class": 10}, "dead_class must be a class 0..9"),
        ({"dead_class": "8"}, "dead_class must be a class 0..9 (a JSON integer) or null"),
        ({"dead_class": 3}, "output_shift_class 3 is the dead_class"),
        ({"output_shift_class": None}, "output_shift_share > 0 needs output_shift_class"),
        ({"output_shift_mode": "sideways"}, "output_shift_mode must be one of any, keep_accuracy"),
        ({"output_shift_share": -0.5}, "output_shift_share must be within [0, 1]"),
    ]
    for body, words in bad:
        response = put(admin, body)
        assert response.status_code == 400, body
        assert words in response.json()["error"], (body, response.json())
    assert requests.get(admin.admin_url, headers=auth, timeout=5).json() == shown  # nothing changed
    cleared = put(admin, {"dead_class": None, "output_shift_share": 0})
    assert cleared.status_code == 200
    assert (cleared.json()["dead_class"], cleared.json()["output_shift_share"]) == (None, 0.0)
    reset = requests.delete(admin.admin_url, headers=auth, timeout=5).json()
    assert FaultConfig(**reset) == FaultConfig()


def test_quality_faults_over_http_reach_answers_and_prometheus(
    admin: ServerProcess, dataset: train.Dataset, reference: Any
) -> None:
    rows, truth = dataset.X_test, dataset.y_test
    model_labels = reference.predict(rows)
    assert http_serve(admin, rows) == model_labels.tolist()  # off by default
    before = admin.scrape()
    assert put(admin, {"wrong_class_share": 0.2}).status_code == 200
    labels = np.asarray(http_serve(admin, rows))
    changed = labels != model_labels
    assert changed.sum() == 90
    np.testing.assert_array_equal(changed, quality.picked(0, 450, 0.2))
    # What reaches Prometheus: served classes by served_model_version, and the alterations.
    assert requests.get(f"{admin.base_url}/health/status", timeout=5).status_code == 200
    after = admin.scrape()

    def delta(name: str, **labels: str) -> float:
        return metric_total(after, name, **labels) - metric_total(before, name, **labels)

    for cls in range(10):
        counted = delta("predictions_total", **{"class": str(cls), "served_model_version": VERSION,
                                                 "artifact_version": VERSION, "method": "predict"})
        assert counted == int(np.sum(labels == cls)), cls
    assert delta("altered_answers_total", fault="wrong_class", artifact_version=VERSION) == 90
    gauges = {s.name: s.value for s in after if s.name.startswith("fault_") and s.labels["method"] == "health"}
    assert gauges["fault_wrong_class_share"] == 0.2 and gauges["fault_dead_class"] == -1.0

    # Feedback on the served answers counts the injected loss under the served version.
    scored = requests.post(admin.feedback_url, timeout=10, json={
        "response": {"data": {"names": ["class"], "ndarray": labels.tolist()},
                     "meta": {"tags": {"served_model_version": VERSION}}},
        "truth": {"data": {"ndarray": truth.tolist()}},
    })
    assert scored.status_code == 200, scored.text
    assert scored.json()["jsonData"]["correct"] == int(np.sum(labels == truth))
    outcomes = admin.scrape()
    right = metric_total(outcomes, "feedback_outcomes_total", outcome="correct", served_model_version=VERSION) - (
        metric_total(before, "feedback_outcomes_total", outcome="correct", served_model_version=VERSION)
    )
    assert right == int(np.sum(labels == truth)) < int(np.sum(model_labels == truth)) - 70


def test_dead_class_and_probabilities_over_http(admin: ServerProcess, dataset: train.Dataset, reference: Any) -> None:
    assert put(admin, {"dead_class": 1, "wrong_class_share": 0.1}).status_code == 200
    proba = np.asarray(http_serve(admin, dataset.X_test, proba=True))
    assert (proba[:, 1] == 0).all()
    top = proba.argmax(axis=1)
    assert 1 not in top
    model_proba = reference.predict_proba(dataset.X_test)
    model_proba[:, 1] = -1
    alive = model_proba.argmax(axis=1)
    wrong = quality.picked(0, 450, 0.1)
    assert (top[wrong] != alive[wrong]).all() and (top[wrong] != reference.predict(dataset.X_test)[wrong]).all()
    np.testing.assert_array_equal(top[~wrong], alive[~wrong])


@pytest.fixture(scope="module")
def env_server(start_server: Callable[..., ServerProcess], model_dir: Callable[[str], Path]) -> ServerProcess:
    return start_server(
        model_dir("1.0.0"),
        MODEL_FAULT_SEED="11",
        MODEL_FAULT_WRONG_CLASS_SHARE="0.15",
        MODEL_FAULT_DEAD_CLASS="none",
        MODEL_FAULT_OUTPUT_SHIFT_CLASS="3",
        MODEL_FAULT_OUTPUT_SHIFT_SHARE="0.5",
        MODEL_FAULT_OUTPUT_SHIFT_MODE="keep_accuracy",
    )


def test_quality_knobs_from_the_environment_apply_from_the_start(
    env_server: ServerProcess, model_dir: Callable[[str], Path], dataset: train.Dataset
) -> None:
    rows, truth = dataset.X_test, dataset.y_test
    model = joblib.load(model_dir("1.0.0") / MODEL_FILE_NAME)
    model_labels = model.predict(rows)
    labels = np.asarray(http_serve(env_server, rows))
    # The same answers as the quality faults computed here with the same seed and knobs.
    config = FaultConfig.from_env({
        faults.ENV_WRONG_CLASS_SHARE: "0.15", faults.ENV_SHIFT_CLASS: "3", faults.ENV_SHIFT_SHARE: "0.5",
        faults.ENV_SHIFT_MODE: "keep_accuracy",
    })
    local = quality.QualityFaults(faults.SharedFaultConfig(config), seed=11)
    expected = np.concatenate([local.apply(model.predict_proba(b), model.classes_, b).labels for b in in_batches(rows)])
    np.testing.assert_array_equal(labels, expected)
    wrong = quality.picked(0, 450, 0.15)
    assert (labels[wrong] != model_labels[wrong]).all() and wrong.sum() == 68  # 67.5, rounded half up
    # The shift moved only wrong answers to 3 and kept them wrong: accuracy outside the wrong-class picks holds.
    shifted = ~wrong & (labels != model_labels)
    assert shifted.sum() > 0 and (labels[shifted] == 3).all() and (truth[shifted] != 3).all()
    np.testing.assert_array_equal((labels == truth)[~wrong], (model_labels == truth)[~wrong])


def test_a_bad_quality_setting_in_the_environment_refuses_to_start(
    start_server: Callable[..., ServerProcess], model_dir: Callable[[str], Path]
) -> None:
    server = start_server(model_dir(VERSION), wait_ready=False, MODEL_FAULT_DEAD_CLASS="eight")
    assert server.wait_exit() != 0
    log = server.log_path.read_text(errors="replace")
    assert "MODEL_FAULT_DEAD_CLASS='eight' is not a class 0..9 or none" in log, server.log_tail()
