"""The Python layer end to end on CPU: the custom ops are routed to the float32 reference (ref_launcher
fixture), so validation, head-dim padding, packing, return conventions, autograd.Function and
torch.compile tracing are tested without a GPU."""

import collections
import math

import pytest
import torch
import torch._dynamo.testing
from torch._subclasses.fake_tensor import FakeTensorMode

from flash_attn import (
    flash_attn_func,
    flash_attn_kvpacked_func,
    flash_attn_qkvpacked_func,
    flash_attn_varlen_func,
    flash_attn_varlen_kvpacked_func,
    flash_attn_varlen_qkvpacked_func,
)
from flash_attn import _checks
from flash_attn._checks import FlashAttnValueError
from reference import attention_ref, attention_varlen_ref

DT = torch.bfloat16


def _rand(*shape, seed=0, dtype=DT):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(dtype)


def _close(a, b):
    torch.testing.assert_close(a.float(), b.float(), atol=1e-2, rtol=1e-2)


def _ref(q, k, v, causal=False, scale=None):
    o, lse = attention_ref(q, k, v, causal, scale)
    return o.to(q.dtype), lse


@pytest.mark.parametrize("d", [8, 40, 59, 64])
@pytest.mark.parametrize("causal", [False, True])
def test_func_pads_head_dim_and_scales_by_caller_d(ref_launcher, d, causal):
    q, k, v = _rand(2, 5, 4, d, seed=1), _rand(2, 7, 2, d, seed=2), _rand(2, 7, 2, d, seed=3)
    out, lse, probs = flash_attn_func(q, k, v, causal=causal, return_attn_probs=True)
    ref_out, ref_lse = _ref(q, k, v, causal)
    assert out.shape == q.shape and out.dtype == q.dtype and probs.shape == (0,)
    assert lse.shape == (2, 4, 5) and lse.dtype == torch.float32
    _close(out, ref_out)
    torch.testing.assert_close(lse, ref_lse, atol=1e-4, rtol=1e-4)
    kind, info = ref_launcher.calls[-1]
    assert kind == "fwd" and info["q_shape"][-1] == (d + 7) // 8 * 8
    assert info["softmax_scale"] == pytest.approx(1 / math.sqrt(d)) and info["causal"] == causal
    assert info["window"] == (-1, -1)


def test_func_returns_plain_tensor_and_explicit_scale(ref_launcher):
    q = _rand(1, 3, 2, 32, seed=4)
    out = flash_attn_func(q, q, q, 0.0, 0.3)  # dropout_p positional, as upstream tests do
    assert isinstance(out, torch.Tensor)
    _close(out, _ref(q, q, q, False, 0.3)[0])
    assert ref_launcher.calls[-1][1]["softmax_scale"] == 0.3


def test_window_equivalent_to_causal(ref_launcher):
    q, k = _rand(1, 6, 2, 16, seed=5), _rand(1, 9, 2, 16, seed=6)
    out = flash_attn_func(q, k, k, window_size=(-1, 0))
    assert ref_launcher.calls[-1][1]["causal"] is True
    _close(out, _ref(q, k, k, True)[0])
    flash_attn_func(q, k, k, causal=True, window_size=(9, 9))  # >= seqlen_k: unbounded, still causal
    assert ref_launcher.calls[-1][1]["causal"] is True
    flash_attn_func(q, k, k, window_size=torch.tensor([20, 30]))  # tensor form; both unbounded
    assert ref_launcher.calls[-1][1]["causal"] is False


def test_qkvpacked(ref_launcher):
    qkv = _rand(2, 6, 3, 4, 59, seed=7)
    out, lse, _ = flash_attn_qkvpacked_func(qkv, causal=True, return_attn_probs=True)
    ref_out, ref_lse = _ref(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], True)
    _close(out, ref_out)
    torch.testing.assert_close(lse, ref_lse, atol=1e-4, rtol=1e-4)


def test_kvpacked_gqa(ref_launcher):
    q, kv = _rand(2, 5, 8, 24, seed=8), _rand(2, 9, 2, 2, 24, seed=9)
    out = flash_attn_kvpacked_func(q, kv, causal=True)
    _close(out, _ref(q, kv[:, :, 0], kv[:, :, 1], True)[0])


