"""Recurrent backbones: all at once == chunked with carried state == token by token (float64)."""

import pytest
import torch

from ember.errors import EmberConfigError
from ember.plugins.backbone.nml import NMLBackbone
from ember.plugins.backbone.transformer import TransformerBackbone
from ember.state import LayerStates

BACKBONES = {
    "nml": lambda: NMLBackbone(d_model=32, blocks=2, layers_per_block=1, heads=4, window=8),
    "nml-naive-scan": lambda: NMLBackbone(d_model=32, layers_per_block=2, heads=4, window=8, scan="naive"),
    "transformer": lambda: TransformerBackbone(d_model=32, layers=2, heads=4),
    "sliding-transformer": lambda: TransformerBackbone(d_model=32, layers=2, heads=4, window=8),
}


def run_in_chunks(model, tokens, splits, detach=False):
    logits, state, start = [], None, 0
    for size in splits:
        out, state = model(tokens[:, start : start + size], state)
        state = state.detach() if detach else state
        logits.append(out)
        start += size
    return torch.cat(logits, 1), state


@pytest.mark.slow
@pytest.mark.parametrize("name", BACKBONES)
def test_all_at_once_equals_chunked_equals_token_by_token(name):
    model = BACKBONES[name]().double().eval()
    tokens = torch.randint(0, 256, (2, 63))
    all_at_once, _ = model(tokens)
    chunked, _ = run_in_chunks(model, tokens, [20, 23, 20])
    stepped, _ = run_in_chunks(model, tokens, [1] * 63)
    torch.testing.assert_close(chunked, all_at_once)
    torch.testing.assert_close(stepped, all_at_once)


@pytest.mark.parametrize("name", ["nml", "transformer"])
def test_chunked_gradients_equal_all_at_once_without_detach(name):
    model = BACKBONES[name]().double()
    tokens = torch.randint(0, 256, (2, 63))
    loss_all = model(tokens)[0].square().mean()
    grads_all = torch.autograd.grad(loss_all, list(model.parameters()))
    loss_chunks = run_in_chunks(model, tokens, [31, 32])[0].square().mean()
    grads_chunks = torch.autograd.grad(loss_chunks, list(model.parameters()))
    for g, g_ref in zip(grads_chunks, grads_all):
        torch.testing.assert_close(g, g_ref)


def test_detached_state_stops_gradients_at_the_chunk_boundary():
    """The second chunk's gradients through a detached state are those through the same state computed with no
    graph at all, and differ from those through the attached state (which reach into the first chunk)."""
    model = BACKBONES["nml"]().double()
    tokens = torch.randint(0, 256, (1, 40))
    params = list(model.parameters())

    def second_chunk_grads(state):
        out, _ = model(tokens[:, 20:], state)
        return torch.autograd.grad(out.square().mean(), params, materialize_grads=True)

    _, state = model(tokens[:, :20])
    with torch.no_grad():
        _, no_graph = model(tokens[:, :20])
    detached = second_chunk_grads(state.detach())
    for g, g_ref in zip(detached, second_chunk_grads(no_graph)):
        torch.testing.assert_close(g, g_ref)
    attached = second_chunk_grads(state)
    assert any(not torch.allclose(a, g) for a, g in zip(attached, detached))


def test_nml_state_size_is_independent_of_stream_length():
    model = BACKBONES["nml"]()
    sizes = []
    for n in (10, 100, 300):
        _, state = run_in_chunks(model, torch.randint(0, 256, (1, n)), [n // 2, n - n // 2])
        sizes.append(state.nbytes())
    assert len(set(sizes)) == 1
    _, grown = run_in_chunks(BACKBONES["transformer"](), torch.randint(0, 256, (1, 300)), [150, 150])
    assert grown.nbytes() > sizes[0]  # the full-attention baseline's cache grows with the stream


def test_prefix_tokens_are_consumed_and_only_byte_logits_returned():
    model = BACKBONES["nml"]()
    tokens = torch.randint(0, 256, (2, 12))
    prefix = torch.randn(2, 5, 32)
    logits, _ = model(tokens, prefix=prefix)
    assert logits.shape == (2, 12, 264)
    assert not torch.allclose(logits, model(tokens)[0])  # the prefix is attended to


def test_state_reset_by_mask_restarts_only_the_masked_stream():
    model = BACKBONES["nml"]().double().eval()
    tokens = torch.randint(0, 256, (2, 30))
    _, state = model(tokens[:, :15])
    state = state.reset(torch.tensor([True, False]))
    out, _ = model(tokens[:, 15:], state)
    torch.testing.assert_close(out[:1], model(tokens[:1, 15:])[0])
    torch.testing.assert_close(out[1:], model(tokens[1:])[0][:, 15:])
    assert isinstance(state, LayerStates)


@pytest.mark.slow
def test_compile_keeps_the_plasticity_loop_eager_and_traces_the_rest():
    """torch.compile (ember bench on CUDA) must not unroll the per-segment loop (compile time would grow
    with the segments): the graph breaks are only at the eager loop, as many for 3 segments as for 8."""
    import torch._dynamo as dynamo

    from ember.plugins.memory.episodic import EpisodicStore
    from ember.plugins.memory.procedural import LowRankPM
    from ember.plugins.neuromod.learned import LearnedNeuromodulator

    model = NMLBackbone(d_model=16, blocks=1, layers_per_block=1, heads=2, window=8,
                        pm=lambda d: LowRankPM(d, neuromodulator=LearnedNeuromodulator, slots=2, period=8),
                        em=lambda d: EpisodicStore(d, neuromodulator=LearnedNeuromodulator, items=4, top_k=2,
                                                   period=8, writes=2))
    breaks = {}
    for n in (20, 60):  # 3 and 8 segments, ragged ends
        dynamo.reset()
        explained = dynamo.explain(lambda t: model(t)[0])(torch.randint(0, 256, (2, n)))
        assert all("_plasticity_loop" in str(r.reason) for r in explained.break_reasons), explained.break_reasons
        breaks[n] = explained.graph_break_count
    assert breaks[20] == breaks[60] > 0


@pytest.mark.parametrize("make", [lambda **kw: NMLBackbone(window=8, **kw), lambda **kw: TransformerBackbone(**kw)])
@pytest.mark.parametrize("sizes, named", [(dict(d_model=-5), "d_model=-5"), (dict(d_model=16, heads=0), "heads=0")])
def test_sizes_below_one_name_the_setting(make, sizes, named):
    with pytest.raises(EmberConfigError, match=f"{named}.* must be >= 1|{named}, .* must be >= 1"):
        make(**sizes)
