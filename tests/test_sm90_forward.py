"""The sm90 (TMA/wgmma) forward against the float32 reference, and against the sm80 kernels, in one process.

On a Hopper GPU with sm90 kernels built, dense, varlen and KV-cache fp16/bf16 forwards run the sm90 kernel (head dims
up to 32 on the d 64 one) unless FLASH_ATTN_FORCE_SM80=1 (read on every call); each case here runs both paths, the
sm90 kernel in each of its variants (PATHS), each checked by the tolerance rule (reference.py) with poisoned outputs.
Skipped elsewhere.
"""

import itertools

import pytest
import torch

from flash_attn import _checks, _ops, flash_attn_func, flash_attn_varlen_func, flash_attn_with_kvcache
from helpers import DRYRUN, require_kernel, requires_gpu
from helpers import randn as _randn
from reference import assert_close_to_ref, attention_ref, attention_varlen_ref, kvcache_ref

FORCE_ENV = "FLASH_ATTN_FORCE_SM80"
# Variant switches of the sm90 forward (csrc/flash/sm90/fwd_launch.h; unset, its tile table picks), set explicitly:
OVERLAP_ENV = "FLASH_ATTN_SM90_FWD_OVERLAP"  # the overlapped / ping-pong consumers
PERSISTENT_ENV = "FLASH_ATTN_SM90_FWD_PERSISTENT"  # persistent CTAs
TMA_STORE_ENV = "FLASH_ATTN_SM90_FWD_TMA_STORE"  # the epilogue's TMA store (else its direct stores)
LAZY_ENV = "FLASH_ATTN_SM90_FWD_LAZY_RESCALE"  # row maxima move only past a threshold (off by default)
COMPACT_ENV = "FLASH_ATTN_SM90_FWD_COMPACT_VARLEN"  # varlen on a grid of the real query blocks (off by default)
TALL_ENV = "FLASH_ATTN_SM90_FWD_TALL"  # the taller query tile where the tile table has one (d <= 64)
# GQA calls in packed tiles (a KV head's query heads share a tile's rows; plain consumers, one tile per CTA): "1"
# always, "0" never, "" where the tile table's rule says it pays (short queries).
PACK_ENV = "FLASH_ATTN_SM90_FWD_PACK_GQA"
# persistent CTAs' two Q buffers where they fit (d <= 128); "0": one, each block's Q loaded after the last one's
Q_DOUBLE_ENV = "FLASH_ATTN_SM90_FWD_Q_DOUBLE_BUFFER"
# persistent consumers' warpgroups do not meet at a tile's end (each stores its own rows; overlapped turns run on
# across tiles); "0": they meet at every tile's end
CROSS_TILE_ENV = "FLASH_ATTN_SM90_FWD_CROSS_TILE"
# plain consumers' two warpgroups exponentiate in turns; "0": whenever they are ready
EXP_TURNS_ENV = "FLASH_ATTN_SM90_FWD_EXP_TURNS"


def _path(force="0", overlap="0", persistent="0", tma_store="1", lazy="0", compact="0", tall="0", pack="0",
          q_double="1", cross_tile="1", exp_turns="1"):
    return {FORCE_ENV: force, OVERLAP_ENV: overlap, PERSISTENT_ENV: persistent, TMA_STORE_ENV: tma_store,
            LAZY_ENV: lazy, COMPACT_ENV: compact, TALL_ENV: tall, PACK_ENV: pack, Q_DOUBLE_ENV: q_double,
            CROSS_TILE_ENV: cross_tile, EXP_TURNS_ENV: exp_turns}


