"""Forward kernels on the GPU against the float32 reference (tolerance rule in reference.py).

Skipped without CUDA or without the built extension; a case whose kernel was not built is skipped with the
reason. The parameter product is sampled deterministically (seeded) to keep the suite short; the long cases
carry the `slow` marker (run with -m slow). Outputs are poisoned (NaN-filled out buffer handed to the kernel
via FLASH_ATTN_DEBUG_POISON=1) unless a test says otherwise.
"""

import itertools
import math
import random
import zlib

import pytest
import torch

from flash_attn import (
    _checks,
    _ops,
    flash_attn_func,
    flash_attn_kvpacked_func,
    flash_attn_qkvpacked_func,
    flash_attn_varlen_func,
    flash_attn_varlen_kvpacked_func,
    flash_attn_varlen_qkvpacked_func,
)
from helpers import (
    DEVICE,
    DRYRUN,
    DTYPE_NAME,
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
SEQLENS = [1, 17, 113, 239, 256, 512, 1023, 2048]
SEQ_PAIRS = [(s, s) for s in SEQLENS] + [
    (1, 239), (17, 2048), (113, 1023), (239, 512), (256, 2048),  # seqlen_q < seqlen_k
    (239, 1), (113, 17), (512, 239), (1023, 256), (2048, 113),  # seqlen_q > seqlen_k (causal: empty rows)
]
HEADS = [(4, 4), (8, 1), (8, 2), (6, 3), (2, 2)]  # (nheads, nheads_k): MHA, MQA, GQA


def _check_dense(out, lse, q, k, v, causal, softmax_scale=None):
    ref_out, ref_lse = attention_ref(q, k, v, causal, softmax_scale)
    lp_out, lp_lse = attention_ref(q, k, v, causal, softmax_scale, upcast=False)
    assert out.dtype == q.dtype and out.shape == q.shape
    assert lse.dtype == torch.float32 and lse.shape == (q.shape[0], q.shape[2], q.shape[1])
    assert_close_to_ref("out", out, ref_out, lp_out)
    assert_close_to_ref("lse", lse, ref_lse, lp_lse)


def _check_varlen(out, lse, q, k, v, cu_q, cu_k, causal, softmax_scale=None):
    ref_out, ref_lse = attention_varlen_ref(q, k, v, cu_q, cu_k, causal, softmax_scale)
    lp_out, lp_lse = attention_varlen_ref(q, k, v, cu_q, cu_k, causal, softmax_scale, upcast=False)
    assert out.dtype == q.dtype and out.shape == q.shape
    assert lse.dtype == torch.float32 and lse.shape == (q.shape[1], q.shape[0])
    assert_close_to_ref("out", out, ref_out, lp_out)
    assert_close_to_ref("lse", lse, ref_lse, lp_lse)


# ----------------------------------------------------------------------------------------------------------
# Dense: sampled product
# ----------------------------------------------------------------------------------------------------------


def _dense_cases():
    rng = random.Random(20240603)
    cases = []
    for d, dtype, causal in itertools.product(HEAD_DIMS, DTYPES, (False, True)):  # every head dim x dtype x causal
        sq, sk = rng.choice(SEQ_PAIRS)
        h, hk = rng.choice(HEADS)
        cases.append((rng.choice((1, 2, 3)), sq, sk, h, hk, d, dtype, causal))
    for (sq, sk), causal in itertools.product(SEQ_PAIRS, (False, True)):  # every seqlen pair x causal
        h, hk = rng.choice(HEADS)
        cases.append((rng.choice((1, 2, 3)), sq, sk, h, hk, rng.choice(HEAD_DIMS), rng.choice(DTYPES), causal))
    # keep the reference's (b, h, sq, sk) score tensors modest
    return [(1 if c[1] * c[2] >= 1 << 20 else c[0], *c[1:]) for c in cases]


def _dense_id(c):
    b, sq, sk, h, hk, d, dtype, causal = c
    return f"b{b}-sq{sq}-sk{sk}-h{h}-hk{hk}-d{d}-{DTYPE_NAME[dtype]}-{'causal' if causal else 'full'}"


DENSE_CASES = _dense_cases()


@pytest.mark.parametrize("case", DENSE_CASES, ids=[_dense_id(c) for c in DENSE_CASES])
def test_flash_attn_func(case):
    b, sq, sk, h, hk, d, dtype, causal = case
    require_kernel(dtype, d)
    seed = zlib.crc32(_dense_id(case).encode()) % (1 << 30)
    q = _randn((b, sq, h, d), dtype, seed)
    k = _randn((b, sk, hk, d), dtype, seed + 1)
    v = _randn((b, sk, hk, d), dtype, seed + 2)
    out, lse, probs = flash_attn_func(q, k, v, causal=causal, return_attn_probs=True)
    assert probs.shape == (0,)  # S_dmask only exists with dropout
    _check_dense(out, lse, q, k, v, causal)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_scale_and_determinism(dtype):
    d = built_head_dim()
    require_kernel(dtype, d)
    q, k, v = (_randn((2, 113, 4, d), dtype, s) for s in (1, 2, 3))
    out = flash_attn_func(q, k, v, 0.0, 0.37, True)
    ref_out, ref_lse = attention_ref(q, k, v, True, 0.37)
    lp_out, _ = attention_ref(q, k, v, True, 0.37, upcast=False)
    assert_close_to_ref("out", out, ref_out, lp_out)
    assert torch.equal(out, flash_attn_func(q, k, v, 0.0, 0.37, True))  # forward is deterministic


@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_without_keys(dtype):
    d = built_head_dim()
    require_kernel(dtype, d)
    b, sq, sk, h = 2, 239, 113, 4
    q, k, v = _randn((b, sq, h, d), dtype, 4), _randn((b, sk, h, d), dtype, 5), _randn((b, sk, h, d), dtype, 6)
    out, lse, _ = flash_attn_func(q, k, v, causal=True, return_attn_probs=True)
    n_empty = sq - sk  # query rows i < sq - sk see no key (bottom-right alignment)
    assert torch.all(out[:, :n_empty] == 0)
    assert torch.all(torch.isposinf(lse[:, :, :n_empty]))
    assert torch.isfinite(lse[:, :, n_empty:]).all() and not torch.isnan(out).any()


@pytest.mark.parametrize("sq,sk", [(17, 0), (0, 17), (0, 0)])
def test_empty_sequences_dense(sq, sk):
    d, dtype = built_head_dim(), built_dtype()
    q, k, v = _randn((2, sq, 4, d), dtype, 7), _randn((2, sk, 2, d), dtype, 8), _randn((2, sk, 2, d), dtype, 9)
    out, lse, _ = flash_attn_func(q, k, v, causal=True, return_attn_probs=True)
    assert out.shape == q.shape and lse.shape == (2, 4, sq)
    assert torch.all(out == 0) and torch.all(torch.isposinf(lse))


# ----------------------------------------------------------------------------------------------------------
# Packed entry points
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("d", [59, 128])
@pytest.mark.parametrize("dtype", DTYPES)
def test_qkvpacked(dtype, d, causal):
    require_kernel(dtype, d)
    qkv = _randn((2, 239, 3, 4, d), dtype, 10)
    out, lse, _ = flash_attn_qkvpacked_func(qkv, causal=causal, return_attn_probs=True)
    _check_dense(out, lse, qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], causal)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("d", [40, 96])
