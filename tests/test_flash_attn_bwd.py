"""Backward kernels on the GPU: dq, dk, dv against the float32 reference (tolerance rule in reference.py).

The low-precision reference (ref_lowp) is autograd through the same attention computed in the input dtype, so
the bound is 2 x PyTorch's own error on the same inputs. Gradient buffers are poisoned (NaN-filled via
FLASH_ATTN_DEBUG_POISON=1) before the kernels write them. Cases are sampled deterministically from the
parameter product; the long ones carry the `slow` marker.
"""

import itertools
import random
import zlib

import pytest
import torch

from flash_attn import (
    flash_attn_func,
    flash_attn_kvpacked_func,
    flash_attn_qkvpacked_func,
    flash_attn_varlen_func,
    flash_attn_varlen_kvpacked_func,
    flash_attn_varlen_qkvpacked_func,
)
from helpers import (
    DEVICE,
    DTYPE_NAME,
    assert_grads_close,
    built_dtype,
    built_head_dim,
    require_kernel,
    requires_gpu,
    skip_in_dryrun,
)
from helpers import cu_seqlens as _cu
from helpers import randn as _randn
from reference import assert_close_to_ref, attention_ref, attention_varlen_ref

pytestmark = [requires_gpu, pytest.mark.usefixtures("kernel_backend")]

HEAD_DIMS = [32, 40, 59, 64, 80, 96, 111, 128, 160, 192, 224, 256]
DTYPES = [torch.float16, torch.bfloat16]
SEQ_PAIRS = [(s, s) for s in (1, 17, 113, 239, 256, 1023)] + [
    (1, 239), (17, 1023), (113, 512), (239, 256),  # seqlen_q < seqlen_k
    (239, 1), (113, 17), (512, 239), (1023, 113),  # seqlen_q > seqlen_k (causal: rows and keys without partners)
]
HEADS = [(4, 4), (8, 1), (8, 2), (6, 3), (2, 2)]  # MHA, MQA, GQA


def _dense_ref(causal, softmax_scale=None):
    def fn(q, k, v, upcast):
        return attention_ref(q, k, v, causal, softmax_scale, upcast=upcast)[0]

    return fn


def _varlen_ref(cu_q, cu_k, causal):
    cu_q, cu_k = cu_q.tolist(), cu_k.tolist()

    def fn(q, k, v, upcast):
        return attention_varlen_ref(q, k, v, cu_q, cu_k, causal, upcast=upcast)[0]

    return fn


def _grads(out, inputs, dout):
    return torch.autograd.grad(out, inputs, dout)


# ----------------------------------------------------------------------------------------------------------
# Dense: sampled product
# ----------------------------------------------------------------------------------------------------------


def _dense_cases():
    rng = random.Random(4242)
    cases = []
    for d, dtype, causal in itertools.product(HEAD_DIMS, DTYPES, (False, True)):  # every head dim x dtype x causal
        sq, sk = rng.choice(SEQ_PAIRS)
        h, hk = rng.choice(HEADS)
        cases.append((rng.choice((1, 2)), sq, sk, h, hk, d, dtype, causal))
    for (sq, sk), causal in itertools.product(SEQ_PAIRS, (False, True)):  # every seqlen pair x causal
        h, hk = rng.choice(HEADS)
        cases.append((rng.choice((1, 2)), sq, sk, h, hk, rng.choice(HEAD_DIMS), rng.choice(DTYPES), causal))
    return [(1 if c[1] * c[2] >= 1 << 18 else c[0], *c[1:]) for c in cases]


def _dense_id(c):
    b, sq, sk, h, hk, d, dtype, causal = c
    return f"b{b}-sq{sq}-sk{sk}-h{h}-hk{hk}-d{d}-{DTYPE_NAME[dtype]}-{'causal' if causal else 'full'}"


DENSE_CASES = _dense_cases()


