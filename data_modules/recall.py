"""Session recall (EM benchmark, SPEC 4): facts about people, a distractor longer than the
working-memory window, then questions; scored on the answer bytes only.

    Ada Obi's city is Lyon. Ben Kim's job is baker. ... <distractor: delay x W bytes of real text>
    Q: Ben Kim's job? A: baker
    Q: Ada Obi's city? A: Lyon

`SessionRecall` draws names and values from small fixed lists (a model can learn to pick one of a few
dozen answers); `OpenRecall` draws them from open vocabularies (data_modules/vocab.py) whose train, val
and test values are disjoint, so its test measures memory of values never seen in training:

    Tavo Rimel's phone is 4827 1093. Brasi Kon's code is KT-5081. ...
    Q: Brasi Kon's code? A: KT-5081
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ember.base import Example, MemoryTask, Split
from ember.data_modules.memory_task import ExampleBuilder, TextSource
from ember.data_modules.vocab import Vocabulary
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
        self._session_settings(window, delays, people, attributes, seq_len, distractor)
        if not 1 <= attributes <= len(ATTRIBUTES) or not 1 <= people <= len(FIRST):
            raise EmberConfigError(f"attributes={attributes} must be in [1, {len(ATTRIBUTES)}], people={people} "
                                   f"in [1, {len(FIRST)}]")
        longest = self.people * self.attributes * 60 + max(self.delays) * window
        if longest > seq_len + 1:
            raise EmberConfigError(f"seq_len={seq_len} cannot hold {people * attributes} facts, their questions "
                                   f"and a {max(self.delays)}xW={max(self.delays) * window}-byte distractor: "
                                   f"raise seq_len to {longest - 1} or shorten the delays")

    def _session_settings(self, window: int, delays: tuple[int, ...], people: int, attributes: int, seq_len: int,
                          distractor: Optional[str]):
        """Check the window and delays and keep the settings every recall task shares."""
        if window < 1 or not delays or min(delays) < 0:
            raise EmberConfigError(f"window={window} must be >= 1 and delays={list(delays)} non-negative multiples")
        self.window, self.delays, self.people, self.attributes = window, list(delays), people, attributes
        self.seq_len, self.text = seq_len, TextSource(distractor)
        self.group_names = [f"{d}xW" for d in self.delays]

    def chance(self) -> float:
        return float(np.mean([1.0 / len(v) for v in ATTRIBUTES.values()]))

    def sample(self, rng: np.random.Generator, split: Split = "train") -> Example:
        group = int(rng.integers(len(self.delays)))
        names = [f"{FIRST[i]} {LAST[j]}" for i, j in zip(rng.choice(len(FIRST), self.people, replace=False),
                                                         rng.choice(len(LAST), self.people, replace=False))]
        facts = []
        for name in names:
            for attr in rng.choice(list(ATTRIBUTES), self.attributes, replace=False):
                facts.append((name, str(attr), str(rng.choice(ATTRIBUTES[attr]))))
        return self.session(rng, facts, group)

    def session(self, rng: np.random.Generator, facts: list[tuple[str, str, str]], group: int) -> Example:
        """The example of (name, attribute, value) facts: the facts, the distractor of the group's delay, then
        one question per fact in random order, scored on the values."""
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


OPEN_ATTRIBUTES = {"city": Vocabulary("name"), "phone": Vocabulary("digits", 8), "code": Vocabulary("code", 4),
                   "password": Vocabulary("word"), "motto": Vocabulary("phrase")}


class OpenRecall(SessionRecall):
    """Session recall over open vocabularies: the test's names and values never occur in training.

    Every name and value is drawn fresh from a generator (capitalised made-up names, 8-digit phone numbers,
    codes like KT-5081, pronounceable words, two-word mottos), and the train, val and test splits draw from
    disjoint shares of each generator's space (data_modules/vocab.py).
    With several people per session the question must bind name + attribute -> value. Chance is 0: without
    the session no guess is better than any other of millions. Groups: the delays.

    Args:
        window: the working-memory window W of the model under test, in bytes.
        delays: distractor lengths in multiples of W (one per example, cycling with the index).
        people: people per session (their names are distinct).
        attributes: facts per person, from city, phone, code, password, motto.
        seq_len: tokens per example (must hold the facts, their questions and the longest delay).
        distractor: text file of distractor text; null for the built-in corpus.
    """

    name = "open_recall"
    NAME = Vocabulary("name")

    def __init__(self, window: int = 64, delays: tuple[int, ...] = (1, 4), people: int = 3, attributes: int = 2,
                 seq_len: int = 768, distractor: Optional[str] = None):
        if not 1 <= attributes <= len(OPEN_ATTRIBUTES) or people < 1:
            raise EmberConfigError(f"attributes={attributes} must be in [1, {len(OPEN_ATTRIBUTES)}] and "
                                   f"people={people} >= 1")
        self._session_settings(window, delays, people, attributes, seq_len, distractor)
        longest = self.facts_bytes(np.random.default_rng(0)) + max(self.delays) * window + 2
        if longest > seq_len + 1:
            raise EmberConfigError(f"seq_len={seq_len} cannot hold {people * attributes} facts with their questions "
                                   f"and a {max(self.delays)}xW={max(self.delays) * window}-byte distractor: raise "
                                   f"seq_len to {longest - 1}, or use fewer people, attributes or shorter delays")

    def facts_bytes(self, rng: np.random.Generator, sessions: int = 256) -> int:
        """The most bytes the facts and their questions took in `sessions` drawn sessions: each fact
        "N's a is v. " and "Q: N's a? A: v\n". A drawn session longer than this is drawn again (`sample`)."""
        return max(self.fact_bytes(self.facts(rng, "train")) for _ in range(sessions))

    @staticmethod
    def fact_bytes(facts: list[tuple[str, str, str]]) -> int:
        return sum(2 * (len(n) + len(a) + len(v)) + 21 for n, a, v in facts)

    def chance(self) -> float:
        return 0.0

    def sample(self, rng: np.random.Generator, split: Split = "train") -> Example:
        group = int(rng.integers(len(self.delays)))
        room = self.seq_len - 1 - self.delays[group] * self.window - 2
        for _ in range(100):  # a session of unusually long values is drawn again (rarely: see facts_bytes)
            facts = self.facts(rng, split)
            if self.fact_bytes(facts) <= room:
                return self.session(rng, facts, group)
        raise EmberConfigError(f"seq_len={self.seq_len} is too short for these sessions: raise it")

    def facts(self, rng: np.random.Generator, split: Split) -> list[tuple[str, str, str]]:
        """(name, attribute, value) of `people` people with distinct names, `attributes` facts each."""
        names = [f"{first} {last}" for first, last in zip(self.NAME.draw(rng, split, self.people),
                                                          self.NAME.draw(rng, split, self.people))]
        return [(name, str(attr), OPEN_ATTRIBUTES[str(attr)].draw(rng, split)[0]) for name in names
                for attr in rng.choice(list(OPEN_ATTRIBUTES), self.attributes, replace=False)]
