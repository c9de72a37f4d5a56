"""Every attention tier held to the reference: outputs, KV-cache state after chunks, gradients.

Letters: b batch, h heads, n new tokens, c cached tokens, e head width, d width.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

import ember.ops.attention.window as window_module
from ember.errors import EmberConfigError
from ember.ops.attention import WindowAttention, attend_blocked, attend_dense
from ember.ops.attention.flex import attend_flex
from ember.ops.attention.xformers import attend_xformers
from ember.ops.rope import apply_rope, rope_cos_sin

try:
    import xformers  # noqa: F401

    HAS_XFORMERS = True
except ImportError:
    HAS_XFORMERS = False


@dataclass
class Tier:
    attend: Callable  # attend(q, k, v, c, window, valid) -> y, as reference.attend_dense
    device: str = "cpu"
    dtype: torch.dtype = torch.float64
    backward: bool = True  # FlexAttention has no backward on the CPU
    erased_keys: bool = True  # xformers' bottom-right mask cannot hide erased cache keys
    tol: float | None = None  # None: assert_close's defaults for the dtype


TIERS = {
    "blocked": Tier(attend_blocked),
    "flex": Tier(attend_flex, backward=False),
    "xformers": Tier(attend_xformers, device="cuda", dtype=torch.float32, erased_keys=False, tol=2e-3),
}
XFORMERS_MARKS = [pytest.mark.gpu, pytest.mark.skipif(not HAS_XFORMERS, reason="xformers extra not installed")]
TIER_PARAMS = ["blocked", "flex", pytest.param("xformers", marks=XFORMERS_MARKS)]
BACKEND_PARAMS = ["sdpa", "flex", pytest.param("xformers", marks=XFORMERS_MARKS)]
BACKEND_TIERS = {"sdpa": Tier(attend_dense), "flex": TIERS["flex"], "xformers": TIERS["xformers"]}


def close(got: torch.Tensor, want: torch.Tensor, tol: float | None):
    """Compare a tier's result (any device and dtype) with the float64 CPU reference."""
    if tol is None:
        torch.testing.assert_close(got, want)
    else:
        torch.testing.assert_close(got.cpu().double(), want, rtol=tol, atol=tol)


def attention_by_the_equation(attn: WindowAttention, x: torch.Tensor) -> torch.Tensor:
    """Independent reading of the rule: query i sees keys j with i - W < j <= i, rotary on both."""
    b, n, d = x.shape
    h, e = attn.heads, d // attn.heads
    q, k, v = attn.qkv(x).view(b, n, 3, h, e).permute(2, 0, 3, 1, 4)  # 3 x (b, h, n, e)
    cos, sin = rope_cos_sin(torch.arange(n), e, attn.rope_base, x.dtype)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    out = torch.zeros_like(q)
    for i in range(n):
        lo = 0 if attn.window is None else max(0, i - attn.window + 1)
        scores = (q[:, :, i : i + 1] @ k[:, :, lo : i + 1].transpose(-1, -2)) / math.sqrt(e)
        out[:, :, i] = (scores.softmax(-1) @ v[:, :, lo : i + 1])[:, :, 0]
    return attn.out(out.transpose(1, 2).reshape(b, n, d))  # (b, n, d)


@pytest.mark.parametrize("tier", TIER_PARAMS)
@pytest.mark.parametrize("n,c,window", [(8, 0, 4), (13, 3, 4), (9, 2, 3), (40, 6, 7), (33, 0, 16), (16, 15, 16)])
def test_tier_matches_the_reference_outputs_and_gradients(tier, n, c, window):
    """The function contract: each tier against attend_dense, float64 on the CPU, ragged block ends."""
    spec = TIERS[tier]
    torch.manual_seed(n + c)
    b, h, e = 2, 3, 4
    q = torch.randn(b, h, n, e, dtype=torch.float64, requires_grad=True)
    k = torch.randn(b, h, c + n, e, dtype=torch.float64, requires_grad=True)
    v = torch.randn(b, h, c + n, e, dtype=torch.float64, requires_grad=True)
    valid = torch.rand(b, c) > 0.3 if spec.erased_keys else None  # some cached keys erased by a reset
    dense = attend_dense(q, k, v, c, window, valid if c else None)
    inputs = [t.detach().to(spec.device, spec.dtype).requires_grad_(spec.backward) for t in (q, k, v)]
    got = spec.attend(*inputs, c, window, None if valid is None else valid.to(spec.device))
    close(got, dense, spec.tol)
    if not spec.backward:
        return
    weights = torch.randn_like(dense)
    grads = torch.autograd.grad((dense * weights).sum(), (q, k, v))
    got_grads = torch.autograd.grad((got * weights.to(got)).sum(), inputs)
    for got_grad, want in zip(got_grads, grads):
        close(got_grad, want, spec.tol)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("window", [4, 7, None])
