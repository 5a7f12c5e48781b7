"""Bad values in index tensors never make a kernel touch memory outside the call's tensors (the GPU script runs this
module under compute-sanitizer --tool memcheck, which must report nothing), the CUDA context stays usable after
them, and an understated max_seqlen still gives correct attention, forward and backward. With
FLASH_ATTN_CHECK_INPUTS=1 each bad value raises FlashAttnIndexError naming the argument instead.

What the kernels make of a bad value (csrc/flash/seqlen.h, paged.h): cu_seqlens are clamped to the packed totals
(a decreasing pair is an empty sequence), a cache_batch_idx entry out of range is a sequence without keys (out 0,
lse +inf, nothing appended), a block-table entry out of range reads page 0 and is never written, negative
cache_seqlens / seqused_k count as 0, leftpad is clamped to the keys in use."""

import os

import pytest
import torch

from flash_attn import flash_attn_varlen_func, flash_attn_with_kvcache
from flash_attn import _checks
from flash_attn.flash_attn_interface import _flash_attn_varlen_forward
from flash_attn.layers.rotary import apply_rotary_emb
from helpers import attention_inputs, built_dtype, built_head_dim, requires_gpu, skip_in_dryrun
from helpers import cu_seqlens as _cu
from helpers import randn as _randn
from reference import assert_close_to_ref, attention_varlen_ref, kvcache_ref, rotary_ref

# skip_in_dryrun: these cases are about the kernels' memory accesses
pytestmark = [requires_gpu, skip_in_dryrun, pytest.mark.usefixtures("kernel_backend")]


@pytest.fixture
def check_inputs(monkeypatch):
    monkeypatch.setenv(_checks.CHECK_INPUTS_ENV, "1")


def _sync_ok():
    """The context is not poisoned: a later kernel and a sync still work."""
    torch.cuda.synchronize()
    x = torch.arange(1024, device="cuda", dtype=torch.float32)
    assert float(x.sum()) == 1024 * 1023 / 2


def _kvcache_setup(d, dtype, page_size=None, batch=3, capacity=512, seed=0):
    h, hk = 4, 2
    q = _randn((batch, 1, h, d), dtype, seed)
    k_new, v_new = _randn((batch, 1, hk, d), dtype, seed + 1), _randn((batch, 1, hk, d), dtype, seed + 2)
    if page_size is None:
        k_cache = _randn((batch, capacity, hk, d), dtype, seed + 3)
        v_cache = _randn((batch, capacity, hk, d), dtype, seed + 4)
        return q, k_new, v_new, k_cache, v_cache, None
    pages_per_seq = capacity // page_size
    num_pages = batch * pages_per_seq
    k_cache = _randn((num_pages, page_size, hk, d), dtype, seed + 3)
    v_cache = _randn((num_pages, page_size, hk, d), dtype, seed + 4)
    perm = torch.randperm(num_pages, generator=torch.Generator().manual_seed(seed)).to(torch.int32)
    block_table = perm.reshape(batch, pages_per_seq).cuda()
    return q, k_new, v_new, k_cache, v_cache, block_table


def _dense_view(cache, block_table):
    """A paged cache as the dense (batch, capacity, hk, d) cache it stands for."""
    return cache[block_table.long()].flatten(1, 2)


