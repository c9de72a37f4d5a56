"""Session recall (EM benchmark, SPEC 4): facts about people, a distractor longer than the
working-memory window, then questions; scored on the answer bytes only.

    Ada Obi's city is Lyon. Ben Kim's job is baker. ... <distractor: delay x W bytes of real text>
    Q: Ben Kim's job? A: baker
    Q: Ada Obi's city? A: Lyon
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ember.base import Example, MemoryTask
from ember.data_modules.memory_task import ExampleBuilder, TextSource
from ember.errors import EmberConfigError

FIRST = ("Ada Ben Cleo Dev Emil Fay Gus Hana Ivo Jun Kai Lea Milo Nia Omar Pia Quin Rosa Sami Tess Uma Vik Wes "
         "Xia Yara Zeno Ali Bea Cruz Dina Eli Fern Gil Iris Jara Kofi Lina Mara Nils Otto").split()
LAST = ("Obi Kim Ross Vega Lund Moss Park Diaz Khan Rossi Silva Novak Berg Costa Haas Ito Leroy Meyer Nash "
        "Okoro Quist Reyes Sato Tan Ueda Voss Wolfe Young Zhou Abe Baker Cole Duval Engel Fox Gray").split()
ATTRIBUTES = {
    "city": "Lyon Oslo Lima Cairo Porto Kyoto Dakar Quito Perth Turin Hanoi Malmo Tunis Bergen Leeds Graz "
            "Basel Nantes Seville Krakow".split(),
    "job": "baker nurse pilot judge miner tailor farmer lawyer dentist chemist plumber painter welder sailor "
           "teacher chef".split(),
    "pet": "cat dog parrot rabbit turtle hamster goat pony ferret lizard snake owl".split(),
    "color": "red blue green amber violet black white orange teal pink grey gold".split(),
    "sport": "tennis rugby chess golf rowing hockey boxing karate cricket judo fencing skiing".split(),
}


class SessionRecall(MemoryTask):
    """Facts about `people` people (`attributes` each), a distractor of delay x window bytes, then
    one question per fact in random order. Groups: the delays ("4xW" = 4 windows of distractor).

    Args:
        window: the working-memory window W of the model under test, in bytes.
        delays: distractor lengths in multiples of W (one per example, cycling with the index).
        people: people per session.
        attributes: facts per person (distinct attributes).
        seq_len: tokens per example (must hold the longest delay).
        distractor: text file of distractor text; null for the built-in corpus.
    """

    name = "recall"

    def __init__(self, window: int = 64, delays: tuple[int, ...] = (1, 2, 4, 8), people: int = 2,
                 attributes: int = 2, seq_len: int = 768, distractor: Optional[str] = None):
        if window < 1 or not delays or min(delays) < 0:
            raise EmberConfigError(f"window={window} must be >= 1 and delays={list(delays)} non-negative multiples")
        if not 1 <= attributes <= len(ATTRIBUTES) or not 1 <= people <= len(FIRST):
            raise EmberConfigError(f"attributes={attributes} must be in [1, {len(ATTRIBUTES)}], people={people} "
                                   f"in [1, {len(FIRST)}]")
        self.window, self.delays, self.people, self.attributes = window, list(delays), people, attributes
        self.seq_len, self.text = seq_len, TextSource(distractor)
        self.group_names = [f"{d}xW" for d in self.delays]
        longest = self.people * self.attributes * 60 + max(self.delays) * window
        if longest > seq_len + 1:
            raise EmberConfigError(f"seq_len={seq_len} cannot hold {people * attributes} facts, their questions "
                                   f"and a {max(self.delays)}xW={max(self.delays) * window}-byte distractor: "
                                   f"raise seq_len to {longest} or shorten the delays")

    def chance(self) -> float:
        return float(np.mean([1.0 / len(v) for v in ATTRIBUTES.values()]))

    def sample(self, rng: np.random.Generator) -> Example:
        group = int(rng.integers(len(self.delays)))
        names = [f"{FIRST[i]} {LAST[j]}" for i, j in zip(rng.choice(len(FIRST), self.people, replace=False),
                                                         rng.choice(len(LAST), self.people, replace=False))]
        facts = []
        for name in names:
            for attr in rng.choice(list(ATTRIBUTES), self.attributes, replace=False):
                facts.append((name, str(attr), str(rng.choice(ATTRIBUTES[attr]))))
        ex = ExampleBuilder()
        ex.add(" ".join(f"{n}'s {a} is {v}." for n, a, v in facts).encode() + b"\n")
        ex.add(self.text.slice(rng, self.delays[group] * self.window))
        ex.add(b"\n")
        for i in rng.permutation(len(facts)):
            name, attr, value = facts[i]
            ex.add(f"Q: {name}'s {attr}? A: ".encode())
            ex.answer(value.encode(), group)
            ex.add(b"\n")
        return ex.build(self.seq_len, filler=self.text.slice(rng, self.seq_len + 1))
