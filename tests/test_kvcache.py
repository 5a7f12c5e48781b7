"""flash_attn_with_kvcache against a float32 reference that appends, rotates and attends in plain PyTorch
(reference.kvcache_ref): with and without appended k/v, rotary (none, interleaved, GPT-NeoX), cache_batch_idx,
cache_leftpad, paged caches (block_table; pages of 16 to 256 slots, shuffled), GQA, causal / window / softcap /
ALiBi, seqlen_q 1 and > 1, cache_seqlens at 0 and up to the cache end. The caches after the append must equal
the reference's exactly (untouched slots included); outputs are poisoned before the kernel writes them."""

import random

import pytest
import torch

from flash_attn import flash_attn_with_kvcache
from helpers import DTYPE_NAME, alibi_slopes, require_kernel, requires_gpu, skip_in_dryrun
from helpers import randn as _randn
from reference import assert_close_to_ref, kvcache_ref

# skip_in_dryrun: flash_attn_with_kvcache calls the extension directly (no reference launcher)
pytestmark = [requires_gpu, skip_in_dryrun, pytest.mark.usefixtures("kernel_backend")]

DTYPES = [torch.float16, torch.bfloat16]
ROTARY = [None, True, False]  # none, interleaved, GPT-NeoX
# (causal, window, softcap, alibi)
MASKS = [(False, (-1, -1), 0.0, False), (True, (-1, -1), 0.0, False), (False, (40, 8), 0.0, False),
         (True, (-1, -1), 30.0, False), (True, (-1, -1), 0.0, True), (False, (-1, -1), 0.0, True)]


def _cases():
    rng = random.Random(2718)
    cases = []
    for i in range(36):
        d = (64, 128, 32, 96, 192, 256, 59)[i % 7]
        h, hk = rng.choice([(4, 4), (8, 2), (6, 1)])
        capacity = rng.choice([64, 200, 333])
        seqlen_q = rng.choice([1, 1, 3, 17])
        seqlen_new = 0 if i % 4 == 3 else seqlen_q  # decode / chunked prefill append as many tokens as queries
        rotary = ROTARY[i % 3] if seqlen_new else None
        causal, window, softcap, alibi = MASKS[i % len(MASKS)]
        cases.append(dict(d=d, h=h, hk=hk, capacity=capacity, seqlen_q=seqlen_q, seqlen_new=seqlen_new,
                          rotary=rotary, rotary_dim=rng.choice([16, 32]) if d >= 32 else 16,
                          batch_idx=i % 5 == 1, leftpad=i % 6 == 2, causal=causal, window=window, softcap=softcap,
                          alibi=alibi, dtype=DTYPES[i % 2], seed=1000 + i))
    return cases


def _id(c):
    page = f"page{c['page_size']}-" if c.get("page_size") else ""
    return (f"{page}d{c['d']}-h{c['h']}_{c['hk']}-cap{c['capacity']}-sq{c['seqlen_q']}-new{c['seqlen_new']}"
            f"-rot{c['rotary']}-idx{int(c['batch_idx'])}-lp{int(c['leftpad'])}{'-causal' if c['causal'] else ''}"
            f"-w{c['window'][0]}_{c['window'][1]}-cap{c['softcap']:g}{'-alibi' if c['alibi'] else ''}"
            f"-{DTYPE_NAME[c['dtype']]}")


def _paged_cases():
    """Paged caches: pages of 16 (vLLM), 48 (not a power of two), 64 and 256 (2.x), 2-4 pages per sequence."""
    rng = random.Random(3141)
    cases = []
    for i, page in enumerate((16, 48, 64, 256, 16, 48, 64, 16)):
        c = _cases()[i * 4 + 1]
        c.update(page_size=page, capacity=page * rng.choice([2, 3, 4]) if page < 256 else 512, batch_idx=False,
                 leftpad=False, dtype=DTYPES[i % 2], seed=5000 + i)
        if i == 2:
            c.update(causal=False, window=(40, 8))
        cases.append(c)
    return cases


CASES = _cases() + _paged_cases()