@pytest.mark.parametrize("dtype", DTYPES)
def test_kvpacked(dtype, d, causal):
    require_kernel(dtype, d)
    q, kv = _randn((2, 113, 8, d), dtype, 11), _randn((2, 256, 2, 2, d), dtype, 12)
    out, lse, _ = flash_attn_kvpacked_func(q, kv, causal=causal, return_attn_probs=True)
    _check_dense(out, lse, q, kv[:, :, 0], kv[:, :, 1], causal)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("d", [64, 111])
@pytest.mark.parametrize("dtype", DTYPES)
def test_varlen_qkvpacked(dtype, d, causal):
    require_kernel(dtype, d)
    seqlens = [17, 0, 239, 1, 113]
    cu = _cu(seqlens)
    qkv = _randn((sum(seqlens), 3, 4, d), dtype, 13)
    out, lse, _ = flash_attn_varlen_qkvpacked_func(qkv, cu, max(seqlens), causal=causal, return_attn_probs=True)
    _check_varlen(out, lse, qkv[:, 0], qkv[:, 1], qkv[:, 2], cu, cu, causal)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("d", [32, 160])
@pytest.mark.parametrize("dtype", DTYPES)
def test_varlen_kvpacked(dtype, d, causal):
    require_kernel(dtype, d)
    seqlens_q, seqlens_k = [113, 1, 0, 256], [17, 239, 5, 512]
    cu_q, cu_k = _cu(seqlens_q), _cu(seqlens_k)
    q, kv = _randn((sum(seqlens_q), 8, d), dtype, 14), _randn((sum(seqlens_k), 2, 1, d), dtype, 15)
    out, lse, _ = flash_attn_varlen_kvpacked_func(q, kv, cu_q, cu_k, max(seqlens_q), max(seqlens_k), causal=causal,
                                                  return_attn_probs=True)
    _check_varlen(out, lse, q, kv[:, 0], kv[:, 1], cu_q, cu_k, causal)