def _varlen_inputs(seqlens_q, seqlens_k, h=4, hk=2, d=40, seed=10):
    tq, tk = sum(seqlens_q), sum(seqlens_k)
    q, k, v = _rand(tq, h, d, seed=seed), _rand(tk, hk, d, seed=seed + 1), _rand(tk, hk, d, seed=seed + 2)
    cu_q = torch.tensor([0, *torch.tensor(seqlens_q).cumsum(0).tolist()], dtype=torch.int32)
    cu_k = torch.tensor([0, *torch.tensor(seqlens_k).cumsum(0).tolist()], dtype=torch.int32)
    return q, k, v, cu_q, cu_k


@pytest.mark.parametrize("causal", [False, True])
def test_varlen(ref_launcher, causal):
    seqlens_q, seqlens_k = [3, 0, 7, 1], [5, 4, 0, 6]
    q, k, v, cu_q, cu_k = _varlen_inputs(seqlens_q, seqlens_k)
    out, lse, probs = flash_attn_varlen_func(q, k, v, cu_q, cu_k, torch.tensor(7, dtype=torch.int32), 6,
                                             causal=causal, return_attn_probs=True)
    ref_out, ref_lse = attention_varlen_ref(q, k, v, cu_q, cu_k, causal)
    assert out.shape == q.shape and lse.shape == (4, sum(seqlens_q)) and probs.shape == (0,)
    _close(out, ref_out)
    torch.testing.assert_close(lse, ref_lse, atol=1e-4, rtol=1e-4)
    assert ref_launcher.calls[-1][1]["max_seqlen"] == (7, 6)


def test_varlen_packed(ref_launcher):
    seqlens = [4, 0, 6]
    q, k, v, cu, _ = _varlen_inputs(seqlens, seqlens, h=2, hk=2, d=59)
    qkv = torch.stack([q, k, v], dim=1)
    out = flash_attn_varlen_qkvpacked_func(qkv, cu, 6, causal=True)
    _close(out, attention_varlen_ref(q, k, v, cu, cu, True)[0])
    q, k, v, cu_q, cu_k = _varlen_inputs([2, 5], [7, 1], h=4, hk=1)
    out = flash_attn_varlen_kvpacked_func(q, torch.stack([k, v], dim=1), cu_q, cu_k, 5, 7)
    _close(out, attention_varlen_ref(q, k, v, cu_q, cu_k)[0])


def test_noncontiguous_inputs(ref_launcher):
    base = _rand(2, 4, 6, 32, seed=11)
    q = base.transpose(1, 2)  # HF-style (b, s, h, d) view of (b, h, s, d)
    k = _rand(2, 6, 4, 48, seed=12)[..., :32]  # slice of a wider tensor
    v = _rand(2, 6, 32, 4, seed=13).transpose(-1, -2)  # last dim not contiguous: the wrapper copies
    out = flash_attn_func(q, k, v)
    _close(out, _ref(q, k, v)[0])


def test_no_grad_saves_nothing(ref_launcher):
    q = _rand(1, 4, 2, 16, seed=16).requires_grad_()
    with torch.no_grad():
        out = flash_attn_func(q, q, q)
    assert not out.requires_grad


@pytest.mark.parametrize("dynamic", [False, True])
def test_compile_fullgraph_dense(ref_launcher, dynamic):
    torch._dynamo.reset()
    q, k, v = _rand(2, 5, 4, 59, seed=17), _rand(2, 7, 2, 59, seed=18), _rand(2, 7, 2, 59, seed=19)

    def fn(q, k, v):
        out, lse, _ = flash_attn_func(q, k, v, causal=True, return_attn_probs=True)
        return out * 2, lse

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager", dynamic=dynamic)
    out, lse = compiled(q, k, v)
    ref_out, ref_lse = fn(q, k, v)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(lse, ref_lse)
    q2 = _rand(3, 9, 4, 59, seed=20)  # new shapes: recompiles (static) or reuses (dynamic) without graph breaks
    torch.testing.assert_close(compiled(q2, k[:1].expand(3, -1, -1, -1), v[:1].expand(3, -1, -1, -1))[0],
                               fn(q2, k[:1].expand(3, -1, -1, -1), v[:1].expand(3, -1, -1, -1))[0])


