"""Active perception in the composite (issue 32): rounds of sensing with y and z carried, the stop rule, the
training loss held to a per-round reference, and the settings that cannot run refused by name."""

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from ember.base import SensoryOutput, SensoryRequest
from ember.errors import EmberConfigError
from ember.model import EmberModel
from ember.perception import View, stop_round
from ember.plugins.backbone.nml import NMLBackbone
from ember.plugins.reasoning.trm import TinyRecursiveCore
from ember.plugins.sensory.encoder import SpikingAudioEncoder, window
from helpers import ToyReasoning, ToySensory

RATE = 16  # samples per second of the toy signals


class WindowSensory(ToySensory):
    """ToySensory that serves time windows at RATE samples per second."""

    def sense(self, signal: Tensor, request: SensoryRequest) -> SensoryOutput:
        return self(window(signal, request, RATE))


def model(**kwargs) -> EmberModel:
    torch.manual_seed(0)
    backbone = NMLBackbone(d_model=32, layers_per_block=1, heads=4, window=8)
    return EmberModel(backbone, sensory=WindowSensory(), reasoning=ToyReasoning(), view_seconds=1.0, **kwargs)


def batch(b: int = 3, n: int = 9) -> dict:
    torch.manual_seed(1)
    return {"tokens": torch.randint(0, 256, (b, n + 1)), "signal": torch.randn(b, 3 * RATE)}


def test_round_r_sees_the_r_th_window_and_continues_the_last_rounds_answer():
    m, signal = model(max_rounds=3), batch()["signal"]
    views = m.rounds(signal)
    assert len(views) == 3
    thought = None
    for r, view in enumerate(views):
        tokens = m.sensory(signal[:, r * RATE:(r + 1) * RATE]).tokens
        thought = m.reasoning(tokens, thought)
        torch.testing.assert_close(view.prefix, torch.cat([thought.answer, tokens], 1))


def test_each_example_stops_after_the_first_round_whose_flag_is_low():
    prefix, mod = torch.zeros(4, 1, 1), torch.zeros(4, 3)
    flags = [torch.tensor([0.2, 0.9, 0.9, 0.6]), torch.tensor([0.9, 0.1, 0.9, 0.4]), torch.tensor([0.0, 0.0, 0.9, 0.0])]
    views = [View(prefix, mod, f) for f in flags]
    assert stop_round(views).tolist() == [0, 1, 2, 1]
    assert stop_round(views, threshold=0.0).tolist() == [2, 2, 2, 2]  # every round
    assert stop_round(views, threshold=1.0).tolist() == [0, 0, 0, 0]  # the first only


def per_round_losses(m: EmberModel, raw: dict) -> Tensor:
    """(R, b) mean nats per target of each example after each round, one round at a time (the reference)."""
    out = []
    for view in m.rounds(raw["signal"]):
        state = m.backbone.modulate(None, view.modulation)
        logits, _ = m.backbone(raw["tokens"][:, :-1], state, view.prefix)
        out.append(F.cross_entropy(logits.transpose(1, 2).float(), raw["tokens"][:, 1:], reduction="none").mean(1))
    return torch.stack(out)


