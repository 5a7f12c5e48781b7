"""ALiBi (bias -slope * |i + sk - sq - j| on the scaled, soft-capped scores), forward and backward, dense and
varlen, slopes of shape (h,) and (b, h), alone and with causal / window / softcap, against the float32
reference. Outputs and gradients are poisoned (NaN-filled) before the kernels write them."""

import random
import zlib

import pytest
import torch

from flash_attn import flash_attn_func, flash_attn_varlen_func
from helpers import DTYPE_NAME, alibi_slopes, assert_attention_close, attention_inputs, built_head_dim, require_kernel
from helpers import requires_gpu
from helpers import cu_seqlens as _cu
from reference import attention_ref, attention_varlen_ref

pytestmark = [requires_gpu, pytest.mark.usefixtures("kernel_backend")]

HEAD_DIMS = [32, 64, 96, 128, 192, 256, 72]
DTYPES = [torch.float16, torch.bfloat16]
SEQ_PAIRS = [(113, 113), (239, 1023), (1023, 239), (1, 17), (512, 512)]
HEADS = [(4, 4), (8, 1), (8, 2)]
VARIANTS = [  # (causal, window, softcap)
    (False, (-1, -1), 0.0), (True, (-1, -1), 0.0), (False, (64, 16), 0.0), (True, (-1, -1), 30.0),
]


def _cases():
    rng = random.Random(1234)
    cases = []
    for i, d in enumerate(HEAD_DIMS):
        for j, (causal, window, softcap) in enumerate(VARIANTS):
            sq, sk = rng.choice(SEQ_PAIRS)
            h, hk = rng.choice(HEADS)
            cases.append((sq, sk, h, hk, d, DTYPES[(i + j) % 2], causal, window, softcap, (i + j) % 2 == 0))
    return cases


def _id(c):
    sq, sk, h, hk, d, dtype, causal, window, softcap, per_batch = c
    return (f"sq{sq}-sk{sk}-h{h}-hk{hk}-d{d}-{DTYPE_NAME[dtype]}{'-causal' if causal else ''}"
            f"-w{window[0]}_{window[1]}-cap{softcap:g}-{'bh' if per_batch else 'h'}")


CASES = _cases()


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_alibi_dense(case):
    sq, sk, h, hk, d, dtype, causal, window, softcap, per_batch = case
    require_kernel(dtype, d)
    seed = zlib.crc32(_id(case).encode()) % (1 << 30)
    b = 2
    q, k, v, dout = attention_inputs((b, sq, h, d), (b, sk, hk, d), dtype, seed)
    slopes = alibi_slopes(h, b if per_batch else None)
    out, lse, _ = flash_attn_func(q, k, v, causal=causal, window_size=window, softcap=softcap, alibi_slopes=slopes,
                                  return_attn_probs=True)
    grads = torch.autograd.grad(out, (q, k, v), dout)

    def fn(q_, k_, v_, upcast):
        return attention_ref(q_, k_, v_, causal, upcast=upcast, window=window, softcap=softcap, alibi_slopes=slopes)

    assert_attention_close(out, lse, grads, fn, (q, k, v), dout)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("per_batch", [False, True])
def test_alibi_varlen(dtype, per_batch):
    d = built_head_dim()
    require_kernel(dtype, d)
    seqlens_q, seqlens_k = [17, 0, 300, 64], [40, 77, 300, 0]
    cu_q, cu_k = _cu(seqlens_q), _cu(seqlens_k)
    q, k, v, dout = attention_inputs((sum(seqlens_q), 4, d), (sum(seqlens_k), 2, d), dtype, 51)
    slopes = alibi_slopes(4, len(seqlens_q) if per_batch else None)
    out, lse, _ = flash_attn_varlen_func(q, k, v, cu_q, cu_k, max(seqlens_q), max(seqlens_k), causal=True,
                                         alibi_slopes=slopes, return_attn_probs=True)
    grads = torch.autograd.grad(out, (q, k, v), dout)
    cq, ck = cu_q.tolist(), cu_k.tolist()

    def fn(q_, k_, v_, upcast):
        return attention_varlen_ref(q_, k_, v_, cq, ck, True, upcast=upcast, alibi_slopes=slopes)

    assert_attention_close(out, lse, grads, fn, (q, k, v), dout)