@pytest.mark.parametrize("bad_entry", [10**6, -1, -(10**6)])
@pytest.mark.parametrize("num_splits", [0, 1, 3])
def test_kvcache_block_table_out_of_range(bad_entry, num_splits):
    d, dtype = built_head_dim(), built_dtype()
    q, k_new, v_new, k_cache, v_cache, block_table = _kvcache_setup(d, dtype, page_size=256)
    cache_seqlens = torch.tensor([300, 100, 400], dtype=torch.int32, device="cuda")
    dense_k, dense_v = _dense_view(k_cache, block_table), _dense_view(v_cache, block_table)
    bad_table = block_table.clone()
    bad_table[0, 0] = bad_entry  # sequence 0 uses pages 0 and 1; its result is undefined, the others' are not
    bad_table[1, 1] = bad_entry  # sequence 1 uses only page 0 (101 keys): this entry is never read
    k_before, v_before = k_cache.clone(), v_cache.clone()
    out, lse = flash_attn_with_kvcache(q, k_cache, v_cache, k_new, v_new, cache_seqlens=cache_seqlens,
                                       block_table=bad_table, causal=True, num_splits=num_splits,
                                       return_softmax_lse=True)
    _sync_ok()
    for b in (1, 2):  # the sequences without a bad entry in use
        ro, rl, rk, _ = kvcache_ref(q[b:b + 1], dense_k[b:b + 1], dense_v[b:b + 1], k_new[b:b + 1],
                                    v_new[b:b + 1], cache_seqlens=cache_seqlens[b:b + 1], causal=True)
        lo, ll, _, _ = kvcache_ref(q[b:b + 1], dense_k[b:b + 1], dense_v[b:b + 1], k_new[b:b + 1],
                                   v_new[b:b + 1], cache_seqlens=cache_seqlens[b:b + 1], causal=True, upcast=False)
        assert_close_to_ref(f"out[{b}]", out[b:b + 1], ro, lo)
        assert_close_to_ref(f"lse[{b}]", lse[b:b + 1], rl, ll)
        assert torch.equal(_dense_view(k_cache, block_table)[b:b + 1], rk)
    # Sequence 0 appends into its page 1 (position 300): the entry is good there, so it is written; no other page
    # than the ones of the appended positions changes.
    changed = (k_cache != k_before).flatten(1).any(1) | (v_cache != v_before).flatten(1).any(1)
    expected = {int(block_table[0, 1]), int(block_table[1, 0]), int(block_table[2, 1])}
    assert set(changed.nonzero().flatten().tolist()) <= expected


def test_kvcache_block_table_bad_page_is_not_written():
    d, dtype = built_head_dim(), built_dtype()
    q, k_new, v_new, k_cache, v_cache, block_table = _kvcache_setup(d, dtype, page_size=256)
    cache_seqlens = torch.tensor([300, 100, 400], dtype=torch.int32, device="cuda")
    bad_table = block_table.clone()
    bad_table[0, 1] = -5  # the page sequence 0 appends into
    k_before = k_cache.clone()
    flash_attn_with_kvcache(q, k_cache, v_cache, k_new, v_new, cache_seqlens=cache_seqlens, block_table=bad_table)
    _sync_ok()
    assert torch.equal(k_cache[0], k_before[0])  # page 0 stands in for the bad entry's reads, never for writes


@pytest.mark.parametrize("bad_row", [3, 100, -1])
@pytest.mark.parametrize("rotary", [False, True])
def test_kvcache_batch_idx_out_of_range(bad_row, rotary):
    d, dtype = built_head_dim(), built_dtype()
    q, k_new, v_new, k_cache, v_cache, _ = _kvcache_setup(d, dtype, capacity=200)
    cache_seqlens = torch.tensor([50, 120, 10], dtype=torch.int32, device="cuda")
    batch_idx = torch.tensor([2, bad_row, 0], dtype=torch.int32, device="cuda")
    kwargs = {}
    if rotary:
        angle = torch.rand(200, 16, device="cuda") * 6.28
        kwargs = dict(rotary_cos=angle.cos().to(dtype), rotary_sin=angle.sin().to(dtype))
    k_before, v_before = k_cache.clone(), v_cache.clone()
    out, lse = flash_attn_with_kvcache(q, k_cache, v_cache, k_new, v_new, cache_seqlens=cache_seqlens,
                                       cache_batch_idx=batch_idx, causal=True, return_softmax_lse=True, **kwargs)
    _sync_ok()
    # The bad entry's sequence has no keys (out 0, lse +inf) and appends nothing; row 1 of the cache is nobody's.
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    assert torch.isinf(lse[1]).all() and (lse[1] > 0).all()
    assert torch.equal(k_cache[1], k_before[1]) and torch.equal(v_cache[1], v_before[1])
    good = [0, 2]
    ro, rl, rk, _ = kvcache_ref(q[good], k_before, v_before, k_new[good], v_new[good],
                                cache_seqlens=cache_seqlens[good], cache_batch_idx=batch_idx[good], causal=True,
                                **kwargs)
    lo, ll, _, _ = kvcache_ref(q[good], k_before, v_before, k_new[good], v_new[good],
                               cache_seqlens=cache_seqlens[good], cache_batch_idx=batch_idx[good], causal=True,
                               upcast=False, **kwargs)
    assert_close_to_ref("out", out[good], ro, lo)
    assert_close_to_ref("lse", lse[good], rl, ll)
    assert torch.equal(k_cache[[2, 0]], rk[[2, 0]])