@pytest.mark.parametrize("case", DENSE_CASES, ids=[_dense_id(c) for c in DENSE_CASES])
def test_flash_attn_func_grads(case):
    b, sq, sk, h, hk, d, dtype, causal = case
    require_kernel(dtype, d)
    seed = zlib.crc32(_dense_id(case).encode()) % (1 << 30)
    q = _randn((b, sq, h, d), dtype, seed).requires_grad_()
    k = _randn((b, sk, hk, d), dtype, seed + 1).requires_grad_()
    v = _randn((b, sk, hk, d), dtype, seed + 2).requires_grad_()
    dout = _randn((b, sq, h, d), dtype, seed + 3)
    out = flash_attn_func(q, k, v, causal=causal)
    grads = _grads(out, (q, k, v), dout)
    assert_grads_close(("dq", "dk", "dv"), grads, _dense_ref(causal), (q, k, v), dout)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_scale(dtype):
    d = built_head_dim()
    require_kernel(dtype, d)
    q, k, v = (_randn((2, 113, 4, d), dtype, s).requires_grad_() for s in (1, 2, 3))
    dout = _randn((2, 113, 4, d), dtype, 4)
    out = flash_attn_func(q, k, v, softmax_scale=0.37, causal=True)
    assert_grads_close(("dq", "dk", "dv"), _grads(out, (q, k, v), dout), _dense_ref(True, 0.37), (q, k, v), dout)


@skip_in_dryrun
@pytest.mark.parametrize("causal", [False, True])
def test_deterministic_bitwise(causal):
    """deterministic=True: five backward runs give bitwise identical dq, dk, dv (many key blocks add to each dq row)."""
    d, dtype = built_head_dim(), built_dtype()
    require_kernel(dtype, d)
    q, k, v = (_randn((2, 1023, 8, d), dtype, s).requires_grad_() for s in (11, 12, 13))
    dout = _randn((2, 1023, 8, d), dtype, 14)
    runs = []
    for _ in range(5):
        out = flash_attn_func(q, k, v, causal=causal, deterministic=True)
        runs.append(_grads(out, (q, k, v), dout))
    for run in runs[1:]:
        for a, b in zip(run, runs[0]):
            assert torch.equal(a, b)
    assert_grads_close(("dq", "dk", "dv"), runs[0], _dense_ref(causal), (q, k, v), dout)


@skip_in_dryrun
def test_deterministic_varlen_gqa():
    d, dtype = built_head_dim(), built_dtype()
    require_kernel(dtype, d)
    seqlens_q, seqlens_k = [300, 0, 1023, 17], [512, 40, 1023, 0]
    cu_q, cu_k = _cu(seqlens_q), _cu(seqlens_k)
    q = _randn((sum(seqlens_q), 8, d), dtype, 21).requires_grad_()
    k = _randn((sum(seqlens_k), 2, d), dtype, 22).requires_grad_()
    v = _randn((sum(seqlens_k), 2, d), dtype, 23).requires_grad_()
    dout = _randn(q.shape, dtype, 24)
    runs = []
    for _ in range(5):
        out = flash_attn_varlen_func(q, k, v, cu_q, cu_k, 1023, 1023, causal=True, deterministic=True)
        runs.append(_grads(out, (q, k, v), dout))
    for run in runs[1:]:
        for a, b in zip(run, runs[0]):
            assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_gradients_are_exact(dtype):
    """Causal with sq > sk: leading query rows see no key, so their dq is exactly 0; varlen sequences with no
    queries give exactly zero dk/dv for their keys. Nothing is NaN."""
    d = built_head_dim()
    require_kernel(dtype, d)
    q, k, v = _randn((2, 239, 4, d), dtype, 31), _randn((2, 113, 2, d), dtype, 32), _randn((2, 113, 2, d), dtype, 33)
    q, k, v = (x.requires_grad_() for x in (q, k, v))
    dout = _randn(q.shape, dtype, 34)
    dq, dk, dv = _grads(flash_attn_func(q, k, v, causal=True), (q, k, v), dout)
    assert torch.equal(dq[:, : 239 - 113], torch.zeros_like(dq[:, : 239 - 113]))
    assert not any(torch.isnan(g).any() for g in (dq, dk, dv))

    seqlens_q, seqlens_k = [17, 0, 113], [40, 77, 0]
    cu_q, cu_k = _cu(seqlens_q), _cu(seqlens_k)
    q = _randn((sum(seqlens_q), 4, d), dtype, 35).requires_grad_()
    k = _randn((sum(seqlens_k), 2, d), dtype, 36).requires_grad_()
    v = _randn((sum(seqlens_k), 2, d), dtype, 37).requires_grad_()
    dout = _randn(q.shape, dtype, 38)
    dq, dk, dv = _grads(flash_attn_varlen_func(q, k, v, cu_q, cu_k, 113, 77, causal=True), (q, k, v), dout)
    assert torch.equal(dk[40:117], torch.zeros_like(dk[40:117]))  # sequence 1 has keys but no queries
    assert torch.equal(dv[40:117], torch.zeros_like(dv[40:117]))
    assert torch.equal(dq[17:], torch.zeros_like(dq[17:]))  # sequence 2 has queries but no keys
    assert not any(torch.isnan(g).any() for g in (dq, dk, dv))


