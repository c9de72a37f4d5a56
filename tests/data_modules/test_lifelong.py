"""LifelongWorld and LifelongData: days of sessions fixed by the seed, quizzes that ask exactly a session's facts with
nothing before them, values from the unseen share, and training steps that walk the days in order."""

import numpy as np
import pytest

from ember.data_modules.lifelong import LifelongData, LifelongWorld
from ember.data_modules.recall import OpenRecall
from ember.data_modules.vocab import split_of
from ember.errors import EmberConfigError
from helpers import tokens_text


def _world(**kwargs) -> LifelongWorld:
    recall = OpenRecall(window=16, delays=[4], people=3, attributes=2, seq_len=768)
    return LifelongWorld(recall, **{"days": 3, "sessions_per_day": 2, **kwargs})


def _answers(example) -> list[str]:
    text = bytes(example.tokens[1:][example.loss_mask].tolist()).decode()
    ids = example.answer_id[example.loss_mask]
    return ["".join(c for c, i in zip(text, ids) if i == a) for a in sorted(set(ids.tolist()))]


def test_a_quiz_asks_its_sessions_facts_with_nothing_before_them():
    world = _world()
    facts = world.facts(1, 0)
    session, quiz = world.session(1, 0), world.quiz(1, 0)
    assert sorted(_answers(quiz)) == sorted(v for _, _, v in facts) == sorted(_answers(session))
    text = tokens_text(quiz.tokens)
    assert text.startswith("Q: ") and " is " not in text  # questions only: no fact stated
    assert set(quiz.group[quiz.loss_mask].tolist()) == {1}  # grouped by the facts' day
    assert all(split_of(v) == "test" for _, _, v in facts)  # values from the share training never sees


def test_the_world_is_fixed_by_its_seed_and_days_differ():
    assert _world().facts(2, 1) == _world().facts(2, 1)
    assert _world().facts(2, 1) != _world(seed=1).facts(2, 1)
    assert _world().facts(0, 0) != _world().facts(1, 0)


def test_training_steps_walk_the_days_in_order():
    world = _world()
    data = LifelongData(world, steps_per_day=2, batch_size=2)
    batches = list(data.train_dataloader())
    assert len(batches) == 2 * 3
    for step, batch in enumerate(batches):
        day = step // 2
        expected = np.stack([world.session(day, k).tokens for k in range(2)])
        assert np.array_equal(batch["tokens"].numpy(), expected)
    quizzes = list(data.val_dataloader())
    assert sum(len(b["tokens"]) for b in quizzes) == 3 * 2


def test_bad_settings_name_the_fix():
    with pytest.raises(EmberConfigError, match="raise quiz_len"):
        _world(quiz_len=16)
    with pytest.raises(EmberConfigError, match="days=0"):
        _world(days=0)