@pytest.mark.parametrize("splits", [[63], [20, 23, 20], pytest.param([1] * 17, marks=pytest.mark.slow)])
def test_chunked_with_cache_equals_the_reference_all_at_once(backend, window, splits):
    """The module contract: a backend fed chunk by chunk with its cache equals sdpa all at once."""
    spec = BACKEND_TIERS[backend]
    ref = WindowAttention(16, 4, window=window).double()
    attn = WindowAttention(16, 4, window=window, backend=backend).to(spec.device, spec.dtype)
    attn.load_state_dict(ref.state_dict())
    n = sum(splits)
    x = torch.randn(3, n, 16, dtype=torch.float64, requires_grad=True)
    y_all, cache_all = ref(x)
    x_tier = x.detach().to(spec.device, spec.dtype).requires_grad_(spec.backward)
    outs, cache, start = [], None, 0
    with torch.set_grad_enabled(spec.backward):  # no_grad lets flex run on the CPU
        for size in splits:
            y, cache = attn(x_tier[:, start : start + size], cache)
            outs.append(y)
            start += size
    y = torch.cat(outs, 1)
    close(y, y_all, spec.tol)
    for name, want in cache_all.tensors().items():
        got = cache.tensors()[name]
        if want.is_floating_point():
            close(got, want, spec.tol)
        else:
            torch.testing.assert_close(got.cpu(), want)
    if window is not None:
        assert cache.k.shape[2] == window - 1  # constant-size state
    if spec.backward:
        weights = torch.randn_like(y_all)
        leaves = [x, *ref.parameters()]
        grads = torch.autograd.grad((y_all * weights).sum(), leaves)
        got_grads = torch.autograd.grad((y * weights.to(y)).sum(), [x_tier, *attn.parameters()])
        for got_grad, want in zip(got_grads, grads):
            close(got_grad, want, spec.tol)


@pytest.mark.parametrize("window", [1, 5, 16, None])  # None: the is_causal fast path
def test_sdpa_matches_the_equation(window):
    attn = WindowAttention(16, 2, window=window).double()
    x = torch.randn(2, 13, 16, dtype=torch.float64)
    y, _ = attn(x)
    torch.testing.assert_close(y, attention_by_the_equation(attn, x))


def test_long_chunk_takes_the_blocked_path_and_matches_the_equation(monkeypatch):
    monkeypatch.setattr(window_module, "BLOCKED_MIN_TOKENS", 16)
    calls = []
    monkeypatch.setattr(window_module, "attend_blocked", lambda *a: calls.append(1) or attend_blocked(*a))
    attn = WindowAttention(16, 2, window=4).double()
    x = torch.randn(2, 19, 16, dtype=torch.float64)
    torch.testing.assert_close(attn(x)[0], attention_by_the_equation(attn, x))
    assert calls  # the fast path served the module


@pytest.mark.slow
@torch.no_grad()
def test_flex_matches_sdpa_with_and_without_cache():
    torch.manual_seed(1)
    sdpa = WindowAttention(32, 4, window=8, backend="sdpa")
    flex = WindowAttention(32, 4, window=8, backend="flex")
    flex.load_state_dict(sdpa.state_dict())
    x = torch.randn(2, 40, 32)
    y_s, c_s = sdpa(x[:, :24])
    y_f, c_f = flex(x[:, :24])
    torch.testing.assert_close(y_f, y_s, rtol=1e-4, atol=1e-5)
    c_s = c_s.reset(torch.tensor([True, False]))  # partially valid cache exercises the per-batch mask
    c_f = c_f.reset(torch.tensor([True, False]))
    torch.testing.assert_close(flex(x[:, 24:], c_f)[0], sdpa(x[:, 24:], c_s)[0], rtol=1e-4, atol=1e-5)
    assert len(flex._block_masks) == 1  # the full-cache-free mask was cached for reuse


def test_reset_makes_a_stream_start_fresh():
    attn = WindowAttention(16, 2, window=6).double()
    x = torch.randn(2, 10, 16, dtype=torch.float64)
    _, cache = attn(x[:, :5])
    cache = cache.reset(torch.tensor([True, False]))
    y, _ = attn(x[:, 5:], cache)
    fresh, _ = attn(x[:1, 5:])
    torch.testing.assert_close(y[:1], fresh)
    carried, _ = attn(x[1:, 5:], attn(x[1:, :5])[1])
    torch.testing.assert_close(y[1:], carried)


@pytest.mark.parametrize(
    "kwargs, fix",
    [
        (dict(d_model=100, heads=8), "not divisible by heads=8"),
        (dict(d_model=12, heads=4), "must be even"),
        (dict(d_model=16, heads=2, window=0), "window=0"),
        (dict(d_model=16, heads=2, backend="cuda-magic"), "use one of"),
    ],
)
def test_bad_shapes_name_the_fix(kwargs, fix):
    with pytest.raises(EmberConfigError, match=fix):
        WindowAttention(**kwargs)


@pytest.mark.skipif(HAS_XFORMERS, reason="xformers is installed")
def test_xformers_backend_without_the_extra_names_the_install():
    with pytest.raises(EmberConfigError, match=r"ember\[xformers\]"):
        WindowAttention(16, 2, backend="xformers")


@pytest.mark.gpu
def test_xformers_and_flex_match_sdpa_on_cuda():
    backends = ["flex", "xformers"] if HAS_XFORMERS else ["flex"]
    ref = WindowAttention(64, 4, window=32).cuda()
    x = torch.randn(2, 256, 64, device="cuda")
    y_ref, _ = ref(x)
    for name in backends:
        other = WindowAttention(64, 4, window=32, backend=name).cuda()
        other.load_state_dict(ref.state_dict())
        torch.testing.assert_close(other(x)[0], y_ref, rtol=2e-3, atol=2e-3)
