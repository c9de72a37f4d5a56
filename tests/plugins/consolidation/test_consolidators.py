"""The consolidators and anchors: each equation by hand, and one sleep on a small memory model that moves the
memory-OFF model toward the memory-ON one while changing only the slow weights it owns."""

import pytest
import torch
from torch import nn

from ember.errors import EmberConfigError, EmberDataError
from ember.model import EmberModel
from ember.plugins.backbone.nml import NMLBackbone
from ember.plugins.consolidation.alignment import ReadoutAlignment, ridge_update
from ember.plugins.consolidation.anchors import EWC, L2SP, diagonal_fisher
from ember.plugins.consolidation.replay import ReplayDistillation
from ember.plugins.memory.episodic import EpisodicStore
from ember.plugins.neuromod.learned import LearnedNeuromodulator
from ember.sleep import Episode, focus_mask, kl_to_teacher, owned_parameters, student_logits, token_kl


def _model(seed: int = 0) -> EmberModel:
    torch.manual_seed(seed)
    backbone = NMLBackbone(d_model=16, blocks=2, layers_per_block=1, heads=2, window=4,
                           em=lambda d: EpisodicStore(d, neuromodulator=LearnedNeuromodulator, items=16, top_k=4,
                                                      period=4, writes=4, merge_threshold=1.0))
    model = EmberModel(backbone)
    with torch.no_grad():  # an untrained memory reads nothing (its output projection starts at zero): open it
        for name, p in model.named_parameters():
            if name.endswith("memory.out.weight"):
                p.normal_(0, 0.5)
    return model


def _episodes(n: int = 3, length: int = 24, seed: int = 1) -> list[Episode]:
    g = torch.Generator().manual_seed(seed)
    return [Episode(torch.randint(97, 123, (length,), generator=g)) for _ in range(n)]


def test_l2sp_penalty_by_hand():
    p = {"w": nn.Parameter(torch.tensor([1.0, 2.0]))}
    anchor = L2SP(weight=3.0)
    anchor.prepare(None, p, [])
    with torch.no_grad():
        p["w"].copy_(torch.tensor([2.0, 0.0]))
    assert anchor.penalty(p).item() == pytest.approx(0.5 * 3.0 * (1.0 + 4.0))


def test_diagonal_fisher_averages_squared_gradients_sample_by_sample():
    w = nn.Parameter(torch.tensor([0.5, -1.0]))
    samples = [torch.tensor([1.0, 2.0]), torch.tensor([3.0, -1.0])]
    fisher = diagonal_fisher(lambda x: (w * x).sum(), {"w": w}, samples)  # gradient of w.x is x
    torch.testing.assert_close(fisher["w"], torch.tensor([(1 + 9) / 2, (4 + 1) / 2]))


def test_ewc_penalty_weighs_each_weight_by_its_normalised_fisher():
    model = _model()
    params = owned_parameters(model, ["backbone.stack.head.weight"])
    anchor = EWC(weight=2.0, sequences=2)
    anchor.prepare(model, params, [e.tokens for e in _episodes(2)])
    fisher = anchor.fisher["backbone.stack.head.weight"]
    assert fisher.mean().item() == pytest.approx(1.0, rel=1e-5)
    with torch.no_grad():
        params["backbone.stack.head.weight"].add_(0.1)
    expected = 0.5 * 2.0 * (fisher * 0.01).sum()
    assert anchor.penalty(params).item() == pytest.approx(expected.item(), rel=1e-4)


def test_ewc_without_general_text_names_the_fix():
    model = _model()
    with pytest.raises(EmberDataError, match="L2SP"):
        EWC().prepare(model, owned_parameters(model, ["backbone.*"]), [])


def test_kl_to_teacher_by_hand():
    teacher, student = torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, torch.log(torch.tensor(3.0))]])
    p, q = torch.tensor([0.5, 0.5]), torch.tensor([0.25, 0.75])
    expected = (p * (p / q).log()).sum()
    assert kl_to_teacher(teacher, student).item() == pytest.approx(expected.item(), rel=1e-6)
    assert kl_to_teacher(teacher, teacher).item() == pytest.approx(0.0, abs=1e-7)
    # at T = 2 both are softened, and the KL is scaled by T^2: q = softmax([0, log 3] / 2) = [1, sqrt 3] / (1 + sqrt 3)
    q2 = torch.tensor([1.0, 3.0**0.5]) / (1 + 3.0**0.5)
    assert kl_to_teacher(teacher, student, temperature=2.0).item() == pytest.approx(
        (4 * (p * (p / q2).log()).sum()).item(), rel=1e-5)


def test_focus_keeps_the_tokens_where_teacher_and_student_disagree_most():
    teacher = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 0.0], [0.0, 3.0]])
    student = torch.zeros(4, 2)
    kl = token_kl(teacher, student)
    assert kl[0] == kl[2] == 0 and kl[1] > kl[3] > 0
    mask = focus_mask(teacher, student, share=0.5)
    assert mask.tolist() == [False, True, False, True]
    assert kl_to_teacher(teacher, student, mask=mask).item() == pytest.approx(((kl[1] + kl[3]) / 2).item())
    assert focus_mask(teacher, student, share=1.0) is None