PATHS = {
    "sm90": _path(),
    "sm90 overlapped": _path(overlap="1"),
    "sm90 persistent": _path(persistent="1"),
    "sm90 persistent, no exponential turns": _path(persistent="1", exp_turns="0"),
    "sm90 overlapped persistent": _path(overlap="1", persistent="1"),
    "sm90 overlapped persistent, direct stores": _path(overlap="1", persistent="1", tma_store="0"),
    "sm90 overlapped persistent, one Q buffer": _path(overlap="1", persistent="1", q_double="0"),
    "sm90 overlapped persistent, warpgroups meet per tile": _path(overlap="1", persistent="1", cross_tile="0"),
    "sm90, lazy rescale": _path(lazy="1"),
    "sm90 overlapped, lazy rescale": _path(overlap="1", lazy="1"),
    "sm90 overlapped, compact varlen grid": _path(overlap="1", compact="1"),
    "sm90 persistent, tall query tile": _path(persistent="1", tall="1"),
    # every switch unset: what a call gets by default (the tile table's choices)
    "sm90, packed GQA": _path(pack="1"),
    "sm90, the table's choices": _path(overlap="", persistent="", tma_store="", lazy="", compact="", tall="", pack="",
                                       q_double="", cross_tile="", exp_turns=""),
    "sm80": _path(force="1"),
}


def _sm90_skip_reason():
    if DRYRUN:
        return "needs the real kernels"
    if not torch.cuda.is_available() or _ops.flash_attn_gpu is None:
        return "needs CUDA and the extension"
    if torch.cuda.get_device_capability() != (9, 0):
        return "needs an sm90 GPU"
    if 90 not in _checks.get_build_config().cuda_archs:
        return "built without sm90 kernels (FLASH_ATTN_CUDA_ARCHS without 90)"
    return None


_SM90_REASON = _sm90_skip_reason()
pytestmark = [requires_gpu, pytest.mark.skipif(_SM90_REASON is not None, reason=str(_SM90_REASON)),
              pytest.mark.usefixtures("kernel_backend")]


def test_kernel_arch_follows_the_switch(monkeypatch):
    monkeypatch.delenv(FORCE_ENV, raising=False)
    assert _ops.flash_attn_gpu.kernel_arch() == "sm90"
    monkeypatch.setenv(FORCE_ENV, "1")
    assert _ops.flash_attn_gpu.kernel_arch() == "sm80"
    monkeypatch.setenv(FORCE_ENV, "0")
    assert _ops.flash_attn_gpu.kernel_arch() == "sm90"


# (head dim, seqlen_q, seqlen_k, heads, heads_k, batch, causal, window): head dims of every sm90 bucket and some
# that pad to one; seqlens off the tile sizes, sq != sk both ways; MHA, GQA, MQA.
CASES = [
    (32, 257, 300, 4, 2, 2, True, (-1, -1)),
    (40, 113, 257, 4, 4, 1, False, (32, 16)),
    (64, 113, 257, 4, 4, 2, False, (-1, -1)),
    (64, 1023, 1023, 8, 2, 1, True, (-1, -1)),
    (80, 239, 512, 6, 3, 2, True, (-1, -1)),
    (96, 512, 239, 4, 1, 2, False, (-1, -1)),
    (96, 300, 300, 4, 4, 1, False, (64, 32)),
    (111, 257, 113, 2, 2, 3, True, (-1, -1)),
    (128, 113, 257, 4, 4, 2, False, (-1, -1)),
    (128, 1024, 1024, 8, 2, 2, True, (-1, -1)),
    (128, 2048, 700, 4, 4, 1, False, (200, 0)),
    (128, 700, 2048, 4, 2, 1, True, (-1, -1)),
    # more persistent slots (3 per head: query blocks 4 + 0, 3 + 1, then 2 alone) than an H100/H200 has SMs, so
    # persistent CTAs run different numbers of tiles, one of them a slot's single middle block
    (128, 640, 640, 16, 4, 4, False, (-1, -1)),
    (160, 333, 333, 4, 4, 2, False, (100, 100)),
    (192, 256, 1023, 4, 4, 2, False, (-1, -1)),
    (192, 1023, 256, 4, 2, 1, True, (-1, -1)),
    (224, 129, 129, 2, 1, 2, True, (-1, -1)),
    (256, 113, 257, 4, 4, 2, False, (-1, -1)),
    (256, 1000, 1000, 4, 4, 1, True, (-1, -1)),
    (256, 640, 512, 2, 2, 2, False, (128, 64)),
]


