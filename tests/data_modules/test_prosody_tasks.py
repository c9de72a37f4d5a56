"""The prosody synthesizer (data_modules/prosody_tasks.py): deterministic, classes differ only in the sound."""

import numpy as np

from ember.data_modules.prosody_tasks import TASKS, make_example
from helpers import SR, f0_estimate


def voiced_span(x: np.ndarray) -> tuple[int, int]:
    energy = np.convolve(x**2, np.ones(320) / 320, "same")
    loud = np.flatnonzero(energy > 0.1 * energy.max())
    return int(loud[0]), int(loud[-1])


def test_synthesizer_is_deterministic_from_its_seed():
    a = make_example(np.random.default_rng([1, 2, 3]))
    b = make_example(np.random.default_rng([1, 2, 3]))
    c = make_example(np.random.default_rng([1, 2, 4]))
    assert np.array_equal(a.signal, b.signal) and a.label == b.label and a.task == b.task
    assert not np.array_equal(a.signal, c.signal)
    assert a.signal.dtype == np.float32 and a.signal.shape == (24000,) and np.abs(a.signal).max() <= 1.0


def _by_class(task: str, n: int = 12) -> dict[int, list[np.ndarray]]:
    out = {0: [], 1: []}
    for i in range(n):
        e = make_example(np.random.default_rng([7, i]), task)
        out[e.label].append(e.signal)
    return out


def test_classes_differ_only_in_the_sound():
    assert len({t.text for t in TASKS.values()}) == 3  # one transcript per task, shared by its classes
    q = _by_class("question")
    end_rise = lambda x: f0_estimate(x[voiced_span(x)[1] - 1200 : voiced_span(x)[1] - 200]) / f0_estimate(  # noqa
        x[voiced_span(x)[0] + 800 : voiced_span(x)[0] + 1800])
    assert min(end_rise(x) for x in q[1]) > max(end_rise(x) for x in q[0])
    a = _by_class("arousal")
    rms = lambda x: float(np.sqrt(np.mean(x[slice(*voiced_span(x))] ** 2)))  # noqa: E731
    assert np.mean([rms(x) for x in a[1]]) > 1.5 * np.mean([rms(x) for x in a[0]])
    c = _by_class("confidence")
    assert np.mean([voiced_span(x)[0] for x in c[0]]) > np.mean([voiced_span(x)[0] for x in c[1]]) + 0.1 * SR