def test_kvcache_kernels_clamp_negative_cache_seqlens():
    """The binding itself (no Python checks): negative cache_seqlens count as 0 in the append and the attention, a
    leftpad past the keys in use leaves no key, a negative one none cut off."""
    from flash_attn.flash_attn_interface import flash_attn_gpu

    d, dtype = built_head_dim(), built_dtype()
    q, k_new, v_new, k_cache, v_cache, _ = _kvcache_setup(d, dtype, capacity=128)
    cache_seqlens = torch.tensor([-7, 5, -(2**31)], dtype=torch.int32, device="cuda")
    leftpad = torch.tensor([-3, 2, 10**6], dtype=torch.int32, device="cuda")
    k_before = k_cache.clone()
    for num_splits in (0, 1, 2):  # 0: fused append in the split kernel; 1 / 2 forced
        out, lse = flash_attn_gpu.fwd_kvcache(q, k_cache, v_cache, k_new, v_new, cache_seqlens, None, None, None,
                                              leftpad, None, None, None, d ** -0.5, True, -1, -1, 0.0, True,
                                              num_splits)
        _sync_ok()
        assert torch.equal(k_cache[0, 0], k_new[0, 0]) and torch.equal(k_cache[2, 0], k_new[2, 0])
        assert torch.equal(k_cache[0, 1:], k_before[0, 1:]) and torch.equal(k_cache[2, 1:], k_before[2, 1:])
        # Sequence 0 sees just its new key: out = its value; sequence 2's leftpad leaves no key.
        assert torch.allclose(out[0, 0].float(), v_new[0, 0].float().repeat_interleave(2, dim=0), atol=1e-2)
        assert torch.equal(out[2], torch.zeros_like(out[2])) and torch.isinf(lse[2]).all()


@pytest.mark.skipif(os.environ.get("PYTORCH_NO_CUDA_MEMORY_CACHING", "0") not in ("", "0"),
                    reason="CUDA graph capture needs torch's caching allocator (off under the GPU script's memcheck)")
def test_kvcache_negative_cache_seqlens_in_graph_capture():
    """Outside capture negative cache_seqlens raise (the capacity check reads them); inside a CUDA graph they count
    as 0: the new key goes to position 0 and attention sees just it."""
    d, dtype = built_head_dim(), built_dtype()
    q, k_new, v_new, k_cache, v_cache, _ = _kvcache_setup(d, dtype, capacity=128)
    cache_seqlens = torch.tensor([-7, 5, -(2**31)], dtype=torch.int32, device="cuda")
    leftpad = torch.tensor([-3, 2, 10**6], dtype=torch.int32, device="cuda")
    with pytest.raises(_checks.FlashAttnValueError, match="cache_seqlens"):
        flash_attn_with_kvcache(q, k_cache, v_cache, k_new, v_new, cache_seqlens=cache_seqlens)
    stream = torch.cuda.Stream()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream):
        warm = torch.tensor([7, 5, 9], dtype=torch.int32, device="cuda")
        flash_attn_with_kvcache(q, k_cache, v_cache, k_new, v_new, cache_seqlens=warm)  # warm-up
        with torch.cuda.graph(graph, stream=stream):
            out = flash_attn_with_kvcache(q, k_cache, v_cache, k_new, v_new, cache_seqlens=cache_seqlens,
                                          cache_leftpad=leftpad)
    k_before = k_cache.clone()
    graph.replay()
    _sync_ok()
    assert torch.equal(k_cache[0, 0], k_new[0, 0]) and torch.equal(k_cache[2, 0], k_new[2, 0])
    assert torch.equal(k_cache[0, 1:], k_before[0, 1:])
    assert not torch.isnan(out).any()


