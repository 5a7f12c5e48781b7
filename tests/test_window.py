"""Sliding-window (local) attention, forward and backward, dense and varlen, against the float32 reference.

window_size = (left, right) as 2.x defines it: query i sees key j iff
i + sk - sq - left <= j <= i + sk - sq + right, -1 meaning unbounded; causal=True forces right = 0. Windows run
on the same kernels as causal attention (a runtime window), so these cases also cover the block ranges that
skip key blocks outside every query's window and the masks at both window edges. Outputs and gradients are
poisoned (NaN-filled) before the kernels write them.
"""

import random
import zlib

import pytest
import torch

from flash_attn import flash_attn_func, flash_attn_varlen_func
from helpers import DTYPE_NAME, assert_attention_close, attention_inputs, built_head_dim, require_kernel
from helpers import requires_gpu
from helpers import cu_seqlens as _cu
from helpers import randn as _randn
from reference import attention_ref, attention_varlen_ref

pytestmark = [requires_gpu, pytest.mark.usefixtures("kernel_backend")]

HEAD_DIMS = [32, 59, 64, 96, 128, 160, 192, 256]
DTYPES = [torch.float16, torch.bfloat16]
# (window, causal): both edges, one edge, the diagonal only, windows wider than a tile, causal + left window
WINDOWS = [((0, 0), False), ((16, 0), False), ((16, 0), True), ((64, 32), False), ((-1, 8), False),
           ((100, -1), False), ((3, 200), False), ((300, 7), True), ((1, 1), False)]
SEQ_PAIRS = [(113, 113), (239, 1023), (1023, 239), (1, 17), (17, 1), (512, 512), (2048, 2048), (640, 4096)]
HEADS = [(4, 4), (8, 1), (8, 2), (6, 3)]


def _cases():
    rng = random.Random(5150)
    cases = []
    for i, (window, causal) in enumerate(WINDOWS):  # every window, on every seqlen pair across the list
        for j in range(2):
            sq, sk = SEQ_PAIRS[(i + 3 * j) % len(SEQ_PAIRS)]
            h, hk = rng.choice(HEADS)
            cases.append((1 if sq * sk >= 1 << 20 else 2, sq, sk, h, hk, rng.choice(HEAD_DIMS),
                          DTYPES[(i + j) % 2], window, causal))
    for d in HEAD_DIMS:  # every head dim at least once, with a window narrower than one tile
        h, hk = rng.choice(HEADS)
        cases.append((2, 239, 239, h, hk, d, rng.choice(DTYPES), (rng.choice((5, 40)), rng.choice((0, 9))), False))
    return cases


def _id(c):
    b, sq, sk, h, hk, d, dtype, window, causal = c
    return (f"b{b}-sq{sq}-sk{sk}-h{h}-hk{hk}-d{d}-{DTYPE_NAME[dtype]}-w{window[0]}_{window[1]}"
            f"{'-causal' if causal else ''}")


CASES = _cases()


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_window_dense(case):
    b, sq, sk, h, hk, d, dtype, window, causal = case
    require_kernel(dtype, d)
    seed = zlib.crc32(_id(case).encode()) % (1 << 30)
    q, k, v, dout = attention_inputs((b, sq, h, d), (b, sk, hk, d), dtype, seed)
    out, lse, _ = flash_attn_func(q, k, v, causal=causal, window_size=window, return_attn_probs=True)
    grads = torch.autograd.grad(out, (q, k, v), dout)

    def fn(q_, k_, v_, upcast):
        return attention_ref(q_, k_, v_, causal, upcast=upcast, window=window)

    assert_attention_close(out, lse, grads, fn, (q, k, v), dout)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("window,causal", [((32, 0), True), ((7, 50), False), ((0, 0), False)])
def test_window_varlen(dtype, window, causal):
    d = built_head_dim()
    require_kernel(dtype, d)
    seqlens_q, seqlens_k = [17, 0, 300, 64, 1], [40, 77, 128, 0, 513]
    cu_q, cu_k = _cu(seqlens_q), _cu(seqlens_k)
    seed = zlib.crc32(f"{DTYPE_NAME[dtype]}{window}{causal}".encode()) % (1 << 30)
    q, k, v, dout = attention_inputs((sum(seqlens_q), 4, d), (sum(seqlens_k), 2, d), dtype, seed)
    out, lse, _ = flash_attn_varlen_func(q, k, v, cu_q, cu_k, max(seqlens_q), max(seqlens_k), causal=causal,
                                         window_size=window, return_attn_probs=True)
    cq, ck = cu_q.tolist(), cu_k.tolist()
    grads = torch.autograd.grad(out, (q, k, v), dout)

    def fn(q_, k_, v_, upcast):
        return attention_varlen_ref(q_, k_, v_, cq, ck, causal, upcast=upcast, window=window)

    assert_attention_close(out, lse, grads, fn, (q, k, v), dout)


@pytest.mark.parametrize("dtype", DTYPES)
def test_window_unseen_keys_have_zero_grads(dtype):
    """With window (0, 0) and sq < sk, keys before the first query's diagonal key are seen by no query: their dk
    and dv are exactly 0, and so is dq for nothing (every query sees its diagonal key). Deterministic mode gives
    the same gradients bit for bit on every run."""
    d = built_head_dim()
    require_kernel(dtype, d)
    sq, sk = 113, 300
    q = _randn((2, sq, 4, d), dtype, 71).requires_grad_()
    k = _randn((2, sk, 4, d), dtype, 72).requires_grad_()
    v = _randn((2, sk, 4, d), dtype, 73).requires_grad_()
    dout = _randn(q.shape, dtype, 74)
    runs = []
    for _ in range(3):
        out = flash_attn_func(q, k, v, window_size=(0, 0), deterministic=True)
        runs.append(torch.autograd.grad(out, (q, k, v), dout))
    dq, dk, dv = runs[0]
    unseen = sk - sq
    assert torch.equal(dk[:, :unseen], torch.zeros_like(dk[:, :unseen]))
    assert torch.equal(dv[:, :unseen], torch.zeros_like(dv[:, :unseen]))
    assert not any(torch.isnan(g).any() for g in (dq, dk, dv))
    for run in runs[1:]:
        for a, b in zip(run, runs[0]):
            assert torch.equal(a, b)
    # window (0, 0): each query's output is exactly its diagonal key's value
    out = flash_attn_func(q.detach(), k.detach(), v.detach(), window_size=(0, 0))
    torch.testing.assert_close(out, v.detach()[:, unseen:], rtol=0, atol=0)