def test_compile_fullgraph_varlen_and_packed(ref_launcher):
    torch._dynamo.reset()
    q, k, v, cu_q, cu_k = _varlen_inputs([3, 5], [4, 2])

    def fn(q, k, v, cu_q, cu_k):
        a = flash_attn_varlen_func(q, k, v, cu_q, cu_k, 5, 4, causal=True)
        b = flash_attn_varlen_kvpacked_func(q, torch.stack([k, v], 1), cu_q, cu_k, 5, 4)
        return a, b

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    for x, y in zip(compiled(q, k, v, cu_q, cu_k), fn(q, k, v, cu_q, cu_k)):
        torch.testing.assert_close(x, y)


def test_compile_fullgraph_with_grad_inputs(ref_launcher_bwd):
    # Training-style call (inputs require grad): forward and backward trace without graph breaks and give the
    # eager gradients.
    torch._dynamo.reset()
    # (distinct tensors: dynamo cannot trace autograd.Function.apply with one tensor passed as q, k and v)
    q, k, v = (_rand(1, 4, 2, 16, seed=s).requires_grad_() for s in (21, 30, 31))
    compiled = torch.compile(lambda q, k, v: flash_attn_func(q, k, v, causal=True), fullgraph=True,
                             backend="aot_eager")
    out = compiled(q, k, v)
    eager = flash_attn_func(q, k, v, causal=True)
    torch.testing.assert_close(out, eager)
    grads = torch.autograd.grad(out.sum(), (q, k, v))
    for g, ref in zip(grads, torch.autograd.grad(eager.sum(), (q, k, v))):
        torch.testing.assert_close(g, ref)


def _grads(fn, *xs):
    xs = [x.detach().float().requires_grad_() for x in xs]
    out = fn(*xs)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(99))
    return torch.autograd.grad(out, xs, g), g


def _check_grads(ours_fn, ref_fn, *xs):
    ref, g = _grads(ref_fn, *xs)
    xs = [x.detach().clone().requires_grad_() for x in xs]
    out = ours_fn(*xs)
    ours = torch.autograd.grad(out, xs, g.to(out.dtype))
    for a, b in zip(ours, ref):
        assert a.shape == b.shape and a.dtype == DT
        torch.testing.assert_close(a.float(), b, atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize("d", [40, 64])
def test_backward_plumbing_dense(ref_launcher_bwd, d):
    q, k, v = _rand(2, 5, 4, d, seed=23), _rand(2, 7, 2, d, seed=24), _rand(2, 7, 2, d, seed=25)
    _check_grads(lambda q, k, v: flash_attn_func(q, k, v, causal=True),
                 lambda q, k, v: attention_ref(q, k, v, True)[0], q, k, v)
    kv = torch.stack([k, v], dim=2)
    _check_grads(lambda q, kv: flash_attn_kvpacked_func(q, kv),
                 lambda q, kv: attention_ref(q, kv[:, :, 0], kv[:, :, 1])[0], q, kv)
    qkv = _rand(2, 6, 3, 2, d, seed=26)
    _check_grads(lambda qkv: flash_attn_qkvpacked_func(qkv, causal=True),
                 lambda qkv: attention_ref(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], True)[0], qkv)


def test_backward_plumbing_varlen(ref_launcher_bwd):
    q, k, v, cu_q, cu_k = _varlen_inputs([3, 0, 4], [2, 5, 3], d=59)
    ref = lambda q, k, v: attention_varlen_ref(q, k, v, cu_q, cu_k, True)[0]  # noqa: E731
    _check_grads(lambda q, k, v: flash_attn_varlen_func(q, k, v, cu_q, cu_k, 4, 5, causal=True), ref, q, k, v)
    _check_grads(lambda q, kv: flash_attn_varlen_kvpacked_func(q, kv, cu_q, cu_k, 4, 5, causal=True),
                 lambda q, kv: ref(q, kv[:, 0], kv[:, 1]), q, torch.stack([k, v], 1))
    q, k, v, cu, _ = _varlen_inputs([3, 4], [3, 4], h=2, hk=2, d=24)
    _check_grads(lambda qkv: flash_attn_varlen_qkvpacked_func(qkv, cu, 4),
                 lambda qkv: attention_varlen_ref(qkv[:, 0], qkv[:, 1], qkv[:, 2], cu, cu)[0],
                 torch.stack([q, k, v], 1))


