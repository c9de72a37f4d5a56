"""EmberModel: the composite's prefix, slot widths, checkpoints, TBPTT chunks, compiled slot memories."""

import pytest
import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader

from ember.errors import CheckpointMismatchError, EmberConfigError
from ember.model import EmberModel
from ember.plugins.backbone.nml import NMLBackbone
from helpers import ToyReasoning, ToySensory


def backbone():
    return NMLBackbone(d_model=32, layers_per_block=1, heads=4, window=8)


def test_full_composite_feeds_answer_and_sensory_tokens_as_prefix():
    model = EmberModel(backbone(), sensory=ToySensory(), reasoning=ToyReasoning())
    tokens, signal = torch.randint(0, 256, (2, 10)), torch.randn(2, 64)
    logits, _ = model(tokens, signal=signal)
    assert logits.shape == (2, 10, 264)
    assert not torch.allclose(logits, model(tokens)[0])
    assert model.perceive(signal)[0].shape == (2, 4, 32)  # [y ; e]: 2 answer + 2 sensory tokens


def test_slot_width_mismatch_names_the_fix():
    with pytest.raises(EmberConfigError, match="sensory.d_model=16 must equal backbone.d_model=32"):
        EmberModel(backbone(), sensory=ToySensory(d_model=16))


@pytest.mark.slow
@pytest.mark.parametrize("full", [True, False], ids=["full-composite", "slots-nulled"])
def test_checkpoint_round_trip(tmp_path, full):
    def make():
        kwargs = dict(sensory=ToySensory(), reasoning=ToyReasoning()) if full else {}
        return EmberModel(backbone(), **kwargs)

    model = make()
    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_steps=1)
    batch = {"tokens": torch.randint(0, 256, (2, 17)), "signal": torch.randn(2, 64)}
    trainer.fit(model, DataLoader([batch], batch_size=None))
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    loaded = EmberModel.load_from_checkpoint(path, backbone=backbone(),
                                             **(dict(sensory=ToySensory(), reasoning=ToyReasoning()) if full else {}))
    for (k, v), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    if full:  # the same checkpoint into a composite with the slots nulled is refused by name
        with pytest.raises(CheckpointMismatchError, match="sensory: checkpoint has ToySensory, config has None"):
            EmberModel.load_from_checkpoint(path, backbone=backbone())


def test_tbptt_chunks_give_the_same_loss_as_one_chunk():
    torch.manual_seed(0)
    whole, chunked = EmberModel(backbone()), EmberModel(backbone(), tbptt_chunk=7)
    chunked.load_state_dict(whole.state_dict())
    tokens = torch.randint(0, 256, (2, 30))
    torch.testing.assert_close(whole.evaluate(tokens)[0],
                               chunked.evaluate(tokens)[0])


def test_compile_periods_reaches_every_slot_memory_at_setup():
    from ember.plugins.memory.episodic import EpisodicStore
    from ember.plugins.memory.procedural import LowRankPM
    from ember.plugins.neuromod.learned import LearnedNeuromodulator

    def memory_backbone():
        return NMLBackbone(d_model=16, blocks=2, layers_per_block=1, heads=2, window=8,
                           pm=lambda d: LowRankPM(d, LearnedNeuromodulator, slots=2, period=4),
                           em=lambda d: EpisodicStore(d, LearnedNeuromodulator, items=4, period=4, writes=2))

    model = EmberModel(memory_backbone(), compile_periods="reduce-overhead")
    model.setup("fit")  # compiles lazily: nothing runs here
    memories = [m for m in model.modules() if isinstance(m, (LowRankPM, EpisodicStore))]
    assert len(memories) == 4 and all(m.compile_mode == "reduce-overhead" for m in memories)
    eager = EmberModel(memory_backbone())
    eager.setup("fit")
    assert all(m.compile_mode is None for m in eager.modules() if isinstance(m, (LowRankPM, EpisodicStore)))