def test_training_averages_the_rounds_and_teaches_the_flag_whether_the_next_round_helped():
    m, raw = model(max_rounds=3, round_cost=0.0), batch()
    m.train()
    reference = per_round_losses(m, raw)  # (3, b)
    more = torch.stack([v.more for v in m.rounds(raw["signal"])[:-1]])
    helped = (reference[1:] < reference[:-1]).float()
    want = reference.mean() + F.binary_cross_entropy(more, helped)
    got = m.evaluate(raw)[0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    got.backward()
    assert m.reasoning.halt.weight.grad.abs().sum() > 0  # ToyReasoning's flag is 1 - halt


def test_evaluation_scores_each_example_at_the_round_it_stops_after():
    m, raw = model(max_rounds=3), batch()
    m.eval()
    with torch.no_grad():
        reference = per_round_losses(m, raw)
        stop = stop_round(m.rounds(raw["signal"]))
        loss, preds = m.evaluate(raw)
        prefix, _ = m.perceive(raw["signal"])
        one_pass = m.backbone(raw["tokens"][:, :-1], None, prefix)[0]
    torch.testing.assert_close(loss, reference[stop, torch.arange(3)].mean(), rtol=1e-4, atol=1e-5)
    assert torch.equal(preds, one_pass.argmax(-1))  # forward (generation, sessions) reads the same rounds


def test_audio_encoders_serve_a_later_window_and_a_band():
    torch.manual_seed(0)
    enc = SpikingAudioEncoder(d_model=32, depth=1, heads=4, bands=16, patch=4, channels=8)
    signal = torch.randn(2, 16000)
    later = enc.sense(signal, SensoryRequest(0.5, 0.5))
    torch.testing.assert_close(later.tokens, enc(signal[:, 8000:]).tokens)
    low = enc.sense(signal, SensoryRequest(bands=(0.0, 0.5)))
    assert low.tokens.shape == enc(signal).tokens.shape and not torch.allclose(low.tokens, enc(signal).tokens)
    with pytest.raises(EmberConfigError, match="outside the 1 s signal"):
        enc.sense(signal, SensoryRequest(0.75, 0.5))
    with pytest.raises(EmberConfigError, match="bands=.* must be shares"):
        enc.sense(signal, SensoryRequest(bands=(0.5, 0.5)))


@pytest.mark.parametrize("kwargs, match", [
    (dict(max_rounds=0), "max_rounds=0 counts rounds"),
    (dict(max_rounds=2, reasoning=None), "needs a sensory slot, a reasoning core"),
    (dict(max_rounds=2, view_seconds=None), "view_seconds=None"),
    (dict(view_seconds=0.0), "view_seconds=0.0 must be"),
    (dict(sense_threshold=1.5), "sense_threshold=1.5 is a probability"),
], ids=["no-rounds", "no-reasoning", "no-window", "empty-window", "threshold"])
def test_settings_that_cannot_run_name_the_fix(kwargs, match):
    args = dict(sensory=WindowSensory(), reasoning=ToyReasoning(), view_seconds=1.0) | kwargs
    with pytest.raises(EmberConfigError, match=match):
        EmberModel(NMLBackbone(d_model=32, layers_per_block=1, heads=4, window=8), **args)


def test_a_request_the_encoder_cannot_serve_and_cut_sequences_are_refused():
    m = EmberModel(NMLBackbone(d_model=32, layers_per_block=1, heads=4, window=8), sensory=ToySensory(),
                   reasoning=ToyReasoning(), max_rounds=2, view_seconds=1.0)
    with pytest.raises(EmberConfigError, match="serves the whole signal only"):
        m.evaluate(batch())
    with pytest.raises(EmberConfigError, match="set model.init_args.tbptt_chunk null"):
        model(max_rounds=2, tbptt_chunk=4).evaluate(batch())


def trm_model(**kwargs) -> EmberModel:
    torch.manual_seed(0)
    core = TinyRecursiveCore(vocab_size=11, seq_len=2, d_model=32, T=1, n=1, n_sup=3)
    return EmberModel(NMLBackbone(d_model=32, layers_per_block=1, heads=4, window=8), sensory=WindowSensory(),
                      reasoning=core, view_seconds=1.0, **kwargs)


def test_deep_supervision_scores_every_step_of_the_core_and_detaches_between_them():
    m, raw = trm_model(deep_supervision=True), batch()
    m.train()
    tokens = m.sensory(raw["signal"][:, :RATE]).tokens
    steps = list(m.reasoning.steps(tokens))
    assert len(steps) == 3
    assert torch.autograd.grad(steps[1].answer.sum(), steps[0].answer, allow_unused=True)[0] is None
    reference = []
    for step in steps:
        logits, _ = m.backbone(raw["tokens"][:, :-1], m.backbone.modulate(None, m.sensory(raw["signal"][:, :RATE])[1]),
                               torch.cat([step.answer, tokens], 1))
        reference.append(F.cross_entropy(logits.transpose(1, 2).float(), raw["tokens"][:, 1:]))
    torch.testing.assert_close(m.evaluate(raw)[0], torch.stack(reference).mean(), rtol=1e-4, atol=1e-5)
    m.eval()  # evaluation reads the last step, as forward does
    with torch.no_grad():
        torch.testing.assert_close(m.evaluate(raw)[0], trm_model().eval().evaluate(raw)[0])


def test_deep_supervision_needs_the_core_and_the_senses():
    with pytest.raises(EmberConfigError, match="deep_supervision .* needs model.sensory and model.reasoning"):
        EmberModel(NMLBackbone(d_model=32, layers_per_block=1, heads=4, window=8), deep_supervision=True)


def test_a_reasoning_core_sized_for_other_sensory_tokens_names_the_fix():
    core = TinyRecursiveCore(vocab_size=11, seq_len=5, d_model=32, T=1, n=1, n_sup=1)
    m = EmberModel(NMLBackbone(d_model=32, layers_per_block=1, heads=4, window=8), sensory=ToySensory(), reasoning=core)
    with pytest.raises(EmberConfigError, match="seq_len=5 positions but is given 2 tokens.*seq_len 2"):
        m.evaluate(batch())