@pytest.mark.parametrize("dtype", DTYPES)
def test_misaligned_views(dtype):
    """Views whose rows do not start 16-byte aligned (a slice at an odd offset of a wider head dim, a tensor
    starting 2 bytes into its storage): the ops copy them, forward and backward are correct."""
    d = built_head_dim()
    require_kernel(dtype, d)
    b, sq, sk, h, hk = 2, 113, 239, 4, 2
    q = _randn((b, sq, h, d + 12), dtype, 41).requires_grad_()[..., 2 : 2 + d]
    k = _randn((b, sk, hk, d + 4), dtype, 42).requires_grad_()[..., 4 : 4 + d]
    flat = _randn((b * sk * hk * d + 1,), dtype, 43).requires_grad_()
    v = flat[1:].view(b, sk, hk, d)
    dout = _randn((b, sq, h, d), dtype, 44)
    out = flash_attn_func(q, k, v, causal=True)
    ref_out, _ = attention_ref(q, k, v, True)
    lp_out, _ = attention_ref(q, k, v, True, upcast=False)
    assert_close_to_ref("out", out, ref_out, lp_out)
    assert_grads_close(("dq", "dk", "dv"), _grads(out, (q, k, v), dout), _dense_ref(True), (q, k, v), dout)


# ----------------------------------------------------------------------------------------------------------
# Packed and varlen entry points
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype,d,causal", [(torch.bfloat16, 64, True), (torch.float16, 111, False),
                                            (torch.bfloat16, 256, False)])
def test_qkvpacked_grads(dtype, d, causal):
    require_kernel(dtype, d)
    qkv = _randn((2, 239, 3, 4, d), dtype, 41).requires_grad_()
    dout = _randn((2, 239, 4, d), dtype, 42)
    (dqkv,) = _grads(flash_attn_qkvpacked_func(qkv, causal=causal), (qkv,), dout)

    def fn(qkv, upcast):
        return attention_ref(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], causal, upcast=upcast)[0]

    assert_grads_close(("dqkv",), (dqkv,), fn, (qkv,), dout)


@pytest.mark.parametrize("dtype,d,causal", [(torch.float16, 32, True), (torch.bfloat16, 96, False)])
def test_kvpacked_grads(dtype, d, causal):
    require_kernel(dtype, d)
    q = _randn((2, 113, 8, d), dtype, 51).requires_grad_()
    kv = _randn((2, 256, 2, 2, d), dtype, 52).requires_grad_()
    dout = _randn(q.shape, dtype, 53)
    dq, dkv = _grads(flash_attn_kvpacked_func(q, kv, causal=causal), (q, kv), dout)

    def fn(q, kv, upcast):
        return attention_ref(q, kv[:, :, 0], kv[:, :, 1], causal, upcast=upcast)[0]

    assert_grads_close(("dq", "dkv"), (dq, dkv), fn, (q, kv), dout)