def test_backward_plumbing_under_compile(ref_launcher_bwd):
    torch._dynamo.reset()
    q, k, v = _rand(1, 6, 2, 40, seed=27), _rand(1, 6, 2, 40, seed=28), _rand(1, 6, 2, 40, seed=29)
    compiled = torch.compile(lambda q, k, v: flash_attn_func(q, k, v, causal=True), fullgraph=True,
                             backend="aot_eager")
    _check_grads(compiled, lambda q, k, v: attention_ref(q, k, v, True)[0], q, k, v)


def test_error_before_launch_under_compile(ref_launcher):
    torch._dynamo.reset()
    q, k, v = (_rand(1, 4, 2, 16, seed=s) for s in (22, 32, 33))
    fn = lambda q, k, v: flash_attn_func(q, k, v, dropout_p=0.1, softcap=5.0)  # noqa: E731
    with pytest.raises(FlashAttnValueError, match="dropout_p"):
        torch.compile(fn, backend="aot_eager")(q, k, v)  # graph break, then the eager error
    # fullgraph: dynamo reports the same error at trace time (wrapped in its Unsupported exception)
    with pytest.raises(Exception, match="dropout_p > 0 cannot be combined"):
        torch.compile(fn, fullgraph=True, backend="aot_eager")(q, k, v)
    assert not ref_launcher.calls


def test_compile_fullgraph_varlen_dynamic(ref_launcher):
    # dynamic shapes: max_seqlen arrives as SymInt, cu_seqlens lengths vary
    torch._dynamo.reset()
    fn = lambda q, k, v, cq, ck, mq, mk: flash_attn_varlen_func(q, k, v, cq, ck, mq, mk, causal=True)  # noqa: E731
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager", dynamic=True)
    for sq, sk in [([3, 5], [4, 2]), ([6, 1, 2], [7, 3, 3])]:
        q, k, v, cq, ck = _varlen_inputs(sq, sk)
        torch.testing.assert_close(compiled(q, k, v, cq, ck, max(sq), max(sk)), fn(q, k, v, cq, ck, max(sq), max(sk)))


# ----------------------------------------------------------------------------------------------------------
# One validation per call: the public functions validate before their custom op, whose body does not validate again
# (ref_extension: the real op bodies run, on the reference stand-in for the extension).
# ----------------------------------------------------------------------------------------------------------

COUNTED = ("check_dense_tensors", "check_varlen_tensors", "check_fwd_options", "validate_kvcache_args",
           "validate_rotary_args")


@pytest.fixture
def check_counts(monkeypatch):
    counts = collections.Counter()
    for name in COUNTED:
        def counted(*args, _fn=getattr(_checks, name), _name=name, **kwargs):
            counts[_name] += 1
            return _fn(*args, **kwargs)

        monkeypatch.setattr(_checks, name, counted)
    return counts


def _once(counts, **expected):
    assert dict(counts) == expected
    counts.clear()


def test_validation_once_dense_and_backward(ref_extension, check_counts):
    q, k, v = (_rand(2, 5, 4, 40, seed=s).requires_grad_() for s in (40, 41, 42))
    out = flash_attn_func(q, k, v, causal=True)
    _once(check_counts, check_dense_tensors=1, check_fwd_options=1)
    out.sum().backward()  # the backward op gets tensors the autograd Function made: no checks
    _once(check_counts)
    assert [c[0] for c in ref_extension.calls] == ["fwd", "bwd"]
    flash_attn_qkvpacked_func(_rand(2, 5, 3, 4, 40, seed=43))
    _once(check_counts, check_dense_tensors=1, check_fwd_options=1)
    flash_attn_kvpacked_func(q.detach(), _rand(2, 7, 2, 2, 40, seed=44))
    _once(check_counts, check_dense_tensors=1, check_fwd_options=1)


