"""The split-KV forward (short queries: decode, speculative steps) against the float32 reference.

Calls whose packed rows (seqlen_q x query heads per KV head) are few take the split-KV kernel: GQA query heads
packed into one tile, keys split across CTAs and merged by a combine kernel. These cases use long key ranges and
few (batch, KV head) pairs so that the heuristic splits; explicit num_splits (flash_attn_with_kvcache) covers one
split, uneven splits and more splits than key blocks (empty splits). Outputs are poisoned before the kernels run.
"""

import random

import pytest
import torch

from flash_attn import flash_attn_func, flash_attn_varlen_func, flash_attn_with_kvcache
from helpers import DTYPE_NAME, alibi_slopes, assert_attention_close, require_kernel, requires_gpu, skip_in_dryrun
from helpers import cu_seqlens as _cu
from helpers import randn as _randn
from reference import assert_close_to_ref, attention_ref, attention_varlen_ref, kvcache_ref

pytestmark = [requires_gpu, pytest.mark.usefixtures("kernel_backend")]

DTYPES = [torch.float16, torch.bfloat16]
# (causal, window, softcap, alibi)
MASKS = [(False, (-1, -1), 0.0, False), (True, (-1, -1), 0.0, False), (False, (700, 0), 0.0, False),
         (True, (-1, -1), 20.0, False), (True, (-1, -1), 0.0, True), (False, (33, 5), 0.0, True)]


def _dense_cases():
    rng = random.Random(4242)
    cases = []
    for i in range(24):
        d = (128, 64, 32, 96, 192, 256, 80, 59)[i % 8]
        h, hk = ((8, 2), (32, 8), (6, 1), (4, 4), (16, 1))[i % 5]
        sq = rng.choice([1, 1, 2, 4]) if h // hk <= 16 else 1
        sk = rng.choice([1, 63, 1000, 3001, 4096])
        cases.append(dict(b=rng.choice([1, 2]), sq=sq, sk=sk, h=h, hk=hk, d=d, dtype=DTYPES[i % 2],
                          mask=MASKS[i % len(MASKS)], seed=700 + i))
    return cases


def _dense_id(c):
    causal, window, softcap, alibi = c["mask"]
    return (f"b{c['b']}-sq{c['sq']}-sk{c['sk']}-h{c['h']}_{c['hk']}-d{c['d']}-{DTYPE_NAME[c['dtype']]}"
            f"{'-causal' if causal else ''}-w{window[0]}_{window[1]}-cap{softcap:g}{'-alibi' if alibi else ''}")


DENSE_CASES = _dense_cases()


@pytest.mark.parametrize("case", DENSE_CASES, ids=[_dense_id(c) for c in DENSE_CASES])
def test_split_forward_and_backward(case):
    """flash_attn_func on decode shapes: the split-KV forward, and the backward from its lse."""
    c = case
    causal, window, softcap, alibi = c["mask"]
    require_kernel(c["dtype"], c["d"])
    q = _randn((c["b"], c["sq"], c["h"], c["d"]), c["dtype"], c["seed"]).requires_grad_()
    k = _randn((c["b"], c["sk"], c["hk"], c["d"]), c["dtype"], c["seed"] + 1).requires_grad_()
    v = _randn((c["b"], c["sk"], c["hk"], c["d"]), c["dtype"], c["seed"] + 2).requires_grad_()
    slopes = alibi_slopes(c["h"], c["b"]) if alibi else None
    out, lse, _ = flash_attn_func(q, k, v, causal=causal, window_size=window, softcap=softcap, alibi_slopes=slopes,
                                  return_attn_probs=True)
    dout = _randn(out.shape, c["dtype"], c["seed"] + 3)
    grads = torch.autograd.grad(out, (q, k, v), dout)

    def ref(q_, k_, v_, upcast):
        return attention_ref(q_, k_, v_, causal, upcast=upcast, window=window, softcap=softcap, alibi_slopes=slopes)

    assert_attention_close(out, lse, grads, ref, (q, k, v), dout)