VARLEN_SEQLENS = [
    ([17, 0, 113, 1, 239], [17, 5, 113, 300, 0]),  # zero-length q and k sequences
    ([1] * 4, [1023, 17, 0, 239]),  # decode-like
    ([512, 256], [256, 512]),  # seqlen_q != seqlen_k both ways
    ([0, 0, 3], [0, 4, 0]),
]


def _varlen_cases():
    rng = random.Random(99)
    cases = []
    for i, ((sq, sk), causal) in enumerate(itertools.product(VARLEN_SEQLENS, (False, True))):
        h, hk = rng.choice(HEADS)
        cases.append((i, sq, sk, h, hk, rng.choice(HEAD_DIMS), DTYPES[i % 2], causal))
    return cases


VARLEN_CASES = _varlen_cases()


def _varlen_id(c):
    i, sq, sk, h, hk, d, dtype, causal = c
    return f"set{i // 2}-h{h}-hk{hk}-d{d}-{DTYPE_NAME[dtype]}-{'causal' if causal else 'full'}"


@pytest.mark.parametrize("case", VARLEN_CASES, ids=[_varlen_id(c) for c in VARLEN_CASES])
def test_flash_attn_varlen_func_grads(case):
    i, seqlens_q, seqlens_k, h, hk, d, dtype, causal = case
    require_kernel(dtype, d)
    cu_q, cu_k = _cu(seqlens_q), _cu(seqlens_k)
    q = _randn((sum(seqlens_q), h, d), dtype, 100 + i).requires_grad_()
    k = _randn((sum(seqlens_k), hk, d), dtype, 200 + i).requires_grad_()
    v = _randn((sum(seqlens_k), hk, d), dtype, 300 + i).requires_grad_()
    dout = _randn(q.shape, dtype, 400 + i)
    out = flash_attn_varlen_func(q, k, v, cu_q, cu_k, max(seqlens_q), max(seqlens_k), causal=causal)
    grads = _grads(out, (q, k, v), dout)
    assert_grads_close(("dq", "dk", "dv"), grads, _varlen_ref(cu_q, cu_k, causal), (q, k, v), dout)


@pytest.mark.parametrize("causal", [False, True])
def test_varlen_packed_grads(causal):
    d, dtype = built_head_dim(), built_dtype()
    require_kernel(dtype, d)
    seqlens = [113, 0, 17, 256]
    cu = _cu(seqlens)
    qkv = _randn((sum(seqlens), 3, 4, d), dtype, 61).requires_grad_()
    dout = _randn((sum(seqlens), 4, d), dtype, 62)
    (dqkv,) = _grads(flash_attn_varlen_qkvpacked_func(qkv, cu, 256, causal=causal), (qkv,), dout)
    ref = _varlen_ref(cu, cu, causal)
    assert_grads_close(("dqkv",), (dqkv,), lambda qkv, up: ref(qkv[:, 0], qkv[:, 1], qkv[:, 2], up), (qkv,), dout)

    q = _randn((sum(seqlens), 8, d), dtype, 63).requires_grad_()
    kv = _randn((sum(seqlens), 2, 2, d), dtype, 64).requires_grad_()
    dout = _randn(q.shape, dtype, 65)
    dq, dkv = _grads(flash_attn_varlen_kvpacked_func(q, kv, cu, cu, 256, 256, causal=causal), (q, kv), dout)
    assert_grads_close(("dq", "dkv"), (dq, dkv), lambda q, kv, up: ref(q, kv[:, 0], kv[:, 1], up), (q, kv), dout)