def _run_case(c, cache_seqlens):
    d, dtype, b = c["d"], c["dtype"], len(cache_seqlens)
    require_kernel(dtype, d)
    seed, cap = c["seed"], c["capacity"]
    batch_cache = b + 2 if c["batch_idx"] else b
    q = _randn((b, c["seqlen_q"], c["h"], d), dtype, seed)
    k_cache = _randn((batch_cache, cap, c["hk"], d), dtype, seed + 1)
    v_cache = _randn((batch_cache, cap, c["hk"], d), dtype, seed + 2)
    k = v = cos = sin = None
    if c["seqlen_new"]:
        k = _randn((b, c["seqlen_new"], c["hk"], d), dtype, seed + 3)
        v = _randn((b, c["seqlen_new"], c["hk"], d), dtype, seed + 4)
    if c["rotary"] is not None:
        angle = _randn((cap, c["rotary_dim"] // 2), torch.float32, seed + 5) * 3
        cos, sin = torch.cos(angle).to(dtype), torch.sin(angle).to(dtype)
    seqlens = torch.tensor(cache_seqlens, dtype=torch.int32, device=q.device)
    batch_idx = None
    if c["batch_idx"]:
        batch_idx = torch.tensor(random.Random(seed).sample(range(batch_cache), b), dtype=torch.int32,
                                 device=q.device)
    leftpad = None
    if c["leftpad"]:
        leftpad = torch.tensor([min(s, 5 * i) for i, s in enumerate(cache_seqlens)], dtype=torch.int32,
                               device=q.device)
    slopes = alibi_slopes(c["h"], b) if c["alibi"] else None
    kwargs = dict(rotary_cos=cos, rotary_sin=sin, cache_seqlens=seqlens, cache_batch_idx=batch_idx,
                  cache_leftpad=leftpad, causal=c["causal"], window=c["window"], softcap=c["softcap"],
                  alibi_slopes=slopes, rotary_interleaved=bool(c["rotary"]))
    ref_out, ref_lse, ref_k_cache, ref_v_cache = kvcache_ref(q, k_cache, v_cache, k, v, upcast=True, **kwargs)
    lp_out, lp_lse, _, _ = kvcache_ref(q, k_cache, v_cache, k, v, upcast=False, **kwargs)
    window = kwargs.pop("window")
    page = c.get("page_size")
    if page:  # the same cache in pages: a shuffled pool with spare pages, read back through the block table
        pool = b * cap // page + 3
        table = torch.randperm(pool, generator=torch.Generator().manual_seed(seed))[: b * cap // page]
        table = table.reshape(b, cap // page).to(device=q.device, dtype=torch.int32)
        k_pool, v_pool = _randn((pool, page, c["hk"], d), dtype, seed + 6), _randn((pool, page, c["hk"], d), dtype,
                                                                                    seed + 7)
        k_pool[table.flatten().long()] = k_cache.reshape(-1, page, c["hk"], d)
        v_pool[table.flatten().long()] = v_cache.reshape(-1, page, c["hk"], d)
        out, lse = flash_attn_with_kvcache(q, k_pool, v_pool, k, v, window_size=window, block_table=table,
                                           return_softmax_lse=True, **kwargs)
        k_cache = k_pool[table.flatten().long()].reshape(b, cap, c["hk"], d)
        v_cache = v_pool[table.flatten().long()].reshape(b, cap, c["hk"], d)
    else:
        out, lse = flash_attn_with_kvcache(q, k_cache, v_cache, k, v, window_size=window, return_softmax_lse=True,
                                           **kwargs)
    assert torch.equal(k_cache, ref_k_cache), "k_cache after the append"
    assert torch.equal(v_cache, ref_v_cache), "v_cache after the append"
    assert_close_to_ref("out", out, ref_out, lp_out)
    assert_close_to_ref("lse", lse, ref_lse, lp_lse)


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_kvcache(case):
    cap, new = case["capacity"], case["seqlen_new"]
    # a sequence at 0 (an empty cache), one in the middle, one ending exactly at the cache end
    _run_case(case, [0, cap // 2, cap - new])


def test_kvcache_full_cache_without_seqlens():
    """cache_seqlens=None: every slot of the cache is a key."""
    dtype, d = torch.bfloat16, 128
    require_kernel(dtype, d)
    q = _randn((2, 5, 4, d), dtype, 1)
    k_cache, v_cache = _randn((2, 77, 2, d), dtype, 2), _randn((2, 77, 2, d), dtype, 3)
    out = flash_attn_with_kvcache(q, k_cache, v_cache, causal=True, num_splits=3)
    ref, _, _, _ = kvcache_ref(q, k_cache, v_cache, causal=True)
    lp, _, _, _ = kvcache_ref(q, k_cache, v_cache, causal=True, upcast=False)
    assert_close_to_ref("out", out, ref, lp)


def test_kvcache_int_seqlens_and_cuda_graph():
    """An int cache_seqlens broadcasts; a decode step captured in a CUDA graph replays with new contents."""
    dtype, d = torch.float16, 64
    require_kernel(dtype, d)
    b, cap, h, hk = 3, 128, 8, 2
    q = _randn((b, 1, h, d), dtype, 11)
    k_cache, v_cache = _randn((b, cap, hk, d), dtype, 12), _randn((b, cap, hk, d), dtype, 13)
    k, v = _randn((b, 1, hk, d), dtype, 14), _randn((b, 1, hk, d), dtype, 15)
    seqlens = torch.full((b,), 40, dtype=torch.int32, device=q.device)
    ref_k, ref_v = k_cache.clone(), v_cache.clone()
    out_int = flash_attn_with_kvcache(q, ref_k, ref_v, k, v, cache_seqlens=40, causal=True)
    static = [x.clone() for x in (q, k_cache, v_cache, k, v, seqlens)]
    flash_attn_with_kvcache(*static[:5], cache_seqlens=static[5], causal=True)  # warm-up outside capture
    for x, src in zip(static, (q, k_cache, v_cache, k, v, seqlens)):
        x.copy_(src)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out_graph = flash_attn_with_kvcache(*static[:5], cache_seqlens=static[5], causal=True)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out_graph, out_int)
    assert torch.equal(static[1], ref_k) and torch.equal(static[2], ref_v)
    static[5].fill_(41)  # the next decode step: one more cached token, same graph
    static[1].copy_(ref_k)
    static[2].copy_(ref_v)
    graph.replay()
    expect = flash_attn_with_kvcache(q, ref_k.clone(), ref_v.clone(), k, v, cache_seqlens=41, causal=True)
    torch.cuda.synchronize()
    assert torch.equal(out_graph, expect)


def test_kvcache_rejects_seqlens_past_the_cache():
    dtype, d = torch.float16, 64
    require_kernel(dtype, d)
    q = _randn((2, 1, 4, d), dtype, 21)
    k_cache, v_cache = _randn((2, 16, 4, d), dtype, 22), _randn((2, 16, 4, d), dtype, 23)
    k, v = _randn((2, 2, 4, d), dtype, 24), _randn((2, 2, 4, d), dtype, 25)
    seqlens = torch.tensor([3, 15], dtype=torch.int32, device=q.device)
    with pytest.raises(ValueError, match="must fit the cache"):
        flash_attn_with_kvcache(q, k_cache, v_cache, k, v, cache_seqlens=seqlens)