@pytest.mark.parametrize("dtype", DTYPES)
def test_split_varlen_decode(dtype):
    """One query per sequence against keys of different lengths (a padded decode batch), empty ones included."""
    d = 128
    require_kernel(dtype, d)
    seqlens_k = [3000, 0, 1, 517, 2048]
    seqlens_q = [1, 1, 1, 1, 1]
    q = _randn((sum(seqlens_q), 16, d), dtype, 31)
    k, v = _randn((sum(seqlens_k), 4, d), dtype, 32), _randn((sum(seqlens_k), 4, d), dtype, 33)
    cu_q, cu_k = _cu(seqlens_q), _cu(seqlens_k)
    for causal in (False, True):
        out, lse, _ = flash_attn_varlen_func(q, k, v, cu_q, cu_k, 1, max(seqlens_k), causal=causal,
                                             return_attn_probs=True)
        ref_out, ref_lse = attention_varlen_ref(q, k, v, cu_q, cu_k, causal)
        lp_out, lp_lse = attention_varlen_ref(q, k, v, cu_q, cu_k, causal, upcast=False)
        assert_close_to_ref("out", out, ref_out, lp_out)
        assert_close_to_ref("lse", lse, ref_lse, lp_lse)
        assert torch.all(out[1] == 0) and torch.all(torch.isposinf(lse[:, 1]))  # no key: output 0, lse +inf


@pytest.mark.parametrize("num_splits", [1, 2, 7, 128])
@pytest.mark.parametrize("paged", [False, True])
@skip_in_dryrun
def test_kvcache_num_splits(num_splits, paged):
    """Explicit split counts: one, uneven, and more splits than key blocks (splits without keys)."""
    dtype, d, b, cap, h, hk = torch.bfloat16, 128, 3, 1024, 8, 2
    require_kernel(dtype, d)
    q = _randn((b, 1, h, d), dtype, 41)
    k_cache, v_cache = _randn((b, cap, hk, d), dtype, 42), _randn((b, cap, hk, d), dtype, 43)
    k, v = _randn((b, 1, hk, d), dtype, 44), _randn((b, 1, hk, d), dtype, 45)
    seqlens = torch.tensor([1000, 0, 77], dtype=torch.int32, device=q.device)
    ref_out, ref_lse, ref_k, ref_v = kvcache_ref(q, k_cache, v_cache, k, v, cache_seqlens=seqlens, causal=True)
    lp_out, lp_lse, _, _ = kvcache_ref(q, k_cache, v_cache, k, v, cache_seqlens=seqlens, causal=True, upcast=False)
    table = None
    if paged:
        page = 16
        table = torch.randperm(b * cap // page, generator=torch.Generator().manual_seed(46))
        table = table.reshape(b, cap // page).to(device=q.device, dtype=torch.int32)
        k_pool = torch.empty((b * cap // page, page, hk, d), dtype=dtype, device=q.device)
        v_pool = torch.empty_like(k_pool)
        k_pool[table.flatten().long()] = k_cache.reshape(-1, page, hk, d)
        v_pool[table.flatten().long()] = v_cache.reshape(-1, page, hk, d)
        k_cache, v_cache = k_pool, v_pool
    out, lse = flash_attn_with_kvcache(q, k_cache, v_cache, k, v, cache_seqlens=seqlens, block_table=table,
                                       causal=True, num_splits=num_splits, return_softmax_lse=True)
    if paged:
        k_cache = k_cache[table.flatten().long()].reshape(b, cap, hk, d)
        v_cache = v_cache[table.flatten().long()].reshape(b, cap, hk, d)
    assert torch.equal(k_cache, ref_k) and torch.equal(v_cache, ref_v)
    assert_close_to_ref("out", out, ref_out, lp_out)
    assert_close_to_ref("lse", lse, ref_lse, lp_lse)


@pytest.mark.parametrize("seqlen_q", [1, 70])
def test_varlen_understated_max_seqlen_k(seqlen_q):
    """max_seqlen_k below the real key counts (a stale bound, as transformers' CUDA-graph replays can pass) does not
    change causal attention: the kernels take each sequence's keys from cu_seqlens_k."""
    dtype, d = torch.bfloat16, 128
    require_kernel(dtype, d)
    seqlens_q, seqlens_k = [seqlen_q, seqlen_q], [300, seqlen_q + 17]
    q = _randn((sum(seqlens_q), 8, d), dtype, 61)
    k, v = _randn((sum(seqlens_k), 2, d), dtype, 62), _randn((sum(seqlens_k), 2, d), dtype, 63)
    cu_q, cu_k = _cu(seqlens_q), _cu(seqlens_k)
    out, lse, _ = flash_attn_varlen_func(q, k, v, cu_q, cu_k, seqlen_q, seqlen_q, causal=True, return_attn_probs=True)
    ref_out, ref_lse = attention_varlen_ref(q, k, v, cu_q, cu_k, True)
    lp_out, lp_lse = attention_varlen_ref(q, k, v, cu_q, cu_k, True, upcast=False)
    assert_close_to_ref("out", out, ref_out, lp_out)
    assert_close_to_ref("lse", lse, ref_lse, lp_lse)
