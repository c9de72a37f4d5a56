"""ProceduralPatterns: one rule per session, one argument order per session, a true length bound."""

import numpy as np
import pytest

from ember.data_modules.patterns import ProceduralPatterns
from ember.errors import EmberConfigError
from helpers import tokens_text as text


def test_patterns_apply_one_substitution_in_every_repetition():
    task = ProceduralPatterns(window=16, repetitions=3, gap=1, rule="substitution", words=2, seq_len=300)
    ex = task.sample(np.random.default_rng(1))
    mapping = {}
    for k in range(3):
        positions = np.nonzero(ex.answer_id == k)[0]
        assert set(ex.group[positions]) == {k}
        cipher = text(ex.tokens[positions + 1])
        plain = text(ex.tokens[: positions[0] + 1]).rsplit("code: ", 1)[1][:-3]
        assert len(plain) == len(cipher)
        for p, c in zip(plain, cipher):
            assert mapping.setdefault(p, c) == c  # the same rule every time
    assert mapping[" "] == " "


def test_patterns_keep_one_argument_order_per_session():
    task = ProceduralPatterns(window=16, repetitions=4, gap=2, args=3, seq_len=400)
    orders = set()
    for seed in range(6):
        ex = task.sample(np.random.default_rng(seed))
        calls = []
        for k in range(4):
            positions = np.nonzero(ex.answer_id == k)[0]
            assert set(ex.group[positions]) == {k}
            call = text(ex.tokens[positions + 1])  # "city=7, date=4, size=2)"
            asked = text(ex.tokens[: positions[0] + 1]).rsplit("ask ", 1)[1].split("\n")[0].split(": ", 1)[1]
            values = dict(pair.split(" ") for pair in asked.split(", "))
            pairs = [pair.split("=") for pair in call.rstrip(")").split(", ")]
            assert {name: value for name, value in pairs} == values  # every asked value, copied
            calls.append([name for name, _ in pairs])
        assert all(names == calls[0] for names in calls)  # one order for the whole session
        orders.add(tuple(calls[0]))
    assert len(orders) > 1  # sessions differ
    assert task.chance() == pytest.approx(1 / 6)


def test_patterns_length_check_is_a_true_bound():
    with pytest.raises(EmberConfigError, match="raise seq_len to 301"):
        ProceduralPatterns(window=16, repetitions=4, gap=1, args=3, seq_len=300)
    task = ProceduralPatterns(window=16, repetitions=4, gap=1, args=3, seq_len=301)  # the longest fits exactly
    for seed in range(300):
        task.sample(np.random.default_rng(seed))  # never "an example needs more tokens"


@pytest.mark.parametrize("rule", ["argument_order", "substitution"])
def test_open_patterns_test_on_names_and_tables_training_never_showed(rule):
    task = ProceduralPatterns(window=16, repetitions=3, gap=1, rule=rule, vocabulary="open", seq_len=400)
    seen = {split: set() for split in ("train", "test")}
    for split, names in seen.items():
        for seed in range(40):
            ex = task.sample(np.random.default_rng(seed), split)
            prompt = text(ex.tokens[: np.nonzero(ex.answer_id == 0)[0][0] + 1])
            if rule == "substitution":
                names.update(prompt.rsplit("code: ", 1)[1][:-3].split(" "))
                names.add(text(ex.tokens[1:][ex.loss_mask]))  # the ciphers: different tables, different ciphers
            else:
                asked = prompt.rsplit("ask ", 1)[1]
                names.add(asked.split(":")[0])  # the function
                names.update(pair.split(" ")[0] for pair in asked.split("\n")[0].split(": ", 1)[1].split(", "))
    assert not seen["train"] & seen["test"] and len(seen["test"]) > 30


@pytest.mark.parametrize("rule, words_or_args", [("argument_order", 3), ("substitution", 3)])
def test_open_patterns_length_check_is_a_true_bound(rule, words_or_args):
    settings = dict(window=16, repetitions=3, gap=1, rule=rule, vocabulary="open", args=words_or_args,
                    words=words_or_args)
    needed = {"argument_order": 3 * (18 + 20 * 3), "substitution": 3 * (8 + 14 * 3)}[rule] + 2 * 18
    with pytest.raises(EmberConfigError, match=f"raise seq_len to {needed - 1}"):
        ProceduralPatterns(seq_len=needed - 2, **settings)
    task = ProceduralPatterns(seq_len=needed - 1, **settings)
    for seed in range(200):
        task.sample(np.random.default_rng(seed), "test")  # never "an example needs more tokens"
