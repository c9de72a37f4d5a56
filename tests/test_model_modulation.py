"""The sensory modulation reaches the memories' neuromodulators (issue 32): carried in the memory state, read at
every commit, trained by the main loss, switched off by modulate_memories, refused where nothing can give it."""

import functools

import pytest
import torch

from ember.errors import EmberConfigError
from ember.model import EmberModel
from ember.ops.slot_memory import SlotMemoryState
from ember.plugins.backbone.nml import NMLBackbone
from ember.plugins.memory.episodic import EpisodicStore
from ember.plugins.memory.procedural import LowRankPM
from ember.plugins.neuromod.learned import LearnedNeuromodulator
from helpers import ToySensory


def backbone(modulation_dim: int = 3) -> NMLBackbone:
    controller = functools.partial(LearnedNeuromodulator, modulation_dim=modulation_dim)
    return NMLBackbone(d_model=32, layers_per_block=1, heads=4, window=8,
                       pm=functools.partial(LowRankPM, neuromodulator=controller, slots=4, period=4),
                       em=functools.partial(EpisodicStore, neuromodulator=controller, items=8, top_k=2, period=4,
                                            writes=2))


def memory_states(model, state) -> list[SlotMemoryState]:
    return [s for s in model.backbone.memory_report(state).values() if isinstance(s, SlotMemoryState)]


def test_the_modulation_is_carried_in_every_memory_state_across_chunks():
    torch.manual_seed(0)
    model = EmberModel(backbone(), sensory=ToySensory())
    signal, tokens = torch.randn(2, 64), torch.randint(0, 256, (2, 12))
    _, modulation = model.perceive(signal)
    _, state = model(tokens, signal=signal)
    _, state = model(tokens, state)  # the next chunk: no signal, the state keeps it
    states = memory_states(model, state)
    assert len(states) == 2  # one PM, one EM
    for st in states:
        torch.testing.assert_close(st.modulation, modulation)


def test_the_main_loss_reaches_the_modulation_head_through_the_neuromodulators():
    torch.manual_seed(0)
    signal, tokens = torch.randn(2, 64), torch.randint(0, 256, (2, 24))
    grads = {}
    for on in (True, False):
        torch.manual_seed(0)
        model = EmberModel(backbone(), sensory=ToySensory(), modulate_memories=on)
        loss, _ = model.evaluate({"tokens": tokens, "signal": signal})
        loss.backward()
        grads[on] = model.sensory.mod.weight.grad
    # the modulation head feeds nothing but the neuromodulators: its gradient comes through them or not at all
    assert grads[True] is not None and grads[True].abs().sum() > 0
    assert grads[False] is None


def test_the_commit_gates_depend_on_the_modulation():
    torch.manual_seed(0)
    model = EmberModel(backbone(), sensory=ToySensory())
    tokens = torch.randint(0, 256, (1, 8))
    gates = []
    for value in (0.0, 5.0):
        state = model.backbone.modulate(None, torch.full((1, 3), value))
        _, state = model.backbone(tokens, state)
        gates.append(torch.stack([st.commit_rate for st in memory_states(model, state)]))
    assert not torch.allclose(gates[0], gates[1])


def test_a_controller_that_reads_modulation_needs_a_sensory_slot():
    with pytest.raises(EmberConfigError, match="modulation_dim to 0, or fill model.sensory"):
        EmberModel(backbone())
    EmberModel(backbone(modulation_dim=0))  # reads none: fine without a sensory slot


def test_a_modulation_of_another_size_names_the_fix():
    model = EmberModel(backbone(modulation_dim=2), sensory=ToySensory())  # ToySensory gives 3
    with pytest.raises(EmberConfigError, match="gives 3 modulation signals .* modulation_dim to 3"):
        model(torch.randint(0, 256, (2, 8)), signal=torch.randn(2, 64))