def test_validation_once_varlen(ref_extension, check_counts):
    q, k, v, cu_q, cu_k = _varlen_inputs([3, 5], [4, 2])
    flash_attn_varlen_func(q.requires_grad_(), k, v, cu_q, cu_k, 5, 4, causal=True).sum().backward()
    _once(check_counts, check_varlen_tensors=1, check_fwd_options=1)
    flash_attn_varlen_kvpacked_func(q, torch.stack([k, v], 1), cu_q, cu_k, 5, 4)
    _once(check_counts, check_varlen_tensors=1, check_fwd_options=1)
    flash_attn_varlen_qkvpacked_func(torch.stack([q, q, q], 1), cu_q, 5)
    _once(check_counts, check_varlen_tensors=1, check_fwd_options=1)


def test_validation_once_kvcache_rotary_and_private_ops(ref_extension, check_counts):
    from flash_attn import flash_attn_with_kvcache
    from flash_attn.flash_attn_interface import _flash_attn_forward, _flash_attn_varlen_forward
    from flash_attn.layers.rotary import apply_rotary_emb

    q, k_cache = _rand(2, 1, 4, 32, seed=45), _rand(2, 16, 2, 32, seed=46)
    flash_attn_with_kvcache(q, k_cache, k_cache.clone(), _rand(2, 1, 2, 32, seed=47), _rand(2, 1, 2, 32, seed=48),
                            cache_seqlens=3, causal=True)
    _once(check_counts, validate_kvcache_args=1, check_fwd_options=1)
    cos = sin = _rand(8, 8, seed=49)
    x = _rand(2, 8, 2, 32, seed=50).requires_grad_()
    apply_rotary_emb(x, cos, sin)
    _once(check_counts, validate_rotary_args=1)
    q, k, v = (_rand(2, 5, 4, 32, seed=s) for s in (51, 52, 53))
    _flash_attn_forward(q, k, v, 0.0, 0.2, True, -1, -1, 0.0, None, False)  # a direct call: its body validates
    _once(check_counts, check_dense_tensors=1, check_fwd_options=1)
    qv, kv, vv, cu_q, cu_k = _varlen_inputs([3, 5], [4, 2])
    _flash_attn_varlen_forward(qv, kv, vv, cu_q, cu_k, 5, 4, 0.0, 0.2, True)
    _once(check_counts, check_varlen_tensors=1, check_fwd_options=1)


def test_validation_once_on_the_fake_path(ref_extension, check_counts):
    """Meta tensors and FakeTensorMode (what torch.compile traces with): the op's fake runs, validation once."""
    q, k, v = (torch.empty(s, dtype=DT, device="meta") for s in ((2, 5, 4, 59), (2, 7, 2, 59), (2, 7, 2, 59)))
    out, lse, _ = flash_attn_func(q, k, v, causal=True, return_attn_probs=True)
    assert out.shape == q.shape and out.device.type == "meta" and lse.shape == (2, 4, 5)
    _once(check_counts, check_dense_tensors=1, check_fwd_options=1)
    with FakeTensorMode():
        q, k, v = (torch.empty(s, dtype=DT) for s in ((2, 5, 4, 64), (2, 7, 2, 64), (2, 7, 2, 64)))
        assert flash_attn_func(q, k, v).shape == q.shape
    _once(check_counts, check_dense_tensors=1, check_fwd_options=1)
    assert not ref_extension.calls


def test_validation_once_under_compile(ref_extension, check_counts):
    """torch.compile traces the validation (dynamo replays its effect on the counter once per call); the compiled
    graph's op body runs for real and does not validate."""
    torch._dynamo.reset()
    counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager")
    q, k, v = (_rand(1, 4, 2, 16, seed=s) for s in (54, 55, 56))
    compiled = torch.compile(lambda q, k, v: flash_attn_func(q, k, v, causal=True), fullgraph=True, backend=counter)
    for _ in range(2):
        compiled(q, k, v)
        _once(check_counts, check_dense_tensors=1, check_fwd_options=1)
    assert counter.frame_count == 1 and [c[0] for c in ref_extension.calls] == ["fwd", "fwd"]
