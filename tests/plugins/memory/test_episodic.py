"""EpisodicStore: salient candidates, the commit by hand, recurrence equivalence with writes, the session-end
flush, finite gradients through empty slots."""

import pytest
import torch

from ember.base import Modulation
from ember.errors import EmberConfigError
from ember.ops.plasticity import em_read
from ember.plugins.backbone.nml import NMLBackbone
from ember.plugins.memory.episodic import EpisodicStore, SalientCandidates, top_salient
from ember.plugins.memory.procedural import LowRankPM
from ember.plugins.neuromod.learned import LearnedNeuromodulator
from helpers import token_by_token

t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731


def _memory_backbone():
    return NMLBackbone(d_model=16, blocks=2, layers_per_block=1, heads=2, window=8,
                       pm=lambda d: LowRankPM(d, neuromodulator=LearnedNeuromodulator, slots=4, period=8, conv=2),
                       em=lambda d: EpisodicStore(d, neuromodulator=LearnedNeuromodulator, items=6, top_k=2,
                                                  period=8, conv=4))


@pytest.mark.slow
def test_all_at_once_equals_chunked_equals_token_by_token_with_writes():
    model = _memory_backbone().double().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (EpisodicStore, LowRankPM)):
                module.out.weight.normal_(std=0.2)
                module.controller.net[-1].bias[0] = 3.0  # commit often so writes happen
    tokens = torch.randint(0, 256, (2, 63))
    whole, final = model(tokens)
    outs, state, pos = [], None, 0
    for size in (9, 30, 24):
        out, state = model(tokens[:, pos : pos + size], state)
        outs.append(out)
        pos += size
    torch.testing.assert_close(torch.cat(outs, 1), whole)
    torch.testing.assert_close(token_by_token(model, tokens), whole)
    assert len(final.collect("commit_rate")) == 4  # 2 PM (one per layer) + 2 EM (one per block)
    assert max(float(s.max()) for s in final.collect("s")) > 0  # memories were written


@pytest.mark.slow
def test_state_size_is_independent_of_stream_length():
    model = _memory_backbone()
    sizes = [model(torch.randint(0, 256, (1, n)))[1].nbytes() for n in (16, 200)]
    assert sizes[0] == sizes[1]


def test_candidates_are_the_most_salient_tokens_whole_or_in_pieces():
    b, c, d = 1, 2, 3
    empty = SalientCandidates(torch.zeros(b, c, d), torch.zeros(b, c, d), torch.zeros(b, c), torch.zeros(b, c))
    k = torch.arange(5.0)[None, :, None].expand(b, 5, d)  # token t has key (t, t, t)
    a = t(0.1, 0.9, 0.3, 0.9, 0.5).float()[None]  # tokens 1 and 3 tie at the top
    whole = top_salient(empty, k, k, a, offset=0)
    assert sorted(whole.pos[0].tolist()) == [1.0, 3.0] and whole.k[0, :, 0].tolist() == [1.0, 3.0]
    first = top_salient(empty, k[:, :2], k[:, :2], a[:, :2], offset=0)
    pieces = top_salient(first, k[:, 2:], k[:, 2:], a[:, 2:], offset=2)
    for name in ("k", "a", "pos"):
        torch.testing.assert_close(getattr(pieces, name), getattr(whole, name))
    ties = top_salient(empty, k, k, torch.full((1, 5), 0.5), offset=0)
    assert ties.pos[0].tolist() == [0.0, 1.0]  # equal salience: the earliest tokens


