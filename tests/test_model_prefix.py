"""EmberModel with a sensory slot: the signal reaches the logits only through the slot, as a prefix of the
first chunk (the binding test of issue #5)."""

import torch

from ember.model import EmberModel
from helpers import ToySensory
from helpers import binding_backbone as backbone
from helpers import binding_data as data


def test_text_only_model_cannot_see_the_class():
    """Without a sensory slot the signal is ignored: two classes, same tokens -> the same logits."""
    torch.manual_seed(0)
    model = EmberModel(backbone())
    batch = next(iter(data().val_dataloader()))
    tokens = batch["tokens"][:1, :-1]
    other = torch.randn_like(batch["signal"][:1])
    torch.testing.assert_close(model(tokens, signal=batch["signal"][:1]).logits, model(tokens, signal=other).logits)


def test_a_sensory_slot_changes_the_logits_and_text_batches_train_as_before():
    torch.manual_seed(0)
    plain = EmberModel(backbone())
    sensed = EmberModel(backbone(), sensory=ToySensory())
    sensed.backbone.load_state_dict(plain.backbone.state_dict())
    tokens, signal = torch.randint(0, 256, (2, 30)), torch.randn(2, 64)
    assert not torch.allclose(sensed(tokens, signal=signal).logits, sensed(tokens, signal=-signal).logits)
    text = plain.evaluate({"tokens": tokens})[0]
    torch.testing.assert_close(sensed.evaluate({"tokens": tokens})[0], text)
    torch.testing.assert_close(sensed.evaluate(tokens)[0], text)
    assert not torch.allclose(sensed.evaluate({"tokens": tokens, "signal": signal})[0], text)


def test_the_prefix_goes_to_the_first_chunk_only_and_tbptt_matches_one_chunk():
    torch.manual_seed(0)
    whole = EmberModel(backbone(), sensory=ToySensory())
    chunked = EmberModel(backbone(), sensory=ToySensory(), tbptt_chunk=7)
    chunked.load_state_dict(whole.state_dict())
    batch = {"tokens": torch.randint(0, 256, (2, 30)), "signal": torch.randn(2, 64)}
    calls = []
    chunked.sensory.register_forward_hook(lambda *_: calls.append(1))
    torch.testing.assert_close(chunked.evaluate(batch)[0],
                               whole.evaluate(batch)[0])
    assert len(calls) == 1  # encoded once per sequence, not per chunk
