"""Plain-PyTorch attention references and the comparison rule used by the tests.

attention_ref(upcast=True) computes in float32 on the upcast inputs ("ref32"); upcast=False computes in the
input dtype ("ref_lowp": PyTorch's own low-precision error). A result passes when
    max|ours - ref32| <= 2 * max|ref_lowp - ref32| + 1e-5
(design notes, ../shared/README.md). Rows that see no key must give out 0 and lse +inf in both.
"""

import math
from typing import Optional, Sequence

import torch

from flash_attn import _checks


def causal_mask(seqlen_q: int, seqlen_k: int, device=None) -> torch.Tensor:
    """Bool (seqlen_q, seqlen_k), True = visible: key j visible to query i iff j <= i + seqlen_k - seqlen_q."""
    i = torch.arange(seqlen_q, device=device).unsqueeze(1)
    j = torch.arange(seqlen_k, device=device).unsqueeze(0)
    return j <= i + (seqlen_k - seqlen_q)


def window_mask(seqlen_q: int, seqlen_k: int, left: int, right: int, device=None) -> torch.Tensor:
    """Bool (seqlen_q, seqlen_k), True = visible: with shift = seqlen_k - seqlen_q, key j is visible to query i iff
    i + shift - left <= j <= i + shift + right; a negative side is unbounded (2.x's window_size)."""
    i = torch.arange(seqlen_q, device=device).unsqueeze(1) + (seqlen_k - seqlen_q)
    j = torch.arange(seqlen_k, device=device).unsqueeze(0)
    visible = torch.ones(seqlen_q, seqlen_k, dtype=torch.bool, device=device)
    if left >= 0:
        visible &= j >= i - left
    if right >= 0:
        visible &= j <= i + right
    return visible


def visible_keys(seqlen_q: int, seqlen_k: int, causal: bool, window, device=None,
                 window_bound: Optional[int] = None) -> Optional[torch.Tensor]:
    """The mask for (causal, window_size), or None when every key is visible. As in 2.x, a side >= window_bound
    (seqlen_k; max_seqlen_k for varlen) counts as unbounded before causal forces right = 0."""
    left, right = window
    bound = seqlen_k if window_bound is None else window_bound
    left = -1 if left >= bound else left
    right = -1 if right >= bound else right
    if causal:
        right = 0
    if left < 0 and right < 0:
        return None
    return window_mask(seqlen_q, seqlen_k, left, right, device)


def alibi_bias(alibi_slopes: torch.Tensor, batch: int, nheads: int, seqlen_q: int, seqlen_k: int) -> torch.Tensor:
    """(b or 1, h, sq, sk) float32: -slope * |i + seqlen_k - seqlen_q - j| (API.md)."""
    slopes = alibi_slopes.float().reshape(-1, nheads)[:, :, None, None]
    i = torch.arange(seqlen_q, device=alibi_slopes.device).unsqueeze(1) + (seqlen_k - seqlen_q)
    j = torch.arange(seqlen_k, device=alibi_slopes.device).unsqueeze(0)
    return -slopes * (i - j).abs().float()