@pytest.mark.parametrize("compare", [True, False])
def test_ember_test_scores_each_benchmark_again_with_the_memories_off(compare):
    from ember.data_modules.memory_task import MemoryTaskData
    from ember.data_modules.recall import OpenRecall
    from ember.plugins.memory.episodic import EpisodicStore
    from ember.plugins.neuromod.learned import LearnedNeuromodulator

    torch.manual_seed(0)
    em = lambda d: EpisodicStore(d, neuromodulator=LearnedNeuromodulator, items=8, top_k=2, period=8)  # noqa: E731
    model = EmberModel(NMLBackbone(d_model=16, blocks=1, layers_per_block=1, heads=2, window=8, em=em),
                       test_memories_off=compare)
    data = MemoryTaskData(OpenRecall(window=8, delays=(1,), people=1, attributes=1, seq_len=128), batch_size=2,
                          test_size=2)
    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    (metrics,) = trainer.test(model, datamodule=data, verbose=False)
    off = {k for k in metrics if "/memories_off/" in k}
    assert off == ({k.replace("open_recall/", "open_recall/memories_off/") for k in metrics
                    if k.startswith("eval/open_recall/acc") or k.startswith("eval/open_recall/byte_acc")}
                   if compare else set())
    assert model.memories == "on" and all(m.enabled for m in model.modules() if isinstance(m, EpisodicStore))


def test_validation_scores_are_means_over_the_whole_set_not_over_batches():
    """A last batch smaller than the others counts by its answers and tokens, as torchmetrics' weighted mean does
    across ranks too: the logged scores equal the whole set's right answers / answers and mean loss per token."""
    import torch.nn.functional as F

    from ember.batch import Batch
    from ember.data_modules.memory_task import MemoryTaskData
    from ember.data_modules.recall import OpenRecall
    from ember.metrics import answer_stats

    torch.manual_seed(0)
    model = EmberModel(backbone())
    data = MemoryTaskData(OpenRecall(window=8, delays=(1,), people=2, attributes=1, seq_len=192), batch_size=2,
                          val_size=3)
    (logged,) = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False).validate(
        model, datamodule=data, verbose=False)
    data.setup("fit")
    nll, weight, right, answers, right_bytes, nbytes = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    with torch.no_grad():
        for raw in data.val_dataloader():
            batch = Batch.of(raw)
            logits = model(batch.inputs)[0]
            w = batch.weights()
            per_token = F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), reduction="none")
            nll += (per_token * w.flatten()).sum()
            weight += w.sum()
            stats = answer_stats(logits.argmax(-1) == batch.targets, batch.loss_mask, batch.answer_id, batch.group, 1)
            right, answers = right + stats["right"].sum(), answers + stats["answers"].sum()
            right_bytes, nbytes = right_bytes + stats["right_bytes"].sum(), nbytes + stats["bytes"].sum()
    assert logged["val/loss"] == pytest.approx(float(nll / weight), rel=1e-5)
    assert logged["val/open_recall/byte_acc"] == pytest.approx(float(right_bytes / nbytes), rel=1e-6)
    assert logged["val/open_recall/acc"] == pytest.approx(float(right / answers), rel=1e-6)


def test_memory_statistics_are_averaged_over_ranks(monkeypatch):
    """mem/* (and the spike rate) log with sync_dist: under DDP each rank's value alone would be logged by rank 0."""
    from types import SimpleNamespace

    from helpers import DEBUG, build_model

    model = build_model(DEBUG)
    logged = {}
    monkeypatch.setattr(model, "log", lambda name, value, **kw: logged.__setitem__(name, kw))
    model._trainer = SimpleNamespace(testing=False)
    _, state = model(torch.randint(0, 256, (2, 32)), None)
    model._log_memory(state)
    memory = {name: kw for name, kw in logged.items() if name.startswith("mem/")}
    assert "mem/train_commit_rate" in memory and len(memory) > 2
    assert all(kw.get("sync_dist") for kw in memory.values())
