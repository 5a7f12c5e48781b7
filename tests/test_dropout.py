"""Dropout: the keep mask comes back in S_dmask (return_attn_probs; dropped entries negated), the output and
gradients match the float32 reference under that mask (also for the call without S_dmask, which runs its own
copy of the kernel loop, and combined with causal, window and ALiBi), the kept fraction matches the quantised
keep probability, runs are reproducible from torch's seed, and dropout_p = 0 is the plain path. The kernels draw
the mask from Philox keyed by torch's CUDA generator (csrc/flash/dropout.h)."""

import math

import pytest
import torch

from flash_attn import flash_attn_func, flash_attn_varlen_func
from helpers import alibi_slopes, assert_attention_close, assert_grads_close, attention_inputs, built_head_dim
from helpers import require_kernel, requires_gpu, skip_in_dryrun
from helpers import cu_seqlens as _cu
from helpers import randn as _randn
from reference import assert_close_to_ref, attention_ref

# skip_in_dryrun: the reference launcher has no dropout
pytestmark = [requires_gpu, skip_in_dryrun, pytest.mark.usefixtures("kernel_backend")]

DTYPES = [torch.float16, torch.bfloat16]


def keep_probability(p: float) -> float:
    """The kernels keep a score iff a random byte <= floor((1 - p) * 255) (API.md)."""
    return (math.floor((1 - p) * 255) + 1) / 256


def kept_mask(s_dmask: torch.Tensor, sq: int, sk: int) -> torch.Tensor:
    return ~torch.signbit(s_dmask[:, :, :sq, :sk])  # -0.0 (a dropped zero) counts as dropped