def _check_on_every_path(monkeypatch, run, ref, lp):
    """run() -> (out, lse) under each of PATHS' environments, checked against the reference (out, lse) pairs ref
    (float32) and lp (the inputs' precision) by the tolerance rule."""
    for path, env in PATHS.items():
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        out, lse = run()
        assert_close_to_ref(f"out ({path})", out, ref[0], lp[0])
        assert_close_to_ref(f"lse ({path})", lse, ref[1], lp[1])


def _check_every_path(monkeypatch, dtype, d, sq, sk, h, hk, b, causal, window, softcap=0.0, alibi_slopes=None):
    require_kernel(dtype, d)
    seed = d * 7919 + sq * 31 + sk
    q = _randn((b, sq, h, d), dtype, seed)
    k = _randn((b, sk, hk, d), dtype, seed + 1)
    v = _randn((b, sk, hk, d), dtype, seed + 2)
    mods = dict(window=window, softcap=softcap, alibi_slopes=alibi_slopes)
    _check_on_every_path(
        monkeypatch,
        lambda: flash_attn_func(q, k, v, causal=causal, window_size=window, softcap=softcap, alibi_slopes=alibi_slopes,
                                return_attn_probs=True)[:2],
        attention_ref(q, k, v, causal, **mods), attention_ref(q, k, v, causal, upcast=False, **mods))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("d,sq,sk,h,hk,b,causal,window", CASES)
def test_forward_both_paths(monkeypatch, dtype, d, sq, sk, h, hk, b, causal, window):
    _check_every_path(monkeypatch, dtype, d, sq, sk, h, hk, b, causal, window)


# Small shapes for the compute-sanitizer runs of tools/gpu_check.sh (memcheck, racecheck): every tile edge case
# (partial query and key tiles, empty causal rows, a window, GQA) in a few key blocks.
SMALL_CASES = [
    (32, 113, 257, 4, 2, 1, False, (-1, -1)),
    (64, 113, 257, 4, 2, 2, True, (-1, -1)),
    (128, 257, 113, 2, 2, 1, True, (-1, -1)),
    (128, 200, 300, 2, 1, 1, False, (40, 8)),
    (256, 129, 129, 2, 2, 1, False, (-1, -1)),
]


@pytest.mark.parametrize("d,sq,sk,h,hk,b,causal,window", SMALL_CASES)
def test_forward_small(monkeypatch, d, sq, sk, h, hk, b, causal, window):
    _check_every_path(monkeypatch, torch.bfloat16, d, sq, sk, h, hk, b, causal, window)


# Score modifiers (softcap, ALiBi with (h,) and (b, h) slopes, both together) on odd shapes, causal or windowed.
SCORE_MOD_CASES = [
    # (head dim, seqlen_q, seqlen_k, heads, heads_k, batch, causal, window, softcap, alibi: None / "h" / "bh")
    (64, 257, 113, 4, 2, 2, False, (-1, -1), 30.0, None),
    (128, 300, 700, 4, 4, 2, True, (-1, -1), 0.0, "h"),
    (128, 513, 513, 4, 1, 1, False, (100, 20), 15.0, "bh"),
    (256, 200, 333, 2, 2, 2, True, (-1, -1), 50.0, "h"),
]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("d,sq,sk,h,hk,b,causal,window,softcap,alibi", SCORE_MOD_CASES)
def test_score_mods(monkeypatch, dtype, d, sq, sk, h, hk, b, causal, window, softcap, alibi):
    slopes = None
    if alibi is not None:
        gen = torch.Generator().manual_seed(d + sq)
        shape = (h,) if alibi == "h" else (b, h)
        slopes = (torch.rand(shape, generator=gen) * 0.3 + 0.01).to("cuda")
    _check_every_path(monkeypatch, dtype, d, sq, sk, h, hk, b, causal, window, softcap, slopes)