# ----------------------------------------------------------------------------------------------------------
# Varlen: sampled
# ----------------------------------------------------------------------------------------------------------

VARLEN_SEQLENS = [
    ([17, 0, 113, 1, 239], [17, 5, 113, 300, 0]),  # zero-length q and k sequences
    ([1] * 8, [1023, 17, 0, 512, 1, 2048, 239, 256]),  # decode-like
    ([512, 256], [256, 512]),  # seqlen_q != seqlen_k both ways
    ([2048], [2048]),
    ([0, 0, 3], [0, 4, 0]),
    ([113] * 6, [113] * 6),
]


def _varlen_cases():
    rng = random.Random(7)
    cases = []
    for i, ((sq, sk), causal) in enumerate(itertools.product(VARLEN_SEQLENS, (False, True))):
        h, hk = rng.choice(HEADS)
        max_kind = ("int", "tensor", "upper")[i % 3]
        cases.append((i, sq, sk, h, hk, rng.choice(HEAD_DIMS), DTYPES[i % 2], causal, max_kind))
    return cases


VARLEN_CASES = _varlen_cases()


def _varlen_id(c):
    i, sq, sk, h, hk, d, dtype, causal, max_kind = c
    return f"set{i // 2}-h{h}-hk{hk}-d{d}-{DTYPE_NAME[dtype]}-{'causal' if causal else 'full'}-max_{max_kind}"


@pytest.mark.parametrize("case", VARLEN_CASES, ids=[_varlen_id(c) for c in VARLEN_CASES])
def test_flash_attn_varlen_func(case):
    i, seqlens_q, seqlens_k, h, hk, d, dtype, causal, max_kind = case
    require_kernel(dtype, d)
    cu_q, cu_k = _cu(seqlens_q), _cu(seqlens_k)
    q = _randn((sum(seqlens_q), h, d), dtype, 100 + i)
    k = _randn((sum(seqlens_k), hk, d), dtype, 200 + i)
    v = _randn((sum(seqlens_k), hk, d), dtype, 300 + i)
    max_q, max_k = max(seqlens_q), max(seqlens_k)
    if max_kind == "tensor":  # transformers' position_ids path: 0-d int32 CUDA tensors
        max_q = torch.tensor(max_q, dtype=torch.int32, device=DEVICE)
        max_k = torch.tensor(max_k, dtype=torch.int32, device=DEVICE)
    elif max_kind == "upper":  # an upper bound is accepted
        max_q, max_k = max_q + 13, max_k + 13
    out, lse, _ = flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, causal=causal, return_attn_probs=True)
    _check_varlen(out, lse, q, k, v, cu_q, cu_k, causal)


def test_varlen_all_keys_empty():
    d, dtype = built_head_dim(), built_dtype()
    cu_q, cu_k = _cu([3, 4]), _cu([0, 0])
    q, k = _randn((7, 2, d), dtype, 16), _randn((0, 2, d), dtype, 17)
    out, lse, _ = flash_attn_varlen_func(q, k, k, cu_q, cu_k, 4, 0, return_attn_probs=True)
    assert torch.all(out == 0) and torch.all(torch.isposinf(lse))


@pytest.mark.parametrize("causal", [False, True])
def test_batch_beyond_grid_limit(causal):
    """More sequences than CUDA's 65535 limit on grid.y/z: dense and varlen, against a dense reference."""
    d, dtype = built_head_dim(), built_dtype()
    b, s, h, hk = 70000, 3, 2, 1
    q, k, v = (_randn((b, s, heads, d), dtype, seed) for heads, seed in ((h, 31), (hk, 32), (hk, 33)))
    out, lse, _ = flash_attn_func(q, k, v, causal=causal, return_attn_probs=True)
    _check_dense(out, lse, q, k, v, causal)
    cu = torch.arange(0, b + 1, device=DEVICE, dtype=torch.int32) * s
    out_v, lse_v, _ = flash_attn_varlen_func(q.view(-1, h, d), k.view(-1, hk, d), v.view(-1, hk, d), cu, cu, s, s,
                                             causal=causal, return_attn_probs=True)
    assert torch.equal(out_v.view(b, s, h, d), out)
    assert torch.equal(lse_v.view(h, b, s).permute(1, 0, 2), lse)