@pytest.mark.parametrize("dtype", DTYPES)
def test_noncontiguous_grads(dtype):
    """HF-style transposed views for q/k/v and a non-contiguous dout."""
    d = built_head_dim()
    require_kernel(dtype, d)
    base = _randn((2, 4, 239, d), dtype, 71)
    q = base.transpose(1, 2).detach().requires_grad_()  # (b, s, h, d) view of (b, h, s, d)
    k = _randn((2, 2, 113, d), dtype, 72).transpose(1, 2).detach().requires_grad_()
    v = _randn((2, 113, 2, 2 * d), dtype, 73)[..., :d].detach().requires_grad_()
    dout = _randn((2, 4, 239, d), dtype, 74).transpose(1, 2)
    assert not q.is_contiguous() and not dout.is_contiguous()
    out = flash_attn_func(q, k, v, causal=True)
    assert_grads_close(("dq", "dk", "dv"), _grads(out, (q, k, v), dout), _dense_ref(True), (q, k, v), dout)


# ----------------------------------------------------------------------------------------------------------
# torch.compile training step, memory
# ----------------------------------------------------------------------------------------------------------


@skip_in_dryrun
def test_compile_training_step_fullgraph():
    """torch.compile(fullgraph=True) of a loss over the dense and varlen paths: the forward and (AOTAutograd)
    backward graphs compile without graph breaks and give the eager gradients."""
    torch._dynamo.reset()
    d, dtype = built_head_dim(), built_dtype()
    require_kernel(dtype, d)
    q, k, v = (_randn((2, 239, 8, d), dtype, s).requires_grad_() for s in (81, 82, 83))
    cu = _cu([100, 0, 139])

    def loss_fn(q, k, v):
        dense = flash_attn_func(q, k, v, causal=True)
        packed = flash_attn_varlen_func(q.view(-1, 8, d)[:239], k.view(-1, 8, d)[:239], v.view(-1, 8, d)[:239],
                                        cu, cu, 139, 139, causal=True)
        return dense.float().square().mean() + packed.float().square().mean()

    compiled = torch.compile(loss_fn, fullgraph=True)
    grads = torch.autograd.grad(compiled(q, k, v), (q, k, v))
    eager = torch.autograd.grad(loss_fn(q, k, v), (q, k, v))
    for g, ref in zip(grads, eager):
        assert not torch.isnan(g).any()
        # inductor may round the loss gradient (dout) differently from eager by an ulp
        torch.testing.assert_close(g.float(), ref.float(), rtol=2e-2, atol=2e-2 * ref.float().abs().max().item())


@skip_in_dryrun
def test_memory_linear_in_seqlen():
    """Nothing O(seqlen^2): peak memory of forward + backward at 16k is <= 2.2x that at 8k (same batch*heads)."""
    d, dtype = built_head_dim(), built_dtype()
    require_kernel(dtype, d)

    def peak(s):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        q, k, v = (torch.randn((1, s, 8, d), device=DEVICE, dtype=dtype, requires_grad=True) for _ in range(3))
        out = flash_attn_func(q, k, v, causal=True)
        out.backward(torch.randn_like(out))
        torch.cuda.synchronize()
        result = torch.cuda.max_memory_allocated() - base
        del q, k, v, out
        return result

    p8, p16 = peak(8192), peak(16384)
    assert p16 <= 2.2 * p8, f"peak {p16} bytes at 16k vs {p8} at 8k"


# ----------------------------------------------------------------------------------------------------------
# Slow tier
# ----------------------------------------------------------------------------------------------------------


@skip_in_dryrun
@pytest.mark.slow
def test_bwd_more_than_2_31_elements():
    """64-bit offsets in the backward: q/k/v/dout/dq... hold > 2^31 elements; the last batch entries are checked."""
    dtype = built_dtype()
    d = 128
    require_kernel(dtype, d)
    s, h = 128, 8
    b = (1 << 31) // (s * h * d) + 2
    q, k, v = (torch.randn((b, s, h, d), device=DEVICE, dtype=dtype, requires_grad=True) for _ in range(3))
    dout = torch.randn((b, s, h, d), device=DEVICE, dtype=dtype)
    grads = _grads(flash_attn_func(q, k, v, causal=True), (q, k, v), dout)
    tail = slice(b - 2, b)
    assert_grads_close(("dq", "dk", "dv"), [g[tail] for g in grads], _dense_ref(True), (q[tail], k[tail], v[tail]),
                 dout[tail])