def _varlen_inputs(seqlens_q, seqlens_k, d, dtype, seed, h=4, hk=2):
    q, k, v, dout = attention_inputs((sum(seqlens_q), h, d), (sum(seqlens_k), hk, d), dtype, seed)
    return q, k, v, dout, _cu(seqlens_q), _cu(seqlens_k)


@pytest.mark.parametrize("case", ["decreasing", "past_total", "negative"])
def test_varlen_bad_cu_seqlens(case):
    d, dtype = built_head_dim(), built_dtype()
    q, k, v, dout, cu_q, cu_k = _varlen_inputs([40, 70, 30], [50, 90, 20], d, dtype, seed=3)
    bad = {"decreasing": [0, 40, 20, 140], "past_total": [0, 40, 110, 10**6],
           "negative": [0, -(2**31), 110, 140]}[case]
    bad_cu = torch.tensor(bad, dtype=torch.int32, device="cuda")
    for cu_q_, cu_k_ in ((bad_cu, cu_k), (cu_q, bad_cu)):
        out = flash_attn_varlen_func(q, k, v, cu_q_, cu_k_, 200, 200, causal=True)
        out.backward(dout)
        _sync_ok()
        q.grad = k.grad = v.grad = None
    if case == "past_total":  # the last sequence is cut at the packed total, and computed over what is left
        cu = torch.tensor([0, 40, 110, 140], dtype=torch.int32, device="cuda")
        out = flash_attn_varlen_func(q, k, v, bad_cu, cu_k, 200, 200)
        ref, _ = attention_varlen_ref(q.detach(), k.detach(), v.detach(), cu.tolist(), cu_k.tolist())
        lp, _ = attention_varlen_ref(q.detach(), k.detach(), v.detach(), cu.tolist(), cu_k.tolist(), upcast=False)
        assert_close_to_ref("out", out, ref, lp)


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("seqlens", [([300, 17, 1023], [200, 600, 1023]), ([1, 5, 1], [300, 4000, 7])])
def test_varlen_understated_max_seqlen(seqlens, causal, deterministic):
    """max_seqlen_q/k below the real lengths (even 0): every row and key block is still computed, forward and
    backward (the second case's queries are short enough for the split-KV kernel)."""
    d, dtype = built_head_dim(), built_dtype()
    seqlens_q, seqlens_k = seqlens
    q, k, v, dout, cu_q, cu_k = _varlen_inputs(seqlens_q, seqlens_k, d, dtype, seed=11)

    def fn(q_, k_, v_, upcast):
        return attention_varlen_ref(q_, k_, v_, cu_q.tolist(), cu_k.tolist(), causal, upcast=upcast)

    for max_q, max_k in ((1, 64), (0, 0), (max(seqlens_q) - 1, max(seqlens_k) - 1)):
        out, lse, _ = flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, causal=causal,
                                             deterministic=deterministic, return_attn_probs=True)
        grads = torch.autograd.grad(out, (q, k, v), dout)
        from helpers import assert_attention_close
        assert_attention_close(out, lse, grads, fn, (q, k, v), dout)
        if deterministic:
            out2 = flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, causal=causal, deterministic=True)
            grads2 = torch.autograd.grad(out2, (q, k, v), dout)
            assert all(torch.equal(a, b) for a, b in zip(grads, grads2))


