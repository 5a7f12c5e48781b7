"""Softcap (scores <- softcap * tanh(scores / softcap) on the scaled scores, before masking), forward and
backward, dense and varlen, alone and with causal / sliding-window masks, against the float32 reference.
Outputs and gradients are poisoned (NaN-filled) before the kernels write them."""

import random
import zlib

import pytest
import torch

from flash_attn import flash_attn_func, flash_attn_varlen_func
from helpers import DTYPE_NAME, assert_attention_close, attention_inputs, built_head_dim, require_kernel, requires_gpu
from helpers import cu_seqlens as _cu
from reference import attention_ref, attention_varlen_ref

pytestmark = [requires_gpu, pytest.mark.usefixtures("kernel_backend")]

HEAD_DIMS = [32, 64, 96, 128, 192, 256, 80]
DTYPES = [torch.float16, torch.bfloat16]
SOFTCAPS = [50.0, 30.0, 5.0, 0.5]  # Gemma's 50 down to a cap that saturates most scores
SEQ_PAIRS = [(113, 113), (239, 1023), (1023, 239), (1, 17), (512, 512)]
HEADS = [(4, 4), (8, 1), (8, 2)]


def _cases():
    rng = random.Random(808)
    cases = []
    for i, d in enumerate(HEAD_DIMS):
        for causal, window in ((False, (-1, -1)), (True, (-1, -1)), (False, (40, 7))):
            sq, sk = rng.choice(SEQ_PAIRS)
            h, hk = rng.choice(HEADS)
            cases.append((sq, sk, h, hk, d, DTYPES[i % 2], SOFTCAPS[(i + len(cases)) % len(SOFTCAPS)], causal, window))
    return cases


def _id(c):
    sq, sk, h, hk, d, dtype, softcap, causal, window = c
    return (f"sq{sq}-sk{sk}-h{h}-hk{hk}-d{d}-{DTYPE_NAME[dtype]}-cap{softcap:g}{'-causal' if causal else ''}"
            f"-w{window[0]}_{window[1]}")


CASES = _cases()


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_softcap_dense(case):
    sq, sk, h, hk, d, dtype, softcap, causal, window = case
    require_kernel(dtype, d)
    seed = zlib.crc32(_id(case).encode()) % (1 << 30)
    # scores of a few units: a cap of 0.5-5 bends most of them, 30-50 only the tails
    q, k, v, dout = attention_inputs((2, sq, h, d), (2, sk, hk, d), dtype, seed, q_scale=2)
    out, lse, _ = flash_attn_func(q, k, v, causal=causal, window_size=window, softcap=softcap,
                                  return_attn_probs=True)
    grads = torch.autograd.grad(out, (q, k, v), dout)

    def fn(q_, k_, v_, upcast):
        return attention_ref(q_, k_, v_, causal, upcast=upcast, window=window, softcap=softcap)

    assert_attention_close(out, lse, grads, fn, (q, k, v), dout)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softcap_varlen(dtype):
    d = built_head_dim()
    require_kernel(dtype, d)
    seqlens_q, seqlens_k = [17, 0, 300, 64], [40, 77, 128, 0]
    cu_q, cu_k = _cu(seqlens_q), _cu(seqlens_k)
    q, k, v, dout = attention_inputs((sum(seqlens_q), 4, d), (sum(seqlens_k), 2, d), dtype, 91, q_scale=2)
    out, lse, _ = flash_attn_varlen_func(q, k, v, cu_q, cu_k, max(seqlens_q), max(seqlens_k), causal=True,
                                         softcap=20.0, return_attn_probs=True)
    grads = torch.autograd.grad(out, (q, k, v), dout)
    cq, ck = cu_q.tolist(), cu_k.tolist()

    def fn(q_, k_, v_, upcast):
        return attention_varlen_ref(q_, k_, v_, cq, ck, True, upcast=upcast, softcap=20.0)

    assert_attention_close(out, lse, grads, fn, (q, k, v), dout)
