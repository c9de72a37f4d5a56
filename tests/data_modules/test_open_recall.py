"""Open-vocabulary recall: values and names drawn from generators whose splits are disjoint by construction."""

import re

import numpy as np
import pytest

from ember.data_modules.recall import OPEN_ATTRIBUTES, OpenRecall
from ember.data_modules.vocab import KINDS, Vocabulary, split_of
from ember.errors import EmberConfigError


@pytest.mark.parametrize("kind", KINDS)
def test_each_split_draws_only_its_own_values(kind):
    vocab = Vocabulary(kind, length=6)
    splits = ("train", "val", "test")
    drawn = {split: vocab.draw(np.random.default_rng(i), split, 300) for i, split in enumerate(splits)}
    for split, values in drawn.items():
        assert len(set(values)) == 300 and all(split_of(v) == split for v in values)
    assert not set(drawn["train"]) & set(drawn["test"]) and not set(drawn["train"]) & set(drawn["val"])


def test_split_of_is_a_fixed_function_of_the_string():
    # the rule must not move between releases: a model's "unseen" test values would leak into training
    assert [split_of(v) for v in ("Tavo", "lenkirtol", "5968 9005", "VV-4881", "bullur lorpis")] == \
        [split_of(v) for v in ("Tavo", "lenkirtol", "5968 9005", "VV-4881", "bullur lorpis")]
    shares = np.bincount([("train", "val", "test").index(split_of(str(i))) for i in range(20000)], minlength=3)
    np.testing.assert_allclose(shares / 20000, [0.8, 0.1, 0.1], atol=0.01)


def _answers_and_names(task: OpenRecall, split: str, sessions: int) -> tuple[set, set]:
    answers, names = set(), set()
    for i in range(sessions):
        ex = task.sample(np.random.default_rng([7, i]), split)
        targets = ex.tokens[1:]
        for aid in np.unique(ex.answer_id[ex.answer_id >= 0]):
            answers.add(bytes(targets[ex.answer_id == aid].tolist()).decode())
        text = bytes(ex.tokens.tolist()).decode(errors="replace")
        names |= {line.split("'s ")[0][3:] for line in text.splitlines() if line.startswith("Q: ")}
    return answers, names


def test_open_recall_tests_on_values_and_names_that_never_occur_in_training():
    task = OpenRecall(window=16, delays=(4,), people=3, attributes=2, seq_len=640)
    train_answers, train_names = _answers_and_names(task, "train", 300)
    test_answers, test_names = _answers_and_names(task, "test", 100)
    assert len(train_answers) > 1500 and len(test_answers) > 500  # 6 facts a session, almost all distinct
    assert not train_answers & test_answers
    first_and_last = lambda names: {part for name in names for part in name.split()}  # noqa: E731
    assert not first_and_last(train_names) & first_and_last(test_names)


def test_a_session_binds_three_people_two_facts_each_and_scores_only_the_values():
    task = OpenRecall(window=16, delays=(4,), people=3, attributes=2, seq_len=640)
    ex = task.sample(np.random.default_rng(0), "test")
    text = bytes(ex.tokens.tolist()).decode(errors="replace")
    facts = text.splitlines()[0].rstrip(".").split(". ")
    assert len(facts) == 6 and len({f.split("'s ")[0] for f in facts}) == 3
    for aid in range(6):
        value = bytes(ex.tokens[1:][ex.answer_id == aid].tolist()).decode()
        question = next(q for q in text.splitlines() if q.startswith("Q: ") and q.endswith("A: " + value))
        name, attr = question[3:].split("'s ")[0], question.split("'s ")[1].split("?")[0]
        assert f"{name}'s {attr} is {value}" in facts and attr in OPEN_ATTRIBUTES
    assert ex.loss_mask.sum() == sum(len(bytes(ex.tokens[1:][ex.answer_id == a].tolist())) for a in range(6))
    assert task.chance() == 0.0


def test_a_vocabulary_too_small_for_the_session_names_the_fix():
    with pytest.raises(EmberConfigError, match="too few for 40 distinct ones per session: raise its length"):
        Vocabulary("digits", length=2).draw(np.random.default_rng(0), "test", 40)


def test_a_seq_len_too_short_for_the_facts_names_the_length_to_use():
    with pytest.raises(EmberConfigError, match=r"seq_len=300 cannot hold 6 facts .* raise seq_len to \d+") as err:
        OpenRecall(window=16, delays=(4, 16), people=3, attributes=2, seq_len=300)
    enough = int(re.search(r"raise seq_len to (\d+)", str(err.value)).group(1))
    OpenRecall(window=16, delays=(4, 16), people=3, attributes=2, seq_len=enough)  # the length it names is enough
    with pytest.raises(EmberConfigError, match=f"raise seq_len to {enough}"):
        OpenRecall(window=16, delays=(4, 16), people=3, attributes=2, seq_len=enough - 1)  # and the least that is
    with pytest.raises(EmberConfigError, match="attributes=9 must be in"):
        OpenRecall(attributes=9)
