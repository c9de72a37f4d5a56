"""MemoryTaskData and TaskExamples: determinism per split and index, impossible settings, batches."""

import pytest
import torch

from ember.data_modules.memory_task import MemoryTaskData, TaskExamples
from ember.data_modules.mqar import MQAR, ForgettingMQAR
from ember.data_modules.patterns import ProceduralPatterns
from ember.data_modules.recall import SessionRecall
from ember.errors import EmberConfigError


def test_examples_are_deterministic_per_split_and_index():
    task = SessionRecall(window=16, delays=(1, 4), seq_len=320)
    a, b = TaskExamples(task, "test", 4, seed=3), TaskExamples(task, "test", 4, seed=3)
    assert torch.equal(a[2]["tokens"], b[2]["tokens"])
    assert not torch.equal(a[2]["tokens"], TaskExamples(task, "val", 4, seed=3)[2]["tokens"])
    assert a[0]["tokens"].shape == (321,) and a[0]["loss_mask"].shape == (320,)


@pytest.mark.parametrize("make, fix", [
    (lambda: SessionRecall(window=64, delays=(8,), seq_len=256), "raise seq_len to 751"),
    (lambda: ProceduralPatterns(window=64, repetitions=4, gap=2, seq_len=256), "raise seq_len to 637"),
    (lambda: ProceduralPatterns(rule="reverse"), "use one of argument_order, substitution"),
    (lambda: MQAR(seq_len=64, num_kv_pairs=32), "raise seq_len or lower num_kv_pairs"),
    (lambda: ForgettingMQAR(num_kv_pairs=4, num_updates=5), "between 0 and num_kv_pairs=4")])
def test_impossible_settings_name_the_fix(make, fix):
    with pytest.raises(EmberConfigError, match=fix):
        make()


def test_data_module_batches_and_bad_sizes():
    dm = MemoryTaskData(MQAR(vocab_size=128, seq_len=64, num_kv_pairs=4), batch_size=3, val_size=5)
    batch = next(iter(dm.val_dataloader()))
    assert batch["tokens"].shape == (3, 65) and batch["loss_mask"].dtype == torch.bool
    with pytest.raises(EmberConfigError, match="batch_size=0 .* must be >= 1"):
        MemoryTaskData(MQAR(vocab_size=128, seq_len=64, num_kv_pairs=4), batch_size=0)


def test_also_test_adds_one_test_loader_per_task_and_refuses_a_repeated_name():
    main, closed = MQAR(vocab_size=128, seq_len=64, num_kv_pairs=4), SessionRecall(window=16, delays=(1,), seq_len=320)
    dm = MemoryTaskData(main, batch_size=2, test_size=4, also_test=[closed])
    assert [t.name for t in dm.eval_tasks] == ["mqar", "recall"]
    loaders = dm.test_dataloader()
    assert [next(iter(loader))["tokens"].shape[1] for loader in loaders] == [65, 321]  # each its own task
    assert not isinstance(MemoryTaskData(main).test_dataloader(), list)  # one task: one loader, as before
    with pytest.raises(EmberConfigError, match="repeats a task name"):
        MemoryTaskData(main, also_test=[MQAR(vocab_size=128, seq_len=64, num_kv_pairs=4)])


def test_context_weight_trains_on_the_whole_session_and_scores_the_answers_only():
    task = SessionRecall(window=16, delays=(1,), seq_len=320)
    dm = MemoryTaskData(task, batch_size=2, val_size=2, context_weight=0.25)
    train, val = next(iter(dm.train_dataloader())), next(iter(dm.val_dataloader()))
    weight, mask = train["loss_weight"], train["loss_mask"]
    assert torch.equal(weight[mask], torch.ones(int(mask.sum()))) and set(weight[~mask].tolist()) == {0.25}
    assert "loss_weight" not in val  # validation (and test) losses stay on the answers
    assert "loss_weight" not in next(iter(MemoryTaskData(task, batch_size=2).train_dataloader()))
    with pytest.raises(EmberConfigError, match="context_weight"):
        MemoryTaskData(task, context_weight=1.5)
