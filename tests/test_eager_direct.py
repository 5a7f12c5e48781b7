"""The public functions call the ops' bodies directly in plain eager calls (FLASH_ATTN_EAGER_DIRECT=0: never).

CPU: the switch and every tracing or intercepting context keep the op (flash_attn._ops.eager_direct), and a CPU or
meta tensor never takes the direct path. GPU: with the switch on and off, dense, varlen and GQA calls, forward and
backward, give the same bits as through the ops (the same launchers run the same kernels; the backward in its
deterministic mode, whose dQ sums do not depend on the order the key blocks finish in), and so do KV-cache calls
appending to dense and paged caches. Calls whose inputs need no gradient also skip the autograd Function (CPU:
through the reference extension).
"""
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from flash_attn import _ops, flash_attn_func, flash_attn_varlen_func, flash_attn_with_kvcache
from helpers import DRYRUN, attention_inputs, built_dtype, built_head_dim, cu_seqlens, randn, requires_gpu

ENV = _ops.EAGER_DIRECT_ENV


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_direct_needs_the_switch_and_cuda_tensors(monkeypatch, device):
    t = torch.empty(2, 3, device=device)
    monkeypatch.setenv(ENV, "0")
    assert not _ops.eager_direct()
    assert not _ops.eager_direct(t)
    assert _ops.op_or_body(_ops.fwd, t) is _ops.fwd
    monkeypatch.delenv(ENV)
    assert _ops.eager_direct()  # on by default: nothing traces, no tensor rules it out
    assert not _ops.eager_direct(t)  # not a CUDA tensor
    assert not _ops.eager_direct(None, t)
    assert _ops.op_or_body(_ops.fwd, t) is _ops.fwd


def test_direct_never_under_modes_or_transforms(monkeypatch):
    monkeypatch.setenv(ENV, "1")
    with FakeTensorMode():
        assert not _ops.eager_direct()
    with FlopCounterMode(display=False):
        assert not _ops.eager_direct()
    with torch.device("meta"):
        assert not _ops.eager_direct()
    seen = []
    torch.func.vmap(lambda x: seen.append(_ops.eager_direct()) or x)(torch.ones(2))
    assert seen == [False]
    with torch.autograd.profiler.profile():
        assert not _ops.eager_direct()


def test_every_op_has_its_body():
    for op in (_ops.fwd, _ops.varlen_fwd, _ops.bwd, _ops.varlen_bwd, _ops.fwd_kvcache):
        assert callable(op._eager_body)


@pytest.mark.parametrize("kind", ["dense", "varlen"])
def test_direct_plumbing_cpu(ref_extension, monkeypatch, kind):
    """The bodies' own work on CPU (the reference stands in for the extension): a direct call passes the launchers
    what the op would, defaults included (varlen's leftpad_k ... num_splits, its backward's zero_tensors)."""
    lengths = [5, 9]
    q, k, v, dout = (torch.randn(14, 2, 8).to(torch.bfloat16) for _ in range(4))
    cu = torch.tensor([0, 5, 14], dtype=torch.int32)
    if kind == "dense":
        q, k, v, dout = (t.reshape(2, 7, 2, 8) for t in (q, k, v, dout))

        def fn(q, k, v):
            return flash_attn_func(q, k, v, causal=True)
    else:

        def fn(q, k, v):
            return flash_attn_varlen_func(q, k, v, cu, cu, max(lengths), max(lengths), causal=True)

    inputs = [t.clone().requires_grad_() for t in (q, k, v)]
    monkeypatch.setattr(_ops, "eager_direct", lambda *tensors: False)
    out_op, grads_op = _run(monkeypatch, False, fn, inputs, dout)
    calls_op = [c[0] for c in ref_extension.calls]
    ref_extension.calls.clear()
    monkeypatch.setattr(_ops, "eager_direct", lambda *tensors: True)
    out_direct, grads_direct = _run(monkeypatch, True, fn, inputs, dout)
    assert [c[0] for c in ref_extension.calls] == calls_op and len(calls_op) == 2  # forward and backward
    assert torch.equal(out_direct, out_op)
    for g_direct, g_op in zip(grads_direct, grads_op):
        assert torch.equal(g_direct, g_op)