# Varlen on every path: lengths off the tile sizes, empty query and key sequences, GQA, causal and windowed, an
# understated max_seqlen_q (every query block must still be computed, once) and more than 32 sequences (with
# FLASH_ATTN_SM90_FWD_COMPACT_VARLEN=1 the one-tile-per-CTA scheduler lists the real blocks of up to 32, longest
# first; more keep the max_seqlen_q grid). The packed k/v run on past the last
# sequence into NaN rows (a caller's buffer may hold anything there), which must not reach the output.
VARLEN_CASES = [
    # (head dim, seqlens_q, seqlens_k, heads, heads_k, causal, window, max_seqlen_q: None = the longest)
    (64, [17, 0, 300, 1, 129], [17, 5, 300, 257, 0], 4, 2, False, (-1, -1), None),
    (128, [113, 513, 128], [257, 513, 100], 4, 1, True, (-1, -1), None),
    (128, [1000, 3], [700, 900], 2, 2, False, (64, 16), 1),
    (256, [200, 129], [333, 64], 2, 2, True, (-1, -1), None),
    (128, [(37 * i) % 290 for i in range(41)], [(53 * i + 9) % 310 for i in range(41)], 2, 1, True, (-1, -1), 200),
]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("d,seqlens_q,seqlens_k,h,hk,causal,window,max_seqlen_q", VARLEN_CASES)
def test_varlen(monkeypatch, dtype, d, seqlens_q, seqlens_k, h, hk, causal, window, max_seqlen_q):
    require_kernel(dtype, d)
    cu_q = [0] + list(itertools.accumulate(seqlens_q))
    cu_k = [0] + list(itertools.accumulate(seqlens_k))
    seed = d * 131 + cu_q[-1]
    tail = 37  # rows of k/v past the last sequence
    q = _randn((cu_q[-1], h, d), dtype, seed)
    k = _randn((cu_k[-1] + tail, hk, d), dtype, seed + 1)
    v = _randn((cu_k[-1] + tail, hk, d), dtype, seed + 2)
    k[cu_k[-1]:] = float("nan")
    v[cu_k[-1]:] = float("nan")
    keys = slice(0, cu_k[-1])
    cu_q_t, cu_k_t = (torch.tensor(cu, dtype=torch.int32, device=q.device) for cu in (cu_q, cu_k))
    max_q = max(seqlens_q) if max_seqlen_q is None else max_seqlen_q
    _check_on_every_path(
        monkeypatch,
        lambda: flash_attn_varlen_func(q, k, v, cu_q_t, cu_k_t, max_q, max(seqlens_k), causal=causal,
                                       window_size=window, return_attn_probs=True)[:2],
        attention_varlen_ref(q, k[keys], v[keys], cu_q, cu_k, causal, window=window),
        attention_varlen_ref(q, k[keys], v[keys], cu_q, cu_k, causal, upcast=False, window=window))


# KV-cache prefill (queries long enough for the full forward, not the split-KV kernel) on every path: cache_seqlens with
# keys appended first, cache_batch_idx, cache_leftpad, empty caches; the cache slots past each sequence's keys hold NaN,
# which must not reach the output.
KVCACHE_CASES = [
    # (head dim, batch, seqlen_q, capacity, heads, heads_k, cache_seqlens, batch_idx, leftpad, new keys, causal,
    #  window)
    (128, 3, 200, 700, 4, 2, [300, 0, 600], None, None, 50, True, (-1, -1)),
    (64, 3, 129, 513, 4, 4, [513, 77, 300], [2, 0, 3], [5, 0, 100], 0, False, (-1, -1)),
    (256, 2, 300, 400, 2, 1, [257, 399], None, [0, 30], 0, True, (64, 0)),
]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("d,b,sq,capacity,h,hk,seqlens,batch_idx,leftpad,new,causal,window", KVCACHE_CASES)
def test_kvcache_prefill(monkeypatch, dtype, d, b, sq, capacity, h, hk, seqlens, batch_idx, leftpad, new, causal,
                         window):
    require_kernel(dtype, d)
    seed = d * 17 + sq
    rows = b if batch_idx is None else max(batch_idx) + 1
    q = _randn((b, sq, h, d), dtype, seed)
    k_cache = _randn((rows, capacity, hk, d), dtype, seed + 1)
    v_cache = _randn((rows, capacity, hk, d), dtype, seed + 2)
    for i in range(b):  # slots past each sequence's keys (after the append) hold NaN
        row = i if batch_idx is None else batch_idx[i]
        k_cache[row, seqlens[i] + new:] = float("nan")
        v_cache[row, seqlens[i] + new:] = float("nan")
    k_new = _randn((b, new, hk, d), dtype, seed + 3) if new else None
    v_new = _randn((b, new, hk, d), dtype, seed + 4) if new else None
    as_tensor = (lambda x: None if x is None else torch.tensor(x, dtype=torch.int32, device=q.device))
    args = dict(cache_seqlens=as_tensor(seqlens), cache_batch_idx=as_tensor(batch_idx),
                cache_leftpad=as_tensor(leftpad), causal=causal, window_size=window)
    ref_args = dict(cache_seqlens=seqlens, cache_batch_idx=batch_idx, cache_leftpad=leftpad, causal=causal,
                    window=window)
    _check_on_every_path(
        monkeypatch,
        lambda: flash_attn_with_kvcache(q, k_cache.clone(), v_cache.clone(), k_new, v_new, return_softmax_lse=True,
                                        **args),
        kvcache_ref(q, k_cache, v_cache, k_new, v_new, **ref_args)[:2],
        kvcache_ref(q, k_cache, v_cache, k_new, v_new, upcast=False, **ref_args)[:2])