# ----------------------------------------------------------------------------------------------------------
# Layout: non-contiguous inputs
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [64, 59, 128])
@pytest.mark.parametrize("dtype", DTYPES)
def test_noncontiguous_dense(dtype, d):
    require_kernel(dtype, d)
    b, sq, sk, h, hk = 2, 113, 239, 8, 2
    q = _randn((b, h, sq, d), dtype, 18).transpose(1, 2)  # transformers: (b, h, s, d) -> (b, s, h, d) view
    k = _randn((b, sk, hk, d + 24), dtype, 19)[..., :d]  # slice of a wider tensor
    v = _randn((b, sk, 3, hk, d), dtype, 20)[:, :, 2]  # slice of a packed projection
    assert not q.is_contiguous() and not k.is_contiguous() and not v.is_contiguous()
    out = flash_attn_func(q, k, v, causal=True)
    ref_out, _ = attention_ref(q, k, v, True)
    lp_out, _ = attention_ref(q, k, v, True, upcast=False)
    assert_close_to_ref("out", out, ref_out, lp_out)
    v2 = _randn((b, sk, d, hk), dtype, 21).transpose(-1, -2)  # last dim not contiguous: the wrapper copies
    out = flash_attn_func(q, k, v2)
    ref_out, _ = attention_ref(q, k, v2)
    lp_out, _ = attention_ref(q, k, v2, upcast=False)
    assert_close_to_ref("out", out, ref_out, lp_out)


@pytest.mark.parametrize("dtype", DTYPES)
def test_noncontiguous_varlen(dtype):
    d = built_head_dim()
    require_kernel(dtype, d)
    seqlens_q, seqlens_k = [17, 113, 0], [239, 1, 17]
    cu_q, cu_k = _cu(seqlens_q), _cu(seqlens_k)
    q = _randn((sum(seqlens_q), 4, d + 8), dtype, 22)[..., :d]
    k = _randn((2, sum(seqlens_k), d), dtype, 23).transpose(0, 1)
    v = _randn((sum(seqlens_k), 2, 2, d), dtype, 24)[:, :, 1]
    out = flash_attn_varlen_func(q, k, v, cu_q, cu_k, 113, 239, causal=True)
    ref_out, _ = attention_varlen_ref(q, k, v, cu_q, cu_k, True)
    lp_out, _ = attention_varlen_ref(q, k, v, cu_q, cu_k, True, upcast=False)
    assert_close_to_ref("out", out, ref_out, lp_out)


# ----------------------------------------------------------------------------------------------------------
# Extension contract: given out buffer is written; default allocation path
# ----------------------------------------------------------------------------------------------------------


@skip_in_dryrun
@pytest.mark.parametrize("causal", [False, True])
def test_extension_writes_every_output_element(causal):
    from flash_attn.flash_attn_interface import flash_attn_gpu

    d, dtype = built_head_dim(), built_dtype()
    q, k, v = _randn((2, 239, 4, d), dtype, 25), _randn((2, 113, 2, d), dtype, 26), _randn((2, 113, 2, d), dtype, 27)
    out = torch.full_like(q, float("nan"))
    res = flash_attn_gpu.fwd(q, k, v, out, None, 0.0, 1 / math.sqrt(d), causal, -1, -1, 0.0, False, None)
    o, lse, s_dmask, rng_state = res
    assert not torch.isnan(out).any() and torch.equal(o, out)
    assert lse.shape == (2, 4, 239) and lse.dtype == torch.float32 and not torch.isnan(lse).any()
    assert s_dmask.shape == (0,) and rng_state.shape == (2,) and rng_state.dtype == torch.int64
    _check_dense(o, lse, q, k, v, causal)

    seqlens_q, seqlens_k = [17, 0, 239], [113, 5, 0]
    cu_q, cu_k = _cu(seqlens_q), _cu(seqlens_k)
    q, k, v = q.reshape(-1, 4, d)[:256], k.reshape(-1, 2, d)[:118], v.reshape(-1, 2, d)[:118]
    out = torch.full_like(q, float("nan"))
    o, lse, _, _ = flash_attn_gpu.varlen_fwd(q, k, v, out, cu_q, cu_k, None, None, None, None, 239, 113, 0.0,
                                             1 / math.sqrt(d), False, causal, -1, -1, 0.0, False, None)
    assert not torch.isnan(out).any() and torch.equal(o, out)
    _check_varlen(o, lse, q, k, v, cu_q, cu_k, causal)


