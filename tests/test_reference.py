"""The references themselves (CPU): checked against SDPA and a per-row loop."""

import math

import pytest
import torch
import torch.nn.functional as F

from reference import assert_close_to_ref, attention_ref, attention_varlen_ref, causal_mask, max_abs_err


def _rand(*shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float32).to(dtype)


def _sdpa(q, k, v, mask=None, scale=None):
    # q (b, s, h, d) -> SDPA layout (b, h, s, d); k/v already repeated to h heads
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                         attn_mask=mask, scale=scale)
    return out.transpose(1, 2)


@pytest.mark.parametrize("sq,sk", [(1, 1), (17, 17), (17, 40), (5, 33)])
def test_matches_sdpa(sq, sk):
    q, k, v = _rand(2, sq, 3, 16, seed=1), _rand(2, sk, 3, 16, seed=2), _rand(2, sk, 3, 16, seed=3)
    out, _ = attention_ref(q, k, v)
    torch.testing.assert_close(out, _sdpa(q, k, v), atol=1e-5, rtol=1e-5)
    out, _ = attention_ref(q, k, v, causal=True, softmax_scale=0.3)
    mask = torch.ones(sq, sk, dtype=torch.bool).tril(sk - sq)  # bottom-right aligned
    torch.testing.assert_close(out, _sdpa(q, k, v, mask, scale=0.3), atol=1e-5, rtol=1e-5)


def test_causal_mask_is_bottom_right():
    m = causal_mask(2, 4)
    assert m.tolist() == [[True, True, True, False], [True, True, True, True]]
    m = causal_mask(4, 2)
    assert m.tolist() == [[False, False], [False, False], [True, False], [True, True]]
    assert torch.equal(causal_mask(5, 5), torch.ones(5, 5, dtype=torch.bool).tril())


def test_lse_matches_loop():
    q, k, v = _rand(1, 7, 2, 8, seed=4), _rand(1, 9, 2, 8, seed=5), _rand(1, 9, 2, 8, seed=6)
    _, lse = attention_ref(q, k, v, causal=True)
    scale = 1 / math.sqrt(8)
    for h in range(2):
        for i in range(7):
            visible = [j for j in range(9) if j <= i + 2]
            s = torch.stack([(q[0, i, h] * k[0, j, h]).sum() * scale for j in visible])
            assert abs(lse[0, h, i].item() - torch.logsumexp(s, 0).item()) < 1e-5


def test_rows_without_keys_give_zero_and_inf():
    q, k, v = _rand(2, 9, 2, 8, seed=7), _rand(2, 4, 2, 8, seed=8), _rand(2, 4, 2, 8, seed=9)
    out, lse = attention_ref(q, k, v, causal=True)
    assert torch.all(out[:, :5] == 0) and torch.all(torch.isposinf(lse[:, :, :5]))
    assert torch.isfinite(lse[:, :, 5:]).all() and not torch.isnan(out).any()
    out, lse = attention_ref(q, k[:, :0], v[:, :0])  # no keys at all
    assert torch.all(out == 0) and torch.all(torch.isposinf(lse))


def test_gqa_equals_repeated_heads():
    q, k, v = _rand(2, 5, 8, 16, seed=10), _rand(2, 6, 2, 16, seed=11), _rand(2, 6, 2, 16, seed=12)
    out, lse = attention_ref(q, k, v, causal=True)
    out2, lse2 = attention_ref(q, k.repeat_interleave(4, 2), v.repeat_interleave(4, 2), causal=True)
    torch.testing.assert_close(out, out2)
    torch.testing.assert_close(lse, lse2)
    # head i of q uses kv head i // 4
    out3, _ = attention_ref(q[:, :, 5:6], k[:, :, 1:2], v[:, :, 1:2], causal=True)
    torch.testing.assert_close(out[:, :, 5:6], out3)


def test_varlen_matches_dense_and_handles_empty_sequences():
    q, k, v = _rand(3, 6, 2, 8, seed=13), _rand(3, 6, 2, 8, seed=14), _rand(3, 6, 2, 8, seed=15)
    out, lse = attention_ref(q, k, v, causal=True)
    cu = [0, 6, 12, 18]
    vout, vlse = attention_varlen_ref(q.reshape(18, 2, 8), k.reshape(18, 2, 8), v.reshape(18, 2, 8), cu, cu, True)
    torch.testing.assert_close(vout, out.reshape(18, 2, 8))
    torch.testing.assert_close(vlse, lse.permute(1, 0, 2).reshape(2, 18))
    # zero-length q and k sequences
    cu_q, cu_k = [0, 0, 3, 5], [0, 4, 4, 9]
    vout, vlse = attention_varlen_ref(q.reshape(18, 2, 8)[:5], k.reshape(18, 2, 8)[:9], v.reshape(18, 2, 8)[:9],
                                      cu_q, cu_k)
    assert torch.all(vout[0:3] == 0) and torch.isposinf(vlse[:, 0:3]).all()  # sequence 1 has no keys
    o, l = attention_ref(q.reshape(18, 2, 8)[None, 3:5], k.reshape(18, 2, 8)[None, 4:9], v.reshape(18, 2, 8)[None, 4:9])
    torch.testing.assert_close(vout[3:5], o[0])
    torch.testing.assert_close(vlse[:, 3:5], l[0])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_lowp_reference_is_close_but_not_exact(dtype):
    q, k, v = (_rand(1, 33, 2, 32, seed=s).to(dtype) for s in (16, 17, 18))
    o32, l32 = attention_ref(q, k, v, causal=True)
    olp, llp = attention_ref(q, k, v, causal=True, upcast=False)
    assert olp.dtype == dtype and o32.dtype == torch.float32
    err = max_abs_err(olp, o32)
    assert 0 < err < (0.05 if dtype == torch.bfloat16 else 0.01)
    assert max_abs_err(llp, l32) < 0.1