# Paged KV-cache prefill on every path: a shuffled pool of pages with spare ones, keys appended first, NaN in every slot
# past a sequence's keys and in the unused pages; checked against the same cache read back densely. sm90 loads a key
# block at a time where the key tile divides the page size, else in chunks of 16 rows.
PAGED_CASES = [
    # (head dim, batch, seqlen_q, pages per sequence, page size, heads, heads_k, cache_seqlens, new keys, causal)
    (128, 3, 300, 3, 256, 4, 2, [700, 0, 513], 40, True),
    (64, 2, 129, 2, 128, 4, 4, [255, 100], 0, False),
    (128, 2, 200, 4, 64, 2, 1, [250, 17], 0, True),  # pages smaller than the key tile: chunks
    (64, 2, 77, 3, 48, 4, 2, [144, 50], 0, True),  # a full cache whose last key block runs past the block table
    (128, 1, 33, 8, 16, 2, 2, [111], 16, False),  # the smallest pages
    (256, 2, 130, 2, 256, 2, 2, [400, 97], 16, False),  # d 256's key tile of 80 does not divide 256: chunks
]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("d,b,sq,pages,page,h,hk,seqlens,new,causal", PAGED_CASES)
def test_kvcache_paged_prefill(monkeypatch, dtype, d, b, sq, pages, page, h, hk, seqlens, new, causal):
    require_kernel(dtype, d)
    seed = d * 13 + sq
    capacity = pages * page
    q = _randn((b, sq, h, d), dtype, seed)
    k_cache = _randn((b, capacity, hk, d), dtype, seed + 1)
    v_cache = _randn((b, capacity, hk, d), dtype, seed + 2)
    for i in range(b):
        k_cache[i, seqlens[i] + new:] = float("nan")
        v_cache[i, seqlens[i] + new:] = float("nan")
    k_new = _randn((b, new, hk, d), dtype, seed + 3) if new else None
    v_new = _randn((b, new, hk, d), dtype, seed + 4) if new else None
    ref_args = dict(cache_seqlens=seqlens, causal=causal)
    ref = kvcache_ref(q, k_cache, v_cache, k_new, v_new, **ref_args)[:2]
    lp = kvcache_ref(q, k_cache, v_cache, k_new, v_new, upcast=False, **ref_args)[:2]
    pool = b * pages + 3
    table = torch.randperm(pool, generator=torch.Generator().manual_seed(seed))[: b * pages]
    table = table.reshape(b, pages).to(device=q.device, dtype=torch.int32)
    k_pool = torch.full((pool, page, hk, d), float("nan"), dtype=dtype, device=q.device)
    v_pool = torch.full((pool, page, hk, d), float("nan"), dtype=dtype, device=q.device)
    k_pool[table.flatten().long()] = k_cache.reshape(-1, page, hk, d)
    v_pool[table.flatten().long()] = v_cache.reshape(-1, page, hk, d)
    seqlens_t = torch.tensor(seqlens, dtype=torch.int32, device=q.device)
    _check_on_every_path(
        monkeypatch,
        lambda: flash_attn_with_kvcache(q, k_pool.clone(), v_pool.clone(), k_new, v_new, cache_seqlens=seqlens_t,
                                        block_table=table, causal=causal, return_softmax_lse=True),
        ref, lp)