def attention_ref(q, k, v, causal: bool = False, softmax_scale: Optional[float] = None, upcast: bool = True,
                  window=(-1, -1), window_bound: Optional[int] = None, softcap: float = 0.0, alibi_slopes=None,
                  dropout_p: float = 0.0, dropout_mask: Optional[torch.Tensor] = None):
    """
    q: (b, sq, h, d); k, v: (b, sk, hk, d) with h % hk == 0; window = 2.x's window_size (left, right);
    softcap > 0 caps the scaled scores at softcap * tanh(scores / softcap) before masking; alibi_slopes ((h,) or
    (b, h) fp32) then adds alibi_bias. dropout_mask (b, h, sq, sk) bool, True = kept: the normalised probabilities
    are masked and scaled by 1 / (1 - dropout_p) before P·V (lse is unaffected).
    Returns (out (b, sq, h, d) float32 if upcast else q.dtype, lse (b, h, sq) float32).
    """
    b, sq, h, d = q.shape
    sk, hk = k.shape[1], k.shape[2]
    assert h % hk == 0
    if softmax_scale is None:
        softmax_scale = 1.0 / math.sqrt(d)
    dtype = torch.float32 if upcast else q.dtype
    qh = q.to(dtype).permute(0, 2, 1, 3)  # (b, h, sq, d)
    kh = k.to(dtype).permute(0, 2, 1, 3).repeat_interleave(h // hk, dim=1)
    vh = v.to(dtype).permute(0, 2, 1, 3).repeat_interleave(h // hk, dim=1)
    scores = torch.matmul(qh * softmax_scale, kh.transpose(-1, -2))  # (b, h, sq, sk), in `dtype`
    if softcap > 0:
        scores = torch.tanh(scores / softcap) * softcap
    if alibi_slopes is not None:
        scores = (scores + alibi_bias(alibi_slopes, b, h, sq, sk).to(q.device)).to(scores.dtype)
    visible = visible_keys(sq, sk, causal, window, q.device, window_bound)
    if visible is not None:
        scores = scores.masked_fill(~visible, float("-inf"))
    lse = torch.logsumexp(scores.float(), dim=-1)  # -inf where a row sees no key
    empty = torch.isneginf(lse)
    # rows with no key: softmax over a finite dummy row, then zeroed (keeps gradients NaN-free)
    p = torch.softmax(scores.masked_fill(empty.unsqueeze(-1), 0.0), dim=-1).masked_fill(empty.unsqueeze(-1), 0.0)
    if dropout_mask is not None:
        p = p.masked_fill(~dropout_mask, 0.0) / (1 - dropout_p)
    out = torch.matmul(p, vh).masked_fill(empty.unsqueeze(-1), 0.0)
    lse = lse.masked_fill(empty, float("inf"))
    return out.permute(0, 2, 1, 3).contiguous(), lse


def attention_ref_bwd(q, k, v, dout, causal: bool = False, softmax_scale: Optional[float] = None, window=(-1, -1),
                      window_bound: Optional[int] = None, softcap: float = 0.0, alibi_slopes=None):
    """Analytic float32 gradients (dq, dk, dv) of attention_ref; GQA gradients summed over each group."""
    b, sq, h, d = q.shape
    sk, hk = k.shape[1], k.shape[2]
    g = h // hk
    if softmax_scale is None:
        softmax_scale = 1.0 / math.sqrt(d)
    qh = q.float().permute(0, 2, 1, 3)
    kh = k.float().permute(0, 2, 1, 3).repeat_interleave(g, dim=1)
    vh = v.float().permute(0, 2, 1, 3).repeat_interleave(g, dim=1)
    do = dout.float().permute(0, 2, 1, 3)
    scores = torch.matmul(qh, kh.transpose(-1, -2)) * softmax_scale
    tanh_scores = torch.tanh(scores / softcap) if softcap > 0 else None
    if tanh_scores is not None:
        scores = tanh_scores * softcap
    if alibi_slopes is not None:
        scores = scores + alibi_bias(alibi_slopes, b, h, sq, sk).to(q.device)
    visible = visible_keys(sq, sk, causal, window, q.device, window_bound)
    if visible is not None:
        scores = scores.masked_fill(~visible, float("-inf"))
    empty = torch.isneginf(torch.logsumexp(scores, dim=-1)).unsqueeze(-1)
    p = torch.softmax(scores.masked_fill(empty, 0.0), dim=-1).masked_fill(empty, 0.0)
    dv = torch.matmul(p.transpose(-1, -2), do)
    dp = torch.matmul(do, vh.transpose(-1, -2))
    ds = p * (dp - (dp * p).sum(-1, keepdim=True))
    if tanh_scores is not None:  # d(softcap * tanh(x / softcap)) / dx
        ds = ds * (1 - tanh_scores * tanh_scores)
    dq = torch.matmul(ds, kh) * softmax_scale
    dk = torch.matmul(ds.transpose(-1, -2), qh) * softmax_scale

    def fold(x):  # (b, h, s, d) -> (b, s, hk, d), summing the heads that share a kv head
        return x.reshape(b, hk, g, *x.shape[2:]).sum(2).permute(0, 2, 1, 3)

    return dq.permute(0, 2, 1, 3), fold(dk), fold(dv)


def attention_varlen_ref(q, k, v, cu_seqlens_q: Sequence[int], cu_seqlens_k: Sequence[int], causal: bool = False,
                         softmax_scale: Optional[float] = None, upcast: bool = True, window=(-1, -1),
                         softcap: float = 0.0, alibi_slopes=None):
    """
    q: (total_q, h, d); k, v: (total_k, hk, d); cu_seqlens as Python lists or tensors (batch + 1).
    Returns (out (total_q, h, d), lse (h, total_q) float32); each sequence is attended independently, with the
    window normalised against the longest key sequence (the same attention as an unnormalised window).
    """
    cu_q = [int(x) for x in cu_seqlens_q]
    cu_k = [int(x) for x in cu_seqlens_k]
    max_k = max(b - a for a, b in zip(cu_k, cu_k[1:]))
    total_q, h, d = q.shape
    dtype = torch.float32 if upcast else q.dtype
    out = torch.zeros(total_q, h, v.shape[-1], dtype=dtype, device=q.device)
    lse = torch.full((h, total_q), float("inf"), dtype=torch.float32, device=q.device)
    for i in range(len(cu_q) - 1):
        q0, q1, k0, k1 = cu_q[i], cu_q[i + 1], cu_k[i], cu_k[i + 1]
        if q1 == q0:
            continue
        slopes = None if alibi_slopes is None else (alibi_slopes if alibi_slopes.dim() == 1 else alibi_slopes[i])
        o, l = attention_ref(q[None, q0:q1], k[None, k0:k1], v[None, k0:k1], causal, softmax_scale, upcast, window,
                             max_k, softcap, slopes)
        out[q0:q1] = o[0]
        lse[:, q0:q1] = l[0]
    return out, lse


def rotary_ref(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, positions: torch.Tensor,
               interleaved: bool) -> torch.Tensor:
    """x (s, h, d) rotated in float32 at positions (s,): the first rotary_dim = 2 * cos.shape[1] channels as
    x * cos + rotate(x) * sin, pairs (2i, 2i + 1) if interleaved else (i, i + rotary_dim / 2); the rest as is."""
    half = cos.shape[1]
    c, s = cos[positions].float()[:, None, :], sin[positions].float()[:, None, :]
    out = x.float().clone()
    a_idx = torch.arange(half, device=x.device) * 2 if interleaved else torch.arange(half, device=x.device)
    b_idx = a_idx + 1 if interleaved else a_idx + half
    a, b = out[..., a_idx], out[..., b_idx]
    out[..., a_idx] = a * c - b * s
    out[..., b_idx] = a * s + b * c
    return out


def kvcache_ref(q, k_cache, v_cache, k=None, v=None, rotary_cos=None, rotary_sin=None, cache_seqlens=None,
                cache_batch_idx=None, cache_leftpad=None, causal=False, window=(-1, -1), softcap=0.0,
                alibi_slopes=None, rotary_interleaved=True, upcast=True, softmax_scale=None):
    """flash_attn_with_kvcache in plain PyTorch (API.md): the caches after the append (q's dtype, exact: the
    rotation rounds once, like the kernel) and (out (b, sq, h, d), lse (b, h, sq)) attending per sequence to
    keys [leftpad, cache_seqlens + seqlen_new) of its cache row. Lists or tensors for the per-batch arguments."""
    b, sq = q.shape[:2]
    capacity = k_cache.shape[1]
    as_list = (lambda x, default: [default] * b if x is None else [int(i) for i in (x.tolist() if
               isinstance(x, torch.Tensor) else x)])
    seqlens = as_list(cache_seqlens, capacity)
    rows, leftpad = as_list(cache_batch_idx, None), as_list(cache_leftpad, 0)
    rows = [i if r is None else r for i, r in enumerate(rows)]
    k_cache, v_cache = k_cache.clone(), v_cache.clone()
    s_new = 0 if k is None else k.shape[1]
    local = causal or visible_keys(1, capacity, False, window, q.device, capacity) is not None
    outs, lses = [], []
    for i in range(b):
        qi = q[i]
        if k is not None:
            pos = torch.arange(seqlens[i], seqlens[i] + s_new, device=q.device)
            ki = k[i] if rotary_cos is None else rotary_ref(k[i], rotary_cos, rotary_sin, pos, rotary_interleaved)
            k_cache[rows[i], pos] = ki.to(k_cache.dtype)
            v_cache[rows[i], pos] = v[i]
            if rotary_cos is not None:
                qpos = torch.arange(sq, device=q.device) + seqlens[i] if local else \
                    torch.full((sq,), seqlens[i], device=q.device)
                qi = rotary_ref(q[i], rotary_cos, rotary_sin, qpos, rotary_interleaved)
                qi = qi if upcast else qi.to(q.dtype)
        end = seqlens[i] + s_new
        keys, values = k_cache[rows[i], leftpad[i]:end], v_cache[rows[i], leftpad[i]:end]
        slopes = None if alibi_slopes is None else (alibi_slopes[i] if alibi_slopes.dim() == 2 else alibi_slopes)
        out, lse = attention_ref(qi[None].to(q.dtype) if not upcast else qi[None].float(), keys[None], values[None],
                                 causal, softmax_scale, upcast=upcast, window=window, window_bound=capacity,
                                 softcap=softcap, alibi_slopes=slopes)
        outs.append(out)
        lses.append(lse)
    return torch.cat(outs), torch.cat(lses), k_cache, v_cache


def max_abs_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| over entries where both are finite (0 if there are none)."""
    a, b = a.float(), b.float()
    finite = torch.isfinite(a) & torch.isfinite(b)
    if not finite.any():
        return 0.0
    return (a - b)[finite].abs().max().item()


def assert_close_to_ref(name: str, ours: torch.Tensor, ref32: torch.Tensor, ref_lowp: torch.Tensor,
                        eps: float = 1e-5) -> None:
    """The tolerance rule; infinities (lse of rows with no key) must match exactly, NaN never allowed."""
    assert ours.shape == ref32.shape, f"{name}: shape {tuple(ours.shape)} != reference {tuple(ref32.shape)}"
    ours = ours.float()
    assert not torch.isnan(ours).any(), f"{name}: contains NaN"
    inf_ours, inf_ref = torch.isinf(ours), torch.isinf(ref32)
    assert torch.equal(inf_ours, inf_ref), (
        f"{name}: infinities differ ({int(inf_ours.sum())} in ours vs {int(inf_ref.sum())} in the reference)"
    )
    assert torch.equal(ours[inf_ours], ref32[inf_ref].float()), f"{name}: infinity signs differ"
    err = max_abs_err(ours, ref32)
    tol = 2 * max_abs_err(ref_lowp, ref32) + eps
    assert err <= tol, f"{name}: max|ours - ref32| = {err:.3e} > 2 * max|ref_lowp - ref32| + {eps} = {tol:.3e}"


# ----------------------------------------------------------------------------------------------------------
# A stand-in for the CUDA launchers (flash_attn._ops._launch_fwd / _launch_varlen_fwd) so that the Python layer
# (validation, padding, packing, custom ops, autograd.Function, torch.compile) can be tested on CPU.
# ----------------------------------------------------------------------------------------------------------


class ReferenceLauncher:
    def __init__(self):
        self.calls = []  # (kind, kwargs) of every launch, for assertions

    def fwd(self, q, k, v, dropout_p, softmax_scale, causal, window_size_left, window_size_right, softcap,
            alibi_slopes, return_softmax):
        assert q.shape[-1] % 8 == 0, "the op must see a padded head dim"
        self.calls.append(("fwd", dict(q_shape=tuple(q.shape), softmax_scale=softmax_scale, causal=causal,
                                       window=(window_size_left, window_size_right))))
        o, lse = attention_ref(q, k, v, causal, softmax_scale, window=(window_size_left, window_size_right),
                               softcap=softcap, alibi_slopes=alibi_slopes)
        out = torch.empty_like(q)
        out.copy_(o)
        return out, lse, q.new_empty((0,)), torch.zeros(2, dtype=torch.int64, device=q.device)

    def varlen_fwd(self, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p,
                   softmax_scale, causal, window_size_left, window_size_right, softcap, alibi_slopes,
                   return_softmax, block_table, leftpad_k, seqused_k, zero_tensors, num_splits=0):
        assert q.shape[-1] % 8 == 0, "the op must see a padded head dim"
        assert isinstance(max_seqlen_q, int) and isinstance(max_seqlen_k, int)
        self.calls.append(("varlen_fwd", dict(q_shape=tuple(q.shape), softmax_scale=softmax_scale, causal=causal,
                                              max_seqlen=(max_seqlen_q, max_seqlen_k),
                                              window=(window_size_left, window_size_right), num_splits=num_splits)))
        o, lse = attention_varlen_ref(q, k, v, cu_seqlens_q.tolist(), cu_seqlens_k.tolist(), causal,
                                      softmax_scale, window=(window_size_left, window_size_right), softcap=softcap,
                                      alibi_slopes=alibi_slopes)
        out = torch.empty_like(q)
        out.copy_(o)
        return out, lse, q.new_empty((0,)), torch.zeros(2, dtype=torch.int64, device=q.device)

    # Backward stand-ins: gradients of the float32 reference written into dq/dk/dv; returns softmax_d
    # (rowsum(dout * out), padded like the kernel's).
    @staticmethod
    def _grads(q, k, v, dout, causal, softmax_scale, window, softcap, alibi_slopes, window_bound=None):
        # analytic: autograd is not recorded inside a custom op's body
        return attention_ref_bwd(q, k, v, dout, causal, softmax_scale, window, window_bound, softcap, alibi_slopes)

    def bwd(self, dout, q, k, v, out, softmax_lse, dq, dk, dv, dropout_p, softmax_scale, causal, window_size_left,
            window_size_right, softcap, alibi_slopes, deterministic, rng_state):
        assert q.shape[-1] % 8 == 0
        b, sq, h, _ = q.shape
        _checks.check_bwd_tensors(q, k, v, dout, out, softmax_lse, dq, dk, dv, (b, h, sq))  # the real op's checks
        self.calls.append(("bwd", dict(q_shape=tuple(q.shape))))
        grads = self._grads(q, k, v, dout, causal, softmax_scale, (window_size_left, window_size_right), softcap,
                            alibi_slopes)
        for dst, g in zip((dq, dk, dv), grads):
            dst.copy_(g)
        b, sq, h, _ = q.shape
        softmax_d = torch.zeros(b, h, (sq + 127) // 128 * 128, dtype=torch.float32, device=q.device)
        softmax_d[:, :, :sq] = (dout.float() * out.float()).sum(-1).transpose(1, 2)
        return softmax_d

    def varlen_bwd(self, dout, q, k, v, out, softmax_lse, dq, dk, dv, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                   max_seqlen_k, dropout_p, softmax_scale, causal, window_size_left, window_size_right, softcap,
                   alibi_slopes, deterministic, rng_state, zero_tensors):
        assert q.shape[-1] % 8 == 0
        _checks.check_bwd_tensors(q, k, v, dout, out, softmax_lse, dq, dk, dv, (q.shape[1], q.shape[0]))
        self.calls.append(("varlen_bwd", dict(q_shape=tuple(q.shape))))
        cu_q, cu_k = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
        dq.zero_()
        dk.zero_()
        dv.zero_()
        for i in range(len(cu_q) - 1):
            q0, q1, k0, k1 = cu_q[i], cu_q[i + 1], cu_k[i], cu_k[i + 1]
            slopes = None if alibi_slopes is None else (alibi_slopes if alibi_slopes.dim() == 1 else alibi_slopes[i])
            gq, gk, gv = self._grads(q[None, q0:q1], k[None, k0:k1], v[None, k0:k1], dout[None, q0:q1], causal,
                                     softmax_scale, (window_size_left, window_size_right), softcap, slopes,
                                     max_seqlen_k)
            dq[q0:q1], dk[k0:k1], dv[k0:k1] = gq[0], gk[0], gv[0]
        return torch.zeros(q.shape[1], q.shape[0] + 128 * (len(cu_q) - 1), dtype=torch.float32, device=q.device)


class ReferenceExtension:
    """flash_attn_2_cuda's functions with the binding's positional layout, computed by the float32 references on any
    device: the custom ops' real bodies (argument preparation included) then run on CPU. `calls` records (name,
    arguments) of every call."""

    def __init__(self):
        self.launcher = ReferenceLauncher()
        self.calls = []

    def fwd(self, q, k, v, out, alibi_slopes, p_dropout, softmax_scale, is_causal, window_left, window_right, softcap,
            return_softmax, gen):
        self.calls.append(("fwd", (q, k, v, out, alibi_slopes, p_dropout, softmax_scale, is_causal, window_left,
                                   window_right, softcap, return_softmax, gen)))
        o, lse, s_dmask, rng_state = self.launcher.fwd(q, k, v, p_dropout, softmax_scale, is_causal, window_left,
                                                       window_right, softcap, alibi_slopes, return_softmax)
        return [o if out is None else out.copy_(o), lse, s_dmask, rng_state]

    def varlen_fwd(self, q, k, v, out, cu_seqlens_q, cu_seqlens_k, seqused_k, leftpad_k, block_table, alibi_slopes,
                   max_seqlen_q, max_seqlen_k, p_dropout, softmax_scale, zero_tensors, is_causal, window_left,
                   window_right, softcap, return_softmax, gen, num_splits=0):
        self.calls.append(("varlen_fwd", (q, k, v, out, cu_seqlens_q, cu_seqlens_k, seqused_k, leftpad_k,
                                          block_table, alibi_slopes, max_seqlen_q, max_seqlen_k, p_dropout,
                                          softmax_scale, zero_tensors, is_causal, window_left, window_right, softcap,
                                          return_softmax, gen, num_splits)))
        o, lse, s_dmask, rng_state = self.launcher.varlen_fwd(
            q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, p_dropout, softmax_scale, is_causal,
            window_left, window_right, softcap, alibi_slopes, return_softmax, block_table, leftpad_k, seqused_k,
            zero_tensors, num_splits)
        return [o if out is None else out.copy_(o), lse, s_dmask, rng_state]

    def bwd(self, dout, q, k, v, out, softmax_lse, dq, dk, dv, alibi_slopes, p_dropout, softmax_scale, is_causal,
            window_left, window_right, softcap, deterministic, gen, rng_state):
        self.calls.append(("bwd", (dout, q, k, v, out, softmax_lse, dq, dk, dv, alibi_slopes, p_dropout,
                                   softmax_scale, is_causal, window_left, window_right, softcap, deterministic, gen,
                                   rng_state)))
        dq, dk, dv = (torch.empty_like(x) if g is None else g for g, x in ((dq, q), (dk, k), (dv, v)))
        softmax_d = self.launcher.bwd(dout, q, k, v, out, softmax_lse, dq, dk, dv, p_dropout, softmax_scale,
                                      is_causal, window_left, window_right, softcap, alibi_slopes, deterministic,
                                      rng_state)
        return [dq, dk, dv, softmax_d]

    def varlen_bwd(self, dout, q, k, v, out, softmax_lse, dq, dk, dv, cu_seqlens_q, cu_seqlens_k, alibi_slopes,
                   max_seqlen_q, max_seqlen_k, p_dropout, softmax_scale, zero_tensors, is_causal, window_left,
                   window_right, softcap, deterministic, gen, rng_state):
        self.calls.append(("varlen_bwd", (dout, q, k, v, out, softmax_lse, dq, dk, dv, cu_seqlens_q, cu_seqlens_k,
                                          alibi_slopes, max_seqlen_q, max_seqlen_k, p_dropout, softmax_scale,
                                          zero_tensors, is_causal, window_left, window_right, softcap, deterministic,
                                          gen, rng_state)))
        dq, dk, dv = (torch.empty_like(x) if g is None else g for g, x in ((dq, q), (dk, k), (dv, v)))
        softmax_d = self.launcher.varlen_bwd(dout, q, k, v, out, softmax_lse, dq, dk, dv, cu_seqlens_q, cu_seqlens_k,
                                             max_seqlen_q, max_seqlen_k, p_dropout, softmax_scale, is_causal,
                                             window_left, window_right, softcap, alibi_slopes, deterministic,
                                             rng_state, zero_tensors)
        return [dq, dk, dv, softmax_d]

    def fwd_kvcache(self, q, kcache, vcache, k, v, seqlens_k, rotary_cos, rotary_sin, cache_batch_idx, leftpad_k,
                    block_table, alibi_slopes, out, softmax_scale, is_causal, window_left, window_right, softcap,
                    rotary_interleaved, num_splits):
        self.calls.append(("fwd_kvcache", (q, kcache, vcache, k, v, seqlens_k, rotary_cos, rotary_sin,
                                           cache_batch_idx, leftpad_k, block_table, alibi_slopes, out, softmax_scale,
                                           is_causal, window_left, window_right, softcap, rotary_interleaved,
                                           num_splits)))
        assert q.shape[-1] % 8 == 0, "the op must see a padded head dim"
        pages = None if block_table is None else block_table.long()
        dense_k, dense_v = (kcache, vcache) if pages is None else (kcache[pages].flatten(1, 2),
                                                                   vcache[pages].flatten(1, 2))
        o, lse, new_k, new_v = kvcache_ref(q, dense_k, dense_v, k, v, rotary_cos, rotary_sin, seqlens_k,
                                           cache_batch_idx, leftpad_k, is_causal, (window_left, window_right), softcap,
                                           alibi_slopes, rotary_interleaved, softmax_scale=softmax_scale)
        for cache, new in ((kcache, new_k), (vcache, new_v)):  # in place, as the kernel appends
            if pages is None:
                cache.copy_(new)
            else:
                cache[pages.flatten()] = new.reshape(-1, *cache.shape[1:])
        res = torch.empty_like(q) if out is None else out
        return [res.copy_(o), lse]

    def apply_rotary(self, x, cos, sin, out, seqlen_offsets, seqlen_offset, cu_seqlens, max_seqlen, interleaved,
                     conjugate):
        self.calls.append(("apply_rotary", (x, cos, sin, out, seqlen_offsets, seqlen_offset, cu_seqlens, max_seqlen,
                                            interleaved, conjugate)))
        sin = -sin if conjugate else sin
        if cu_seqlens is None:
            bounds = [(b, slice(b, b + 1)) for b in range(x.shape[0])]
        else:
            cu = cu_seqlens.tolist()
            bounds = [(b, slice(cu[b], cu[b + 1])) for b in range(len(cu) - 1)]
        results = []
        for b, rows in bounds:  # every result before any write: out may be x
            seg = x[rows][0] if cu_seqlens is None else x[rows]  # (s, h, d)
            start = int(seqlen_offsets[b]) if seqlen_offsets is not None else seqlen_offset
            pos = torch.arange(seg.shape[0], device=x.device) + start
            inside = (pos >= 0) & (pos < cos.shape[0])  # positions past the table: left as they are
            rot = rotary_ref(seg, cos, sin, pos.clamp(0, cos.shape[0] - 1), interleaved).to(x.dtype)
            results.append(torch.where(inside[:, None, None], rot, seg))
        for (_, rows), r in zip(bounds, results):
            out[rows].copy_(r[None] if cu_seqlens is None else r)
