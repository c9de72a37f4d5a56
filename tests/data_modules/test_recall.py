"""SessionRecall: exactly the answers are scored, and they match the facts."""

import re

import numpy as np

from ember.data_modules.recall import SessionRecall
from helpers import tokens_text as text


def test_recall_scores_exactly_the_answers_and_they_match_the_facts():
    task = SessionRecall(window=32, delays=(2,), people=2, attributes=2, seq_len=400)
    ex = task.sample(np.random.default_rng(0))
    body = text(ex.tokens)
    facts = dict(((n, a), v) for n, a, v in re.findall(r"(\w+ \w+)'s (\w+) is (\w+)\.", body.split("\n")[0]))
    assert len(facts) == 4
    for i in range(4):
        positions = np.nonzero(ex.answer_id == i)[0]
        answer = text(ex.tokens[positions + 1])  # targets are the next tokens
        name, attr = re.findall(r"Q: (\w+ \w+)'s (\w+)\? A: " + answer, body)[0]
        assert facts[(name, attr)] == answer
    assert ex.loss_mask.sum() == sum(len(v) for v in facts.values())
    assert set(ex.group[ex.loss_mask]) == {0}
    question = body.index("Q:")
    assert question - len(body.split("\n")[0]) >= 2 * 32  # the delay separates facts and questions
    assert 0.05 < task.chance() < 0.1