def test_tolerance_rule():
    ref32 = torch.tensor([1.0, 2.0, float("inf")])
    lowp = torch.tensor([1.01, 2.0, float("inf")])
    assert_close_to_ref("x", torch.tensor([1.02, 1.99, float("inf")]), ref32, lowp)
    with pytest.raises(AssertionError, match="max"):
        assert_close_to_ref("x", torch.tensor([1.03, 2.0, float("inf")]), ref32, lowp)
    with pytest.raises(AssertionError, match="infinities"):
        assert_close_to_ref("x", torch.tensor([1.0, 2.0, 5.0]), ref32, lowp)
    with pytest.raises(AssertionError, match="NaN"):
        assert_close_to_ref("x", torch.tensor([float("nan"), 2.0, float("inf")]), ref32, lowp)
    with pytest.raises(AssertionError, match="signs"):
        assert_close_to_ref("x", torch.tensor([1.0, 2.0, float("-inf")]), ref32, lowp)


@pytest.mark.parametrize(
    "causal,sq,sk,h,hk,window,softcap",
    [(False, 5, 7, 4, 2, (-1, -1), 0.0), (True, 9, 4, 4, 1, (-1, -1), 0.0), (True, 6, 6, 2, 2, (-1, -1), 0.0),
     (False, 9, 7, 2, 1, (2, 1), 0.0), (True, 8, 8, 2, 2, (3, -1), 0.0), (False, 5, 7, 4, 2, (-1, -1), 0.7),
     (True, 9, 6, 2, 1, (2, 0), 1.5), (False, 7, 5, 2, 1, (-1, -1), "alibi"), (True, 6, 9, 2, 2, (3, 0), "alibi+cap")],
)
def test_analytic_backward_matches_autograd(causal, sq, sk, h, hk, window, softcap):
    from reference import attention_ref_bwd

    slopes = None
    if isinstance(softcap, str):  # ALiBi cases: (b, h) slopes, with a cap when named
        slopes = torch.linspace(0.1, 0.9, 2 * h).reshape(2, h)
        softcap = 2.0 if "cap" in softcap else 0.0
    q = _rand(2, sq, h, 8, seed=20, dtype=torch.float64).requires_grad_()
    k = _rand(2, sk, hk, 8, seed=21, dtype=torch.float64).requires_grad_()
    v = _rand(2, sk, hk, 8, seed=22, dtype=torch.float64).requires_grad_()
    dout = _rand(2, sq, h, 8, seed=23, dtype=torch.float64)
    out, _ = attention_ref(q.float(), k.float(), v.float(), causal, window=window, softcap=softcap,
                           alibi_slopes=slopes)
    grads = torch.autograd.grad(out, (q, k, v), dout.float())
    ours = attention_ref_bwd(q.detach(), k.detach(), v.detach(), dout, causal, window=window, softcap=softcap,
                             alibi_slopes=slopes)
    for a, b in zip(ours, grads):
        assert not torch.isnan(b).any()
        torch.testing.assert_close(a, b.float(), atol=1e-5, rtol=1e-5)


def test_window_mask_semantics():
    """window_size as 2.x: bottom-right aligned, -1 unbounded, a side >= seqlen_k unbounded, causal forces right 0."""
    from reference import visible_keys, window_mask

    m = window_mask(4, 6, 1, 0)  # shift 2: row i sees keys i + 1 .. i + 2
    assert m.tolist()[0] == [False, True, True, False, False, False]
    assert m.tolist()[3] == [False, False, False, False, True, True]
    assert visible_keys(4, 6, False, (-1, -1)) is None
    assert visible_keys(4, 6, False, (6, 6)) is None  # both sides reach every key
    assert torch.equal(visible_keys(4, 6, True, (-1, 5)), window_mask(4, 6, -1, 0))  # causal
    diagonal = torch.zeros(5, 6, dtype=torch.bool)
    diagonal[torch.arange(5), torch.arange(5) + 1] = True  # shift 1
    assert torch.equal(visible_keys(5, 6, False, (0, 0)), diagonal)


def test_alibi_bias_is_distance_to_the_diagonal():
    from reference import alibi_bias

    bias = alibi_bias(torch.tensor([0.5, 2.0]), 1, 2, 3, 5)  # shift 2
    assert bias.shape == (1, 2, 3, 5)
    assert bias[0, 0, 0].tolist() == [-1.0, -0.5, 0.0, -0.5, -1.0]
    assert bias[0, 1, 2].tolist() == [-8.0, -6.0, -4.0, -2.0, 0.0]