@pytest.mark.parametrize("p", [0.25, 0.5, 0.1])
def test_kept_fraction(p):
    dtype = torch.bfloat16
    d = built_head_dim()
    require_kernel(dtype, d)
    b, s, h = 2, 1024, 4  # 8.4 M entries
    q, k, v = (_randn((b, s, h, d), dtype, seed) for seed in (1, 2, 3))
    torch.manual_seed(0)
    _, _, s_dmask = flash_attn_func(q, k, v, dropout_p=p, return_attn_probs=True)
    assert s_dmask.shape == (b, h, s, s) and s_dmask.dtype == dtype
    kept = kept_mask(s_dmask, s, s).float()
    n, expected = kept.numel(), keep_probability(p)
    sigma = math.sqrt(expected * (1 - expected) / n)
    assert abs(kept.mean().item() - expected) <= 5 * sigma
    # No structure: every query row, key column and head keeps the same rate. Each group's mean is binomial,
    # so its z-score is ~N(0, 1): none exceeds 5.5 (P ~ 1e-4 over 1024 groups), and their mean square is
    # 1 within 5 standard errors of a chi-square (a mapping that reuses random bytes would inflate it).
    for dims in ((0, 1, 3), (0, 1, 2), (0, 2, 3)):
        group = kept.mean(dim=dims)
        z = (group - expected) / math.sqrt(expected * (1 - expected) / (n // group.numel()))
        assert z.abs().max().item() <= 5.5, (dims, z.abs().max().item())
        if group.numel() >= 64:
            assert abs((z * z).mean().item() - 1) <= 5 * math.sqrt(2 / group.numel()), (dims, (z * z).mean().item())
    if p in (0.25, 0.5):  # quantisation is exact here: the rule against 1 - p holds too
        assert abs(kept.mean().item() - (1 - p)) <= 5 * sigma


def _check_dropout_call(q, k, v, dout, p, seed, **kwargs):
    """One call with S_dmask against the reference under the mask it returns (out, lse, dq, dk, dv), and the same
    call without S_dmask (its own copy of the kernel loop, the one training runs) against the same reference."""
    torch.manual_seed(seed)
    out, lse, s_dmask = flash_attn_func(q, k, v, dropout_p=p, return_attn_probs=True, **kwargs)
    mask = kept_mask(s_dmask, q.shape[1], k.shape[1])
    causal = kwargs.pop("causal", False)
    window = kwargs.pop("window_size", (-1, -1))

    def fn(q_, k_, v_, upcast):
        return attention_ref(q_, k_, v_, causal, upcast=upcast, window=window, dropout_p=p, dropout_mask=mask,
                             **kwargs)

    grads = torch.autograd.grad(out, (q, k, v), dout)
    assert_attention_close(out, lse, grads, fn, (q, k, v), dout)
    torch.manual_seed(seed)
    out_train = flash_attn_func(q, k, v, dropout_p=p, causal=causal, window_size=window, **kwargs)
    grads_train = torch.autograd.grad(out_train, (q, k, v), dout)
    ref_out, lp_out = (fn(q.detach(), k.detach(), v.detach(), upcast)[0] for upcast in (True, False))
    assert_close_to_ref("out without S_dmask", out_train, ref_out, lp_out)
    assert_grads_close(("dq", "dk", "dv"), grads_train, lambda *args: fn(*args)[0], (q, k, v), dout)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
# (97, 150): three 64-key blocks, the first visited even; the others start odd
@pytest.mark.parametrize("sq,sk,h,hk", [(113, 113, 4, 4), (239, 512, 8, 2), (512, 239, 6, 3), (1, 64, 2, 1),
                                        (97, 150, 4, 2)])
def test_dropout_matches_reference(dtype, causal, sq, sk, h, hk):
    d = built_head_dim()
    require_kernel(dtype, d)
    _check_dropout_call(*attention_inputs((2, sq, h, d), (2, sk, hk, d), dtype, 11), 0.17, 1234, causal=causal)


# Dropout with the other variants (softcap excluded: API.md makes dropout + softcap an error), every head dim.
COMBINED = [  # (sq, sk, h, hk, d, causal, window, alibi: None / "h" / "bh")
    (113, 300, 4, 2, 32, True, (-1, -1), "h"),
    (239, 239, 8, 1, 64, False, (64, 32), "bh"),
    (300, 97, 6, 3, 96, False, (-1, 40), None),
    (640, 1000, 4, 4, 128, True, (200, 0), "h"),
    (150, 150, 4, 2, 192, False, (30, 90), "bh"),
    (77, 190, 2, 1, 256, True, (16, 0), "h"),
]


@pytest.mark.parametrize("case", COMBINED, ids=[f"sq{c[0]}-sk{c[1]}-d{c[4]}-w{c[6][0]}_{c[6][1]}"
                                                 f"{'-causal' if c[5] else ''}-alibi{c[7]}" for c in COMBINED])
def test_dropout_with_window_and_alibi(case):
    sq, sk, h, hk, d, causal, window, alibi = case
    dtype = torch.bfloat16 if d % 64 == 0 else torch.float16
    require_kernel(dtype, d)
    slopes = None if alibi is None else alibi_slopes(h, 2 if alibi == "bh" else None)
    _check_dropout_call(*attention_inputs((2, sq, h, d), (2, sk, hk, d), dtype, 61), 0.3, 4321, causal=causal,
                        window_size=window, alibi_slopes=slopes)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_reproducible_from_seed(dtype):
    d = built_head_dim()
    require_kernel(dtype, d)
    q, k, v = (_randn((2, 239, 4, d), dtype, s).requires_grad_() for s in (21, 22, 23))
    dout = _randn(q.shape, dtype, 24)

    def run(seed):
        torch.manual_seed(seed)
        out = flash_attn_func(q, k, v, dropout_p=0.3, causal=True)
        return (out, *torch.autograd.grad(out, (q, k, v), dout))

    first, again, other = run(7), run(7), run(8)
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    assert not torch.equal(first[0], other[0])
    # consecutive calls advance the generator: two draws under one seed differ
    torch.manual_seed(7)
    o1 = flash_attn_func(q, k, v, dropout_p=0.3)
    o2 = flash_attn_func(q, k, v, dropout_p=0.3)
    assert not torch.equal(o1, o2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_zero_is_plain(dtype):
    d = built_head_dim()
    require_kernel(dtype, d)
    q, k, v = (_randn((2, 113, 4, d), dtype, s) for s in (31, 32, 33))
    out0, lse0, probs = flash_attn_func(q, k, v, dropout_p=0.0, return_attn_probs=True)
    out1 = flash_attn_func(q, k, v)
    assert probs.shape == (0,)  # S_dmask only exists with dropout
    assert torch.equal(out0, out1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_varlen(dtype):
    d = built_head_dim()
    require_kernel(dtype, d)
    seqlens_q, seqlens_k = [17, 0, 200, 64], [40, 77, 128, 0]
    cu_q, cu_k = _cu(seqlens_q), _cu(seqlens_k)
    p = 0.2
    q, k, v, dout = attention_inputs((sum(seqlens_q), 4, d), (sum(seqlens_k), 2, d), dtype, 41)
    torch.manual_seed(99)
    out, lse, s_dmask = flash_attn_varlen_func(q, k, v, cu_q, cu_k, max(seqlens_q), max(seqlens_k), dropout_p=p,
                                               causal=True, return_attn_probs=True)
    assert s_dmask.shape == (4, 4, 256, 128)
    grads = torch.autograd.grad(out, (q, k, v), dout)
    torch.manual_seed(99)  # the same call without S_dmask: its own copy of the kernel loop
    out_train = flash_attn_varlen_func(q, k, v, cu_q, cu_k, max(seqlens_q), max(seqlens_k), dropout_p=p, causal=True)
    cq, ck = cu_q.tolist(), cu_k.tolist()
    for i in range(len(seqlens_q)):
        q0, q1, k0, k1 = cq[i], cq[i + 1], ck[i], ck[i + 1]
        if q1 == q0:
            continue
        mask = kept_mask(s_dmask[i : i + 1], q1 - q0, k1 - k0)
        xs = (q[None, q0:q1], k[None, k0:k1], v[None, k0:k1])

        def fn(q_, k_, v_, upcast):
            return attention_ref(q_, k_, v_, True, upcast=upcast, dropout_p=p, dropout_mask=mask)

        ref_out, _ = fn(*(x.detach() for x in xs), True)
        lp_out, _ = fn(*(x.detach() for x in xs), False)
        assert_close_to_ref(f"out[{i}]", out[None, q0:q1], ref_out, lp_out)
        assert_close_to_ref(f"out[{i}] without S_dmask", out_train[None, q0:q1], ref_out, lp_out)
        refs = []
        for upcast in (True, False):
            ys = [(x.detach().float() if upcast else x.detach().clone()).requires_grad_() for x in xs]
            o = fn(*ys, upcast)[0]
            refs.append(torch.autograd.grad(o, ys, dout[None, q0:q1].to(o.dtype)))
        assert_close_to_ref(f"dq[{i}]", grads[0][None, q0:q1], refs[0][0], refs[1][0])
        if k1 > k0:
            assert_close_to_ref(f"dk[{i}]", grads[1][None, k0:k1], refs[0][1], refs[1][1])
            assert_close_to_ref(f"dv[{i}]", grads[2][None, k0:k1], refs[0][2], refs[1][2])


# 2.x's dropped-fraction check (its test_flash_attn_output / _varlen_output): S_dmask < 0 over the valid entries
# within 0.01 of p, on small and odd shapes, batch 9 x 6 heads, dense and varlen (2.x's random padding: lengths
# down to 20 below the maximum). seqlen_q 1 is the short-query (decode) shape: dropout calls always run the main
# kernel (the split-KV kernel has no dropout), and this checks its 16-row tiles with a single valid row.
FRACTION_SHAPES = [(sq, sk) for sq in (1, 17, 113) for sk in (147, 239, 1023)]


@pytest.mark.parametrize("varlen", [False, True])
@pytest.mark.parametrize("sq,sk", FRACTION_SHAPES)
def test_dropped_fraction_small_shapes(sq, sk, varlen):
    d, dtype, p, b, h = built_head_dim(), torch.bfloat16, 0.17, 9, 6
    require_kernel(dtype, d)
    seed = 100 * sq + sk + (7 if varlen else 0)
    gen = torch.Generator().manual_seed(seed)
    lq = [max(1, sq - int(x)) for x in torch.randint(0, 21, (b,), generator=gen)] if varlen else [sq] * b
    lk = [max(1, sk - int(x)) for x in torch.randint(0, 21, (b,), generator=gen)] if varlen else [sk] * b
    q = _randn((sum(lq), h, d), dtype, seed)
    k, v = _randn((sum(lk), h, d), dtype, seed + 1), _randn((sum(lk), h, d), dtype, seed + 2)
    torch.manual_seed(seed)
    if varlen:
        _, _, s_dmask = flash_attn_varlen_func(q, k, v, _cu(lq), _cu(lk), max(lq), max(lk), dropout_p=p,
                                               return_attn_probs=True)
    else:
        _, _, s_dmask = flash_attn_func(q.view(b, sq, h, d), k.view(b, sk, h, d), v.view(b, sk, h, d), dropout_p=p,
                                        return_attn_probs=True)
    dropped = sum(int((s_dmask[i, :, :lq[i], :lk[i]] < 0).sum()) for i in range(b))
    fraction = dropped / (h * sum(a * c for a, c in zip(lq, lk)))
    assert abs(fraction - p) <= 0.01, (fraction, p)