# Short GQA queries (more than the split-KV kernel's 64 packed rows), which the sm90 forward packs ("packed GQA" and
# "the table's choices" paths): a KV head's query heads share a tile's rows, Q gathered row by row and O stored row
# by row. Odd lengths, every group
# size up to MQA, causal (sq < sk and sq > sk), a window, softcap and per-(batch, head) ALiBi slopes (a tile mixes
# heads, so each row has its own), dense and varlen.
PACKED_CASES = [
    # (head dim, seqlen_q, seqlen_k, heads, heads_k, batch, causal, window, softcap, alibi)
    (128, 33, 1000, 16, 4, 2, True, (-1, -1), 0.0, False),
    (128, 17, 257, 32, 4, 1, False, (-1, -1), 0.0, True),
    (64, 40, 300, 8, 1, 3, False, (64, 8), 0.0, False),
    (256, 23, 513, 12, 2, 2, True, (-1, -1), 30.0, True),
    (96, 50, 40, 6, 2, 1, True, (-1, -1), 0.0, False),
    (192, 65, 129, 8, 2, 2, False, (16, 16), 0.0, True),
]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("d,sq,sk,h,hk,b,causal,window,softcap,alibi", PACKED_CASES)
def test_packed_gqa(monkeypatch, dtype, d, sq, sk, h, hk, b, causal, window, softcap, alibi):
    slopes = None
    if alibi:
        gen = torch.Generator().manual_seed(d + sq)
        slopes = (torch.rand((b, h), generator=gen) * 0.3 + 0.01).to("cuda")
    _check_every_path(monkeypatch, dtype, d, sq, sk, h, hk, b, causal, window, softcap, slopes)


@pytest.mark.parametrize("causal", [False, True])
def test_packed_gqa_varlen(monkeypatch, causal):
    dtype, d, h, hk = torch.bfloat16, 128, 8, 2
    require_kernel(dtype, d)
    seqlens_q, seqlens_k = [20, 0, 45, 33, 1], [300, 7, 45, 129, 64]
    cu_q = [0] + list(itertools.accumulate(seqlens_q))
    cu_k = [0] + list(itertools.accumulate(seqlens_k))
    q = _randn((cu_q[-1], h, d), dtype, 71)
    k = _randn((cu_k[-1], hk, d), dtype, 72)
    v = _randn((cu_k[-1], hk, d), dtype, 73)
    cu_q_t, cu_k_t = (torch.tensor(cu, dtype=torch.int32, device=q.device) for cu in (cu_q, cu_k))
    _check_on_every_path(
        monkeypatch,
        lambda: flash_attn_varlen_func(q, k, v, cu_q_t, cu_k_t, max(seqlens_q), max(seqlens_k), causal=causal,
                                       return_attn_probs=True)[:2],
        attention_varlen_ref(q, k, v, cu_q, cu_k, causal),
        attention_varlen_ref(q, k, v, cu_q, cu_k, causal, upcast=False))


def test_strided_qkv_slices(monkeypatch):
    """q/k/v slices of a packed qkv tensor (head stride 3d, row stride 3hd): TMA-addressable, so sm90 serves them."""
    monkeypatch.delenv(FORCE_ENV, raising=False)
    dtype, d, b, s, h = torch.bfloat16, 128, 2, 333, 4
    require_kernel(dtype, d)
    qkv = _randn((b, s, 3, h, d), dtype, 4242)
    q, k, v = qkv.unbind(2)
    out, lse, _ = flash_attn_func(q, k, v, causal=True, return_attn_probs=True)
    ref_out, ref_lse = attention_ref(q, k, v, True)
    lp_out, lp_lse = attention_ref(q, k, v, True, upcast=False)
    assert_close_to_ref("out", out, ref_out, lp_out)
    assert_close_to_ref("lse", lse, ref_lse, lp_lse)