def test_varlen_understated_max_seqlen_dropout():
    """Dropout with an understated max_seqlen: in bounds (S_dmask keeps to its max_seqlen extent), reproducible, and
    its keep mask is the one the well-bounded call draws."""
    d, dtype = built_head_dim(), built_dtype()
    q, k, v, dout, cu_q, cu_k = _varlen_inputs([130, 20], [150, 300], d, dtype, seed=5)
    torch.manual_seed(7)
    out_bad, _, s_bad = flash_attn_varlen_func(q, k, v, cu_q, cu_k, 64, 100, dropout_p=0.3, return_attn_probs=True)
    assert s_bad.shape[-2:] == (128, 128)
    torch.manual_seed(7)
    out_good, _, s_good = flash_attn_varlen_func(q, k, v, cu_q, cu_k, 130, 300, dropout_p=0.3,
                                                 return_attn_probs=True)
    _sync_ok()
    assert torch.equal(out_bad, out_good)
    assert torch.equal(torch.signbit(s_bad[:, :, :128, :128]), torch.signbit(s_good[:, :, :128, :128]))


def test_varlen_bad_seqused_and_leftpad():
    d, dtype = built_head_dim(), built_dtype()
    q, k, v, _, cu_q, cu_k = _varlen_inputs([3, 3], [100, 50], d, dtype, seed=9)
    q, k, v = q.detach(), k.detach(), v.detach()
    seqused = torch.tensor([10**6, -4], dtype=torch.int32, device="cuda")
    leftpad = torch.tensor([-(10**6), 10**6], dtype=torch.int32, device="cuda")
    out, lse, _, _ = _flash_attn_varlen_forward(q, k, v, cu_q, cu_k, 3, 100, 0.0, d ** -0.5, False,
                                                seqused_k=seqused, leftpad_k=leftpad)
    _sync_ok()
    # Clamped: sequence 0 uses all its 100 keys from 0, sequence 1 none (out 0, lse +inf).
    ref, ref_lse = attention_varlen_ref(q[:3], k[:100], v[:100], [0, 3], [0, 100])
    lp, _ = attention_varlen_ref(q[:3], k[:100], v[:100], [0, 3], [0, 100], upcast=False)
    assert_close_to_ref("out", out[:3], ref, lp)
    assert torch.equal(out[3:], torch.zeros_like(out[3:])) and torch.isinf(lse[:, 3:]).all()


def test_paged_varlen_bad_block_table():
    d, dtype = built_head_dim(), built_dtype()
    page, pages = 16, 12
    q = _randn((10, 4, d), dtype, 1)
    k_pages, v_pages = _randn((pages, page, 2, d), dtype, 2), _randn((pages, page, 2, d), dtype, 3)
    block_table = torch.tensor([[0, 5, 99, -1], [3, -7, 2, 10**6]], dtype=torch.int32, device="cuda")
    cu_q = _cu([5, 5])
    cu_k = torch.tensor([0, 60, 10**6], dtype=torch.int32, device="cuda")  # beyond the table's 64 positions too
    flash_attn_varlen_func(q, k_pages, v_pages, cu_q, cu_k, 5, 64, block_table=block_table)
    _sync_ok()


def test_rotary_bad_varlen_and_offsets():
    d, dtype = built_head_dim(), built_dtype()
    x = _randn((60, 2, d), dtype, 4)
    angle = torch.rand(64, 16, device="cuda")
    cos, sin = angle.cos().to(dtype), angle.sin().to(dtype)
    bad_cu = torch.tensor([0, 50, 20, 10**6], dtype=torch.int32, device="cuda")
    apply_rotary_emb(x, cos, sin, cu_seqlens=bad_cu, max_seqlen=8)
    xb = _randn((2, 30, 2, d), dtype, 5)
    out = apply_rotary_emb(xb, cos, sin, seqlen_offsets=torch.tensor([-40, 10**9], dtype=torch.int32,
                                                                      device="cuda"))
    _sync_ok()
    # Positions without a table row (negative or >= seqlen_ro) are left as they are.
    assert torch.equal(out, xb)


