"""flash_attn_varlen_func over a paged K/V (block_table; forward only), and the private varlen forward's seqused_k and
leftpad_k, against the float32 reference on the same keys as contiguous sequences. Pages are shuffled in a pool with
spare pages; outputs are poisoned before the kernels run."""

import math

import pytest
import torch

from flash_attn import flash_attn_varlen_func
from flash_attn.flash_attn_interface import _flash_attn_varlen_forward
from helpers import DTYPE_NAME, require_kernel, requires_gpu, skip_in_dryrun
from helpers import cu_seqlens as _cu
from helpers import randn as _randn
from reference import assert_close_to_ref, attention_varlen_ref

pytestmark = [requires_gpu, skip_in_dryrun, pytest.mark.usefixtures("kernel_backend")]

# (seqlens_q, seqlens_k): decode (one query per sequence: the split-KV kernel) and chunks (the main kernel)
SEQLENS = {
    "decode": ([1, 1, 1, 1], [300, 0, 17, 1000]),
    "chunks": ([37, 1, 200, 0], [300, 17, 256, 5]),
}


def _paged(k, v, cu_k, page, seed):
    """k/v (total_k, hk, d) as a shuffled pool of pages (with spare pages) and a (batch, max_pages) block table."""
    lens = [int(b - a) for a, b in zip(cu_k[:-1], cu_k[1:])]
    pages_per_seq = [math.ceil(n / page) for n in lens]
    max_pages = max(max(pages_per_seq), 1)
    pool = sum(pages_per_seq) + 3
    order = torch.randperm(pool, generator=torch.Generator().manual_seed(seed)).tolist()
    table = torch.zeros(len(lens), max_pages, dtype=torch.int32)
    k_pool = _randn((pool, page, *k.shape[1:]), k.dtype, seed + 1)
    v_pool = _randn((pool, page, *v.shape[1:]), v.dtype, seed + 2)
    for b, n in enumerate(lens):
        for j in range(pages_per_seq[b]):
            p = order.pop()
            table[b, j] = p
            rows = slice(int(cu_k[b]) + j * page, int(cu_k[b]) + min((j + 1) * page, n))
            k_pool[p, : rows.stop - rows.start] = k[rows]
            v_pool[p, : rows.stop - rows.start] = v[rows]
    return k_pool, v_pool, table.to(k.device)


@pytest.mark.parametrize("page", [16, 48, 256])
@pytest.mark.parametrize("shape", list(SEQLENS))
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_varlen_paged(page, shape, causal, dtype):
    d, h, hk = 128, 8, 2
    require_kernel(dtype, d)
    seqlens_q, seqlens_k = SEQLENS[shape]
    seed = 100 + page + 7 * causal + (shape == "chunks")
    q = _randn((sum(seqlens_q), h, d), dtype, seed)
    k, v = _randn((sum(seqlens_k), hk, d), dtype, seed + 1), _randn((sum(seqlens_k), hk, d), dtype, seed + 2)
    cu_q, cu_k = _cu(seqlens_q), _cu(seqlens_k)
    k_pool, v_pool, table = _paged(k, v, cu_k.tolist(), page, seed + 3)
    out, lse, _ = flash_attn_varlen_func(q, k_pool, v_pool, cu_q, cu_k, max(seqlens_q), max(seqlens_k),
                                         causal=causal, block_table=table, return_attn_probs=True)
    ref_out, ref_lse = attention_varlen_ref(q, k, v, cu_q, cu_k, causal)
    lp_out, lp_lse = attention_varlen_ref(q, k, v, cu_q, cu_k, causal, upcast=False)
    assert_close_to_ref("out", out, ref_out, lp_out)
    assert_close_to_ref("lse", lse, ref_lse, lp_lse)


def test_varlen_paged_backward_raises():
    dtype, d = torch.bfloat16, 64
    require_kernel(dtype, d)
    q = _randn((3, 2, d), dtype, 1).requires_grad_()
    k, v = _randn((20, 2, d), dtype, 2), _randn((20, 2, d), dtype, 3)
    cu_q, cu_k = _cu([1, 2]), _cu([12, 8])
    k_pool, v_pool, table = _paged(k, v, cu_k.tolist(), 16, 4)
    out = flash_attn_varlen_func(q, k_pool, v_pool, cu_q, cu_k, 2, 12, block_table=table)
    with pytest.raises(NotImplementedError, match="block_table"):
        out.sum().backward()


@pytest.mark.parametrize("shape", list(SEQLENS))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_varlen_seqused_and_leftpad(shape, dtype):
    """seqused_k: only the first keys of each sequence's slot count; leftpad_k: the keys start later in it."""
    d, h, hk = 64, 4, 4
    require_kernel(dtype, d)
    seqlens_q, slots = SEQLENS[shape]
    used = [min(n, max(n - 9, 0) + (i % 2)) for i, n in enumerate(slots)]
    pads = [min(3 * i, u) for i, u in enumerate(used)]
    q = _randn((sum(seqlens_q), h, d), dtype, 51)
    k, v = _randn((sum(slots), hk, d), dtype, 52), _randn((sum(slots), hk, d), dtype, 53)
    cu_q, cu_slots = _cu(seqlens_q), _cu(slots)
    dev = q.device
    seqused = torch.tensor(used, dtype=torch.int32, device=dev)
    leftpad = torch.tensor(pads, dtype=torch.int32, device=dev)
    # the reference sees the keys [leftpad, seqused) of every slot, gathered contiguously
    keep = torch.cat([torch.arange(int(cu_slots[b]) + pads[b], int(cu_slots[b]) + used[b]) for b in range(len(used))])
    cu_ref = _cu([u - p for u, p in zip(used, pads)])
    for causal in (False, True):
        out, lse, _, _ = _flash_attn_varlen_forward(q, k, v, cu_q, cu_slots, max(seqlens_q), max(slots), 0.0,
                                                     d ** -0.5, causal, leftpad_k=leftpad, seqused_k=seqused)
        ref_out, ref_lse = attention_varlen_ref(q, k[keep.to(dev)], v[keep.to(dev)], cu_q, cu_ref, causal)
        lp_out, lp_lse = attention_varlen_ref(q, k[keep.to(dev)], v[keep.to(dev)], cu_q, cu_ref, causal,
                                              upcast=False)
        assert_close_to_ref(f"out ({DTYPE_NAME[dtype]}, causal={causal})", out, ref_out, lp_out)
        assert_close_to_ref("lse", lse, ref_lse, lp_lse)
