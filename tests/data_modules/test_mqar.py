"""MQAR and ForgettingMQAR: the Zoology layout, the latest value asked for."""

import numpy as np

from ember.data_modules.mqar import MQAR, ForgettingMQAR


def test_mqar_follows_the_zoology_layout():
    task = MQAR(vocab_size=128, seq_len=64, num_kv_pairs=4, random_non_queries=False, window=8)
    ex = task.sample(np.random.default_rng(0))
    keys, values = ex.tokens[0:8:2], ex.tokens[1:8:2]
    assert (keys >= 1).all() and (keys < 64).all() and (values >= 64).all() and len(set(keys)) == 4
    queries = np.nonzero(ex.loss_mask)[0]
    assert len(queries) == 4 and ((queries - 8) % 2 == 0).all()
    binding = dict(zip(keys, values))
    for q in queries:
        assert binding[ex.tokens[q]] == ex.tokens[q + 1]  # the target of a query is its value


def test_forgetting_mqar_asks_for_the_latest_value():
    task = ForgettingMQAR(vocab_size=128, seq_len=64, num_kv_pairs=4, num_updates=2, random_non_queries=False)
    ex = task.sample(np.random.default_rng(2))
    latest = {}
    for i in range(0, 12, 2):
        latest[ex.tokens[i]] = ex.tokens[i + 1]
    assert len(latest) == 4  # 2 of the 4 keys were bound twice
    for q in np.nonzero(ex.loss_mask)[0]:
        assert latest[ex.tokens[q]] == ex.tokens[q + 1]