@pytest.mark.parametrize("append", [False, True])
def test_kvcache_direct_plumbing_cpu(ref_extension, monkeypatch, append):
    """flash_attn_with_kvcache's direct call (CPU, the reference standing in for the extension) passes the binding
    what the op would, appends to the caches the same way and bumps their version counters as the op's in-place
    schema does."""
    q = torch.randn(2, 3, 4, 8).to(torch.bfloat16)
    caches = [torch.randn(2, 16, 2, 8).to(torch.bfloat16) for _ in range(2)]
    k, v = (torch.randn(2, 3, 2, 8).to(torch.bfloat16) if append else None for _ in range(2))
    seqlens = torch.tensor([5, 9], dtype=torch.int32)
    results = []
    for direct in (False, True):
        monkeypatch.setattr(_ops, "eager_direct", lambda *tensors, direct=direct: direct)
        k_cache, v_cache = (c.clone() for c in caches)
        versions = (k_cache._version, v_cache._version)
        ref_extension.calls.clear()
        out, lse = flash_attn_with_kvcache(q, k_cache, v_cache, k, v, cache_seqlens=seqlens, causal=True,
                                           return_softmax_lse=True)
        bumps = (k_cache._version - versions[0], v_cache._version - versions[1])
        results.append((out, lse, k_cache, v_cache, bumps, [c[0] for c in ref_extension.calls]))
    (out_op, lse_op, k_op, v_op, bumps_op, calls_op), (out_d, lse_d, k_d, v_d, bumps_d, calls_d) = results
    assert calls_d == calls_op == ["fwd_kvcache"]
    for direct_t, op_t in ((out_d, out_op), (lse_d, lse_op), (k_d, k_op), (v_d, v_op)):
        assert torch.equal(direct_t, op_t)
    # Autograd compares a saved tensor's version with its current one, so what matters is that both paths bump
    # each cache's counter; how many times the op's dispatch does it differs between torch releases (torch 2.11: 2).
    assert min(bumps_d) >= 1 and min(bumps_op) >= 1


def test_kvcache_direct_inference_tensors_cpu(ref_extension, monkeypatch):
    """Caches made and appended to under torch.inference_mode (inference tensors, whose version counters the
    direct path bumps as the op does): the same output and caches on both paths."""
    with torch.inference_mode():
        q = torch.randn(2, 1, 4, 8).to(torch.bfloat16)
        caches = [torch.randn(2, 16, 2, 8).to(torch.bfloat16) for _ in range(2)]
        k, v = (torch.randn(2, 1, 2, 8).to(torch.bfloat16) for _ in range(2))
        seqlens = torch.tensor([5, 9], dtype=torch.int32)
    results = []
    for direct in (False, True):
        monkeypatch.setattr(_ops, "eager_direct", lambda *tensors, direct=direct: direct)
        with torch.inference_mode():
            k_cache, v_cache = (c.clone() for c in caches)
            out = flash_attn_with_kvcache(q, k_cache, v_cache, k, v, cache_seqlens=seqlens)
        results.append((out, k_cache, v_cache))
    for direct_t, op_t in zip(*results):
        assert torch.equal(direct_t, op_t)


@pytest.mark.parametrize("kind", ["dense", "qkvpacked", "varlen"])
def test_no_grad_calls_skip_the_autograd_function(ref_extension, monkeypatch, kind):
    """A direct call whose inputs need no gradient runs the Function's forward alone (flash_attn_interface._apply):
    the same output as through Function.apply, which such a call never reaches; a call whose inputs need one still
    goes through apply."""
    from flash_attn import flash_attn_interface as fi
    from flash_attn import flash_attn_qkvpacked_func

    q, k, v = (torch.randn(2, 7, 2, 8).to(torch.bfloat16) for _ in range(3))
    cu = torch.tensor([0, 5, 14], dtype=torch.int32)
    function, call = {
        "dense": (fi.FlashAttnFunc, lambda q, k, v: flash_attn_func(q, k, v, causal=True)),
        "qkvpacked": (fi.FlashAttnQKVPackedFunc,
                      lambda q, k, v: flash_attn_qkvpacked_func(torch.stack((q, k, v), dim=2), causal=True)),
        "varlen": (fi.FlashAttnVarlenFunc, lambda q, k, v: flash_attn_varlen_func(
            q.reshape(14, 2, 8), k.reshape(14, 2, 8), v.reshape(14, 2, 8), cu, cu, 9, 9, causal=True)),
    }[kind]
    monkeypatch.setattr(_ops, "eager_direct", lambda *tensors: False)
    through_apply = call(q, k, v)
    monkeypatch.setattr(_ops, "eager_direct", lambda *tensors: True)

    def refuse(*args):
        raise AssertionError("Function.apply reached by a call that needs no gradient")

    monkeypatch.setattr(function, "apply", refuse)
    assert torch.equal(call(q, k, v), through_apply)
    with torch.no_grad():
        assert torch.equal(call(*(t.clone().requires_grad_() for t in (q, k, v))), through_apply)
    with pytest.raises(AssertionError, match="Function.apply reached"):
        call(*(t.clone().requires_grad_() for t in (q, k, v)))