def test_commit_writes_the_candidates_at_once_with_gate_times_salience():
    torch.manual_seed(0)
    mem = EpisodicStore(2, neuromodulator=LearnedNeuromodulator, items=3, top_k=2, period=4, writes=2,
                       merge_threshold=0.9)
    K, V, s = torch.zeros(1, 3, 2), torch.zeros(1, 3, 2), torch.zeros(1, 3)
    cand = SalientCandidates(torch.tensor([[[0.0, 2.0], [3.0, 0.0]]]), torch.tensor([[[5.0, 5.0], [7.0, 7.0]]]),
                             torch.tensor([[1.0, 0.5]]), torch.tensor([[3.0, 1.0]]))  # second is earlier
    one = torch.ones(1)

    K, V, s = mem.rule.commit(K, V, s, cand, Modulation(one, one, one, one))
    # empty memory: candidate 1 (0, 2) with gate 1 overwrites the weakest item 0, candidate 2 (3, 0) with
    # gate 0.5 the next weakest, item 1: contents replaced outright, strengths g eta
    torch.testing.assert_close(K[0], torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]))
    torch.testing.assert_close(V[0], torch.tensor([[5.0, 5.0], [7.0, 7.0], [0.0, 0.0]]))
    torch.testing.assert_close(s[0], torch.tensor([1.0, 0.5, 0.0]))
    # a candidate like item 1 merges into it: K_1 = normalize(K_1 + 1 (k - K_1)), s_1 = 0.5 + 1
    cand = SalientCandidates(torch.tensor([[[2.0, 0.1], [0.0, -1.0]]]), torch.tensor([[[1.0, 1.0], [2.0, 2.0]]]),
                             torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
    K2, V2, s2 = mem.rule.commit(K, V, s, cand, Modulation(one, one, one, one))
    torch.testing.assert_close(K2[0, 1], torch.nn.functional.normalize(torch.tensor([2.0, 0.1]), dim=0))
    torch.testing.assert_close(V2[0, 1], torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(s2[0], torch.tensor([1.0, 1.0, 0.0]))  # the 0-gate candidate wrote nothing


def test_reads_are_the_top_k_read_of_the_state_the_chunk_starts_from():
    """A read recomputed from the state: within a period the items are fixed, so a chunk reads
    W_o em_read(q, K, V, s, top_k) of the state it starts from, q = W_q x (no convolution here)."""
    torch.manual_seed(0)
    mem = EpisodicStore(8, neuromodulator=LearnedNeuromodulator, items=6, top_k=3, period=4, writes=2,
                        conv=1).double()
    with torch.no_grad():
        mem.out.weight.normal_(std=0.5)
        mem.controller.net[-1].bias[0] = 3.0  # commit
    x = torch.randn(2, 11, 8, dtype=torch.float64)
    _, state = mem(x[:, :8])  # two boundaries, two writes each
    assert ((state.s > 0).sum(-1) > 3).all()  # more live items than top_k: the top-k choice matters
    y, _ = mem(x[:, 8:], state)
    q = mem.qkv(x[:, 8:]).chunk(3, dim=-1)[0]
    torch.testing.assert_close(y, mem.out(em_read(q, state.K, state.V, state.s, top_k=3)))


def test_session_end_flush_commits_the_open_span():
    model = _memory_backbone().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (EpisodicStore, LowRankPM)):
                module.controller.net[-1].bias[0] = 3.0
        _, state = model(torch.randint(0, 256, (2, 5)))  # 5 < period 8: nothing committed yet
        assert all(float(s.abs().sum()) == 0 for s in state.collect("s"))
        flushed = model.end_session(state)
    assert all(float(s.sum()) > 0 for s in flushed.collect("s"))
    assert all(int(t) == 0 for t in flushed.collect("tokens"))
    assert model.end_session(flushed).tensors().keys() == flushed.tensors().keys()


@pytest.mark.parametrize("kwargs, fix", [(dict(top_k=7), "top_k"), (dict(merge_threshold=2.0), "cosine"),
                                         (dict(period=0), "period"), (dict(writes=0), "writes"),
                                         (dict(writes=7), "writes"), (dict(salience_target=1.5), "salience_target")])
def test_bad_settings_name_the_fix(kwargs, fix):
    with pytest.raises(EmberConfigError, match=fix):
        EpisodicStore(16, neuromodulator=LearnedNeuromodulator, items=6, **kwargs)


def test_the_salience_budget_joins_the_loss_and_pulls_salience_to_its_target():
    def make(**kw):
        torch.manual_seed(0)
        return EpisodicStore(16, neuromodulator=LearnedNeuromodulator, items=6, period=8, **kw)

    x = torch.randn(2, 20, 16)
    assert float(make()(x)[1].aux_loss) == float(make(salience_target=0.5, salience_weight=0.0)(x)[1].aux_loss)
    memory = make(salience_target=0.05, salience_weight=1.0)
    with torch.no_grad():
        memory.rule.salience.bias.fill_(2.0)  # mean salience near 0.88
    _, state = memory(x)
    expected = (torch.sigmoid(memory.rule.salience(x)).mean() - 0.05) ** 2
    assert float(state.aux_loss) >= float(expected) > 0.5  # the budget, beside the controller's commit budget
    state.aux_loss.backward()
    assert float(memory.rule.salience.bias.grad) > 0  # descending it lowers the salience


def test_gradients_stay_finite_through_empty_slots():
    """Untouched slots are all-zero rows: normalising them must not back-propagate NaN."""
    torch.manual_seed(0)
    model = _memory_backbone()
    logits, _ = model(torch.randint(0, 256, (2, 40)))
    logits.float().logsumexp(-1).mean().backward()
    bad = [name for name, p in model.named_parameters() if p.grad is not None and not p.grad.isfinite().all()]
    assert not bad


def _qkv(memory, tokens, vocab):
    d = vocab.shape[1]
    return memory.mix_recent(memory.qkv(vocab[tokens][None]), torch.zeros(1, memory.conv - 1, 3 * d))[0].chunk(3, -1)


def test_induction_channels_make_a_query_equal_the_key_after_the_same_context():
    """Over the tied channels q_t = k_{s+1} exactly when tokens t, t-1, t-2 repeat s, s-1, s-2 (conv 4), after
    any change of the weights; the values start as their own token."""
    torch.manual_seed(0)
    memory = EpisodicStore(12, neuromodulator=LearnedNeuromodulator, items=8, period=8, conv=4, induction=0.5)
    vocab = torch.randn(5, 12)
    tokens = torch.tensor([0, 1, 2, 3, 4, 4, 1, 2, 3])  # "1 2 3" at 1..3, again at 6..8; 4 followed it at first
    with torch.no_grad():  # as training might: every weight moved
        for p in memory.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    q, k, _ = _qkv(memory, tokens, vocab)
    torch.testing.assert_close(q[0, 8, :6], k[0, 4, :6])  # the key of the token after the first "1 2 3"
    assert not torch.allclose(q[0, 8, :6], k[0, 3, :6])
    assert not torch.allclose(q[0, 8, 6:], k[0, 4, 6:])  # the free channels: learned, not tied
    fresh = EpisodicStore(12, neuromodulator=LearnedNeuromodulator, items=8, period=8, conv=4, induction=0.5)
    torch.testing.assert_close(_qkv(fresh, tokens, vocab)[2][0, 4], fresh.qkv(vocab[4])[24:])


def test_induction_channels_are_causal_across_chunks():
    torch.manual_seed(0)
    memory = EpisodicStore(12, neuromodulator=LearnedNeuromodulator, items=8, period=4, conv=4, induction=1.0)
    x = torch.randn(2, 11, 12)
    whole, _ = memory(x)
    first, state = memory(x[:, :5])
    second, _ = memory(x[:, 5:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole)


@pytest.mark.parametrize("kwargs, fix", [(dict(conv=1, induction=0.5), "conv: 4"),
                                         (dict(induction=1.5), "share of the channels"),
                                         (dict(read_scale=0.0), "read_scale")])
def test_bad_induction_names_the_fix(kwargs, fix):
    with pytest.raises(EmberConfigError, match=fix):
        EpisodicStore(16, neuromodulator=LearnedNeuromodulator, items=6, **kwargs)


def test_read_scale_is_a_one_element_vector_and_loads_from_a_scalar():
    """FSDP2's fully_shard refuses scalar parameters; checkpoints from before hold a scalar, which still loads."""
    memory = EpisodicStore(8, neuromodulator=LearnedNeuromodulator, items=4, period=4, read_scale=10.0)
    assert memory.rule.log_scale.shape == (1,)
    state = {k: v.clone() for k, v in memory.state_dict().items()}
    state["rule.log_scale"] = torch.tensor(3.0)  # the older scalar
    memory.load_state_dict(state)
    assert memory.rule.log_scale.shape == (1,) and float(memory.rule.log_scale) == 3.0