def test_rotary_understated_max_seqlen():
    d, dtype = built_head_dim(), built_dtype()
    x = _randn((90, 2, d), dtype, 6)
    angle = torch.rand(128, 16, device="cuda") * 6.28
    cos, sin = angle.cos().to(dtype), angle.sin().to(dtype)
    cu = _cu([70, 20])
    out = apply_rotary_emb(x, cos, sin, cu_seqlens=cu, max_seqlen=5, interleaved=True)
    positions = torch.cat([torch.arange(70), torch.arange(20)]).cuda()
    ref = rotary_ref(x, cos, sin, positions, interleaved=True)
    assert torch.equal(out, ref.to(dtype))


# ----------------------------------------------------------------------------------------------------------
# FLASH_ATTN_CHECK_INPUTS=1: the same values raise, naming the argument
# ----------------------------------------------------------------------------------------------------------


def test_check_inputs_kvcache(check_inputs):
    d, dtype = built_head_dim(), built_dtype()
    q, k_new, v_new, k_cache, v_cache, block_table = _kvcache_setup(d, dtype, page_size=256)
    cache_seqlens = torch.tensor([300, 100, 400], dtype=torch.int32, device="cuda")
    bad_table = block_table.clone()
    bad_table[0, 0] = 10**6
    with pytest.raises(_checks.FlashAttnIndexError, match=r"block_table\[0, 0\]"):
        flash_attn_with_kvcache(q, k_cache, v_cache, k_new, v_new, cache_seqlens=cache_seqlens, block_table=bad_table)
    ok_table = block_table.clone()
    ok_table[1, 1] = -1  # unused entries may hold anything (Hugging Face pads with -1)
    flash_attn_with_kvcache(q, k_cache, v_cache, k_new, v_new, cache_seqlens=cache_seqlens, block_table=ok_table)
    q, k_new, v_new, k_cache, v_cache, _ = _kvcache_setup(d, dtype, capacity=200)
    with pytest.raises(_checks.FlashAttnIndexError, match="cache_batch_idx"):
        flash_attn_with_kvcache(q, k_cache, v_cache, k_new, v_new, cache_seqlens=cache_seqlens.clamp(max=150),
                                cache_batch_idx=torch.tensor([0, 3, 1], dtype=torch.int32, device="cuda"))
    _sync_ok()


def test_check_inputs_varlen(check_inputs):
    d, dtype = built_head_dim(), built_dtype()
    q, k, v, _, cu_q, cu_k = _varlen_inputs([40, 70, 30], [50, 90, 20], d, dtype, seed=3)
    for bad, match in (([0, 40, 20, 140], "non-decreasing"), ([0, 40, 110, 141], "runs past")):
        bad_cu = torch.tensor(bad, dtype=torch.int32, device="cuda")
        with pytest.raises(_checks.FlashAttnIndexError, match=f"cu_seqlens_q.*{match}|{match}.*cu_seqlens_q"):
            flash_attn_varlen_func(q, k, v, bad_cu, cu_k, 200, 200)
    with pytest.raises(_checks.FlashAttnIndexError, match="max_seqlen_q = 50"):
        flash_attn_varlen_func(q, k, v, cu_q, cu_k, 50, 200)
    with pytest.raises(_checks.FlashAttnIndexError, match="max_seqlen_k = 89"):
        flash_attn_varlen_func(q, k, v, cu_q, cu_k, 70, 89)
    out = flash_attn_varlen_func(q, k, v, cu_q, cu_k, 70, 90)
    out.sum().backward()
    _sync_ok()