def _run(monkeypatch, direct, fn, inputs, dout):
    monkeypatch.setenv(ENV, "1" if direct else "0")
    for t in inputs:
        t.grad = None
    out = fn(*inputs)
    out.backward(dout)
    return out.detach().clone(), [t.grad.clone() for t in inputs]


@requires_gpu
@pytest.mark.skipif(DRYRUN, reason="compares the real launchers")
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kind", ["dense", "gqa", "varlen"])
def test_direct_matches_the_ops(monkeypatch, kind, causal):
    dtype, d = built_dtype(), built_head_dim()
    heads_k = 2 if kind == "gqa" else 6
    if kind == "varlen":
        lengths = [77, 130, 1]
        q, k, v, dout = attention_inputs((sum(lengths), 6, d), (sum(lengths), heads_k, d), dtype, seed=11)
        cu = cu_seqlens(lengths)

        def fn(q, k, v):
            return flash_attn_varlen_func(q, k, v, cu, cu, max(lengths), max(lengths), causal=causal,
                                          deterministic=True)
    else:
        q, k, v, dout = attention_inputs((2, 113, 6, d), (2, 257, heads_k, d), dtype, seed=7)

        def fn(q, k, v):
            return flash_attn_func(q, k, v, causal=causal, deterministic=True)

    out_op, grads_op = _run(monkeypatch, False, fn, (q, k, v), dout)
    out_direct, grads_direct = _run(monkeypatch, True, fn, (q, k, v), dout)
    assert torch.equal(out_direct, out_op)
    for g_direct, g_op in zip(grads_direct, grads_op):
        assert torch.equal(g_direct, g_op)


@requires_gpu
@pytest.mark.skipif(DRYRUN, reason="compares the real launchers")
@pytest.mark.parametrize("paged", [False, True])
def test_kvcache_direct_matches_the_op(monkeypatch, paged):
    """flash_attn_with_kvcache appending 3 tokens into a dense or paged cache: the same output, lse and caches with
    the switch on and off."""
    dtype, d = built_dtype(), built_head_dim()
    q = randn((2, 3, 4, d), dtype, 31)
    k_new, v_new = randn((2, 3, 2, d), dtype, 32), randn((2, 3, 2, d), dtype, 33)
    seqlens = torch.tensor([70, 129], dtype=torch.int32, device=q.device)
    if paged:
        caches = [randn((8, 64, 2, d), dtype, 34 + i) for i in range(2)]
        block_table = torch.tensor([[5, 1, 7], [0, 3, 6]], dtype=torch.int32, device=q.device)
    else:
        caches = [randn((2, 200, 2, d), dtype, 34 + i) for i in range(2)]
        block_table = None
    results = []
    for direct in ("0", "1"):
        monkeypatch.setenv(ENV, direct)
        k_cache, v_cache = (c.clone() for c in caches)
        out, lse = flash_attn_with_kvcache(q, k_cache, v_cache, k_new, v_new, cache_seqlens=seqlens, causal=True,
                                           block_table=block_table, return_softmax_lse=True)
        results.append((out, lse, k_cache, v_cache))
    for direct_t, op_t in zip(*results):
        assert torch.equal(direct_t, op_t)