@skip_in_dryrun
def test_default_allocation_matches_poisoned(monkeypatch):
    d, dtype = built_head_dim(), built_dtype()
    q, k, v = (_randn((2, 256, 4, d), dtype, s) for s in (28, 29, 30))
    poisoned = flash_attn_func(q, k, v, causal=True)
    monkeypatch.delenv(_ops.POISON_ENV)
    assert torch.equal(flash_attn_func(q, k, v, causal=True), poisoned)


def test_unbuilt_kernel_raises():
    if DRYRUN:
        pytest.skip("needs the real build config")
    cfg = _checks.get_build_config()
    missing = [d for d in _checks.HEADDIM_BUCKETS if d not in cfg.headdims]
    if not missing or not cfg.dtypes:
        pytest.skip("every head dim is built")
    dtype = torch.bfloat16 if "bf16" in cfg.dtypes else torch.float16
    q = _randn((1, 8, 2, missing[0]), dtype, 31)
    with pytest.raises(RuntimeError, match="FLASH_ATTN_HEADDIMS"):
        flash_attn_func(q, q.clone(), q.clone())


# ----------------------------------------------------------------------------------------------------------
# torch.compile
# ----------------------------------------------------------------------------------------------------------

COMPILE_BACKEND = "aot_eager" if DRYRUN else "inductor"


def test_compile_fullgraph():
    torch._dynamo.reset()
    d, dtype = built_head_dim(), built_dtype()
    q, k, v = _randn((2, 113, 8, d), dtype, 32), _randn((2, 239, 2, d), dtype, 33), _randn((2, 239, 2, d), dtype, 34)

    def dense(q, k, v):
        return flash_attn_func(q, k, v, causal=True) * 2

    compiled = torch.compile(dense, fullgraph=True, backend=COMPILE_BACKEND)
    assert torch.equal(compiled(q, k, v), dense(q, k, v))

    seqlens = [17, 0, 96]
    cu = _cu(seqlens)
    qv, kv_, vv = q.reshape(-1, 8, d)[:113], k.reshape(-1, 2, d)[:113], v.reshape(-1, 2, d)[:113]

    def varlen(q, k, v, cu):
        return flash_attn_varlen_func(q, k, v, cu, cu, 96, 96, causal=True)

    compiled = torch.compile(varlen, fullgraph=True, backend=COMPILE_BACKEND)
    assert torch.equal(compiled(qv, kv_, vv, cu), varlen(qv, kv_, vv, cu))


# ----------------------------------------------------------------------------------------------------------
# Slow tier
# ----------------------------------------------------------------------------------------------------------


@skip_in_dryrun
@pytest.mark.slow
def test_more_than_2_31_elements():
    """64-bit offsets: q, k, v and out hold > 2^31 elements each (about 4.3 GB apiece in bf16)."""
    dtype = built_dtype()
    d = 128
    require_kernel(dtype, d)
    s, h = 128, 8
    b = (1 << 31) // (s * h * d) + 2
    q = torch.randn((b, s, h, d), device=DEVICE, dtype=dtype)
    k = torch.randn((b, s, h, d), device=DEVICE, dtype=dtype)
    v = torch.randn((b, s, h, d), device=DEVICE, dtype=dtype)
    assert q.numel() > 1 << 31
    out, lse, _ = flash_attn_func(q, k, v, causal=True, return_attn_probs=True)
    for idx in (slice(0, 1), slice(b - 2, b)):  # first batch and the last ones (beyond 2^31 elements)
        _check_dense(out[idx], lse[idx], q[idx], k[idx], v[idx], True)
    del out, lse
    cu = torch.arange(0, b + 1, device=DEVICE, dtype=torch.int32) * s
    out, lse, _ = flash_attn_varlen_func(q.view(-1, h, d), k.view(-1, h, d), v.view(-1, h, d), cu, cu, s, s,
                                         causal=True, return_attn_probs=True)
    tail = slice((b - 2) * s, b * s)
    _check_varlen(out[tail], lse[:, tail], q.view(-1, h, d)[tail], k.view(-1, h, d)[tail], v.view(-1, h, d)[tail],
                  [0, s, 2 * s], [0, s, 2 * s], True)