def test_ridge_update_solves_the_least_squares_problem():
    g = torch.Generator().manual_seed(0)
    A, R, G = (torch.randn(*shape, generator=g, dtype=torch.float64) for shape in ((12, 5), (12, 3), (7, 5)))
    delta = ridge_update(A, R, G, general_weight=2.0, ridge=0.5)
    # the same problem as one stacked least-squares system: [A; sqrt(2) G; sqrt(0.5) I] X = [R; 0; 0], dW = X^T
    stacked = torch.cat([A, 2.0**0.5 * G, 0.5**0.5 * torch.eye(5, dtype=torch.float64)])
    rhs = torch.cat([R, torch.zeros(7 + 5, 3, dtype=torch.float64)])
    torch.testing.assert_close(delta, torch.linalg.lstsq(stacked, rhs).solution.T)


def test_owned_parameters_leave_the_memories_own_weights_out():
    names = set(owned_parameters(_model(), ["backbone.*"]))
    assert names and not any(".memory." in n for n in names)
    with pytest.raises(EmberConfigError, match="matches no slow weight"):
        owned_parameters(_model(), ["sensory.*"])


def _changed(before: dict, model) -> set[str]:
    return {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}


@pytest.mark.parametrize("consolidator", [
    ReplayDistillation(anchor=L2SP(0.01), steps=15, lr=3e-3, batch_size=2, owns=["backbone.stack.layers.*"]),
    ReplayDistillation(anchor=L2SP(0.01), steps=15, lr=3e-3, batch_size=2, owns=["backbone.stack.layers.*"],
                       focus=0.25),
    ReadoutAlignment(keep=0.5, ridge=0.1)], ids=["replay", "replay_focus", "alignment"])
def test_one_sleep_moves_the_student_toward_the_teacher_and_only_owned_weights(consolidator):
    model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    general = [e.tokens for e in _episodes(2, seed=9)]
    out = consolidator.consolidate(model, _episodes(), general, seed=0)
    assert out["kl_after"] < out["kl_before"]
    changed = _changed(before, model)
    assert changed and all(n.startswith("backbone.stack.layers.") and ".memory." not in n for n in changed)
    if isinstance(consolidator, ReadoutAlignment):
        assert all(n.endswith("ffn.down.weight") for n in changed)
    assert all(p.requires_grad for p in model.parameters())  # the switches are restored


def test_replay_sleeps_are_reproducible_and_a_strong_anchor_holds_the_weights():
    runs = []
    for _ in range(2):
        model = _model()
        ReplayDistillation(steps=3, batch_size=2).consolidate(model, _episodes(), [], seed=5)
        runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    free, held = _model(), _model()
    start = torch.cat([p.detach().flatten() for p in free.parameters()])
    ReplayDistillation(steps=5, lr=1e-2).consolidate(free, _episodes(), [], seed=0)
    ReplayDistillation(anchor=L2SP(1e4), steps=5, lr=1e-2).consolidate(held, _episodes(), [], seed=0)
    moved = lambda m: (torch.cat([p.detach().flatten() for p in m.parameters()]) - start).norm()  # noqa: E731
    assert moved(held) < 0.5 * moved(free)


def test_the_student_reads_without_memories_and_the_teacher_with_them():
    model, ep = _model(), _episodes(1)[0]
    with torch.no_grad():
        on = model.backbone(ep.tokens[None, :-1]).logits[0]
        off = student_logits(model, ep.tokens)
    assert not torch.allclose(on, off)


def test_bad_settings_and_inputs_name_the_fix():
    with pytest.raises(EmberConfigError, match="general_ratio"):
        ReplayDistillation(general_ratio=1.5)
    with pytest.raises(EmberConfigError, match="focus"):
        ReplayDistillation(focus=0)
    with pytest.raises(EmberConfigError, match="keep"):
        ReadoutAlignment(keep=0)
    with pytest.raises(EmberDataError, match="at least one lived session"):
        ReplayDistillation().consolidate(_model(), [], [])
    with pytest.raises(EmberDataError, match="fewer than 2 bytes"):
        ReplayDistillation().consolidate(_model(), [Episode(torch.tensor([65]))], [])


def test_keeping_the_memories_on_model_holds_it_to_the_teacher():
    """memory_weight > 0: the sleep also keeps the memories-ON model's predictions (it must not unlearn how the
    memories are read while teaching the memories-OFF model)."""
    outs = []
    for mu in (0.0, 1.0):
        replay = ReplayDistillation(steps=10, lr=1e-2, batch_size=2, memory_weight=mu)
        outs.append(replay.consolidate(_model(), _episodes(), [], seed=0))
    assert outs[0]["kl_on_before"] == pytest.approx(0.0, abs=1e-6)  # before the sleep, the teacher is itself
    assert outs[1]["kl_on_after"] < outs[0]["kl_on_after"]


def test_a_batched_replay_step_is_the_sum_of_its_sequences():
    """Sequences of one length run as one batch (memories on and off): the loss equals their one-by-one sum."""
    model, replay = _model(), ReplayDistillation(memory_weight=1.0, temperature=2.0)
    episodes = _episodes(3) + _episodes(1, length=17, seed=4)
    with torch.no_grad():
        drawn = [(ep, model.backbone(ep.tokens[None, :-1]).logits[0].float() + 0.5 * i, None, i == 1)
                 for i, ep in enumerate(episodes)]
        batched = replay._replay_loss(model, drawn)
        alone = sum(replay._replay_loss(model, [item]) for item in drawn)
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-6)
