"""Public flash_attn 2.x functions with autograd (forward and backward kernels).

Each public function validates and normalises its arguments once (flash_attn._checks) and hands them to a
``torch.autograd.Function`` whose forward pads the head dim to a multiple of 8, calls the ``flash_attn::*``
custom op (_ops: one that does not validate again) and slices the padding off the output.
"""

import inspect
import os
from typing import Optional, Union

import torch
import torch.nn.functional as F

from flash_attn import _checks
from flash_attn import _ops
from flash_attn._ops import flash_attn_gpu  # noqa: F401  (re-exported: the extension, or None if not built)

USE_TRITON_ROCM = os.getenv("FLASH_ATTENTION_TRITON_AMD_ENABLE", "FALSE") == "TRUE"

# The private entry points, as in flash-attn 2.8: `_flash_attn_*` are the torch.library custom op definitions
# (CustomOpDef: callable with the op's positional/keyword arguments; ring-flash-attention reads their parameters from
# `._init_fn`) and `_wrapped_flash_attn_*` the registered ops torch.ops.flash_attn.*. Both validate their arguments
# (direct callers); the autograd Functions below call _ops.fwd etc. instead (same schemas, validated before).
_flash_attn_forward = _ops._flash_attn_forward
_flash_attn_varlen_forward = _ops._flash_attn_varlen_forward
_flash_attn_backward = _ops._flash_attn_backward
_flash_attn_varlen_backward = _ops._flash_attn_varlen_backward
for _op in (_flash_attn_forward, _flash_attn_varlen_forward, _flash_attn_backward, _flash_attn_varlen_backward):
    _op.__signature__ = inspect.signature(_op._init_fn)  # inspect.signature(_flash_attn_forward): the real parameters
del _op
_wrapped_flash_attn_forward = torch.ops.flash_attn._flash_attn_forward
_wrapped_flash_attn_varlen_forward = torch.ops.flash_attn._flash_attn_varlen_forward
_wrapped_flash_attn_backward = torch.ops.flash_attn._flash_attn_backward
_wrapped_flash_attn_varlen_backward = torch.ops.flash_attn._flash_attn_varlen_backward


def maybe_contiguous(x):
    """Copy ``x`` only if its last dimension is not contiguous (the kernels need stride(-1) == 1; inputs whose
    rows are not 16-byte aligned are copied by the ops themselves, outside what torch.compile traces)."""
    if isinstance(x, torch.Tensor) and x.dim() > 0 and x.stride(-1) != 1:
        return x.contiguous()
    return x


def round_multiple(x, m):
    return (x + m - 1) // m * m


def _get_block_size_n(device, head_dim, is_dropout, is_causal):
    """Key-tile width (BLOCK_N) of the forward kernel for this head dim (csrc/flash/sm80/fwd_tile_config.h);
    used by tests that decode S_dmask."""
    assert head_dim <= 256
    return 128 if head_dim <= 32 else 64


def _pad_head_dim(x: torch.Tensor) -> torch.Tensor:
    d = x.shape[-1]
    if d % 8 != 0:
        x = F.pad(x, [0, 8 - d % 8])
    return x


def _return(out, softmax_lse, s_dmask, return_softmax):
    """out, or (out, lse, S_dmask) with return_attn_probs; S_dmask only exists with dropout (else the op's empty
    (0,) tensor, as in 2.x)."""
    if not return_softmax:
        return out
    return out, softmax_lse, s_dmask


def _run_dense(ctx, q, k, v, head_size_og, dropout_p, softmax_scale, causal, window_size, softcap,
               alibi_slopes, deterministic, return_softmax, is_grad):
    """q, k, v: last dim contiguous, already padded; options validated and normalised on the unpadded tensors."""
    # ctx None: _apply found the call eager_direct and skipped the Function, so the op's body runs too.
    fwd = _ops.fwd._eager_body if ctx is None else _ops.op_or_body(_ops.fwd, q, k, v, alibi_slopes)
    out_padded, softmax_lse, s_dmask, rng_state = fwd(
        q, k, v, dropout_p, softmax_scale, causal, window_size[0], window_size[1], softcap, alibi_slopes,
        bool(return_softmax and dropout_p > 0),
    )
    if is_grad:
        ctx.save_for_backward(q, k, v, out_padded, softmax_lse, rng_state)
        ctx.dropout_p = dropout_p
        ctx.softmax_scale = softmax_scale
        ctx.causal = causal
        ctx.window_size = window_size
        ctx.softcap = softcap
        ctx.alibi_slopes = alibi_slopes
        ctx.deterministic = deterministic
        ctx.head_size_og = head_size_og
    return _return(out_padded[..., :head_size_og], softmax_lse, s_dmask, return_softmax)


def _run_varlen(ctx, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, head_size_og, dropout_p,
                softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic, return_softmax,
                block_table, is_grad):
    varlen_fwd = (_ops.varlen_fwd._eager_body if ctx is None else  # as in _run_dense
                  _ops.op_or_body(_ops.varlen_fwd, q, k, v, cu_seqlens_q, cu_seqlens_k, alibi_slopes, block_table))
    out_padded, softmax_lse, s_dmask, rng_state = varlen_fwd(
        q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p, softmax_scale, causal,
        window_size[0], window_size[1], softcap, alibi_slopes, bool(return_softmax and dropout_p > 0),
        block_table,
    )
    if is_grad:
        ctx.paged = block_table is not None
        ctx.save_for_backward(q, k, v, out_padded, softmax_lse, cu_seqlens_q, cu_seqlens_k, rng_state)
        ctx.dropout_p = dropout_p
        ctx.max_seqlen_q = max_seqlen_q
        ctx.max_seqlen_k = max_seqlen_k
        ctx.softmax_scale = softmax_scale
        ctx.causal = causal
        ctx.window_size = window_size
        ctx.softcap = softcap
        ctx.alibi_slopes = alibi_slopes
        ctx.deterministic = deterministic
        ctx.head_size_og = head_size_og
    return _return(out_padded[..., :head_size_og], softmax_lse, s_dmask, return_softmax)


def _bwd_dense(ctx, dout, dq, dk, dv):
    """Run the backward op into dq, dk, dv (padded head dim; may be views of one packed buffer)."""
    q, k, v, out, softmax_lse, rng_state = ctx.saved_tensors
    dout = _pad_head_dim(maybe_contiguous(dout))
    bwd = _ops.op_or_body(_ops.bwd, dout, q, k, v, out, softmax_lse, dq, dk, dv, ctx.alibi_slopes, rng_state)
    bwd(
        dout, q, k, v, out, softmax_lse, dq, dk, dv, ctx.dropout_p, ctx.softmax_scale, ctx.causal,
        ctx.window_size[0], ctx.window_size[1], ctx.softcap, ctx.alibi_slopes, ctx.deterministic, rng_state,
    )


def _bwd_varlen(ctx, dout, dq, dk, dv):
    q, k, v, out, softmax_lse, cu_seqlens_q, cu_seqlens_k, rng_state = ctx.saved_tensors
    dout = _pad_head_dim(maybe_contiguous(dout))
    varlen_bwd = _ops.op_or_body(_ops.varlen_bwd, dout, q, k, v, out, softmax_lse, dq, dk, dv, cu_seqlens_q,
                                 cu_seqlens_k, ctx.alibi_slopes, rng_state)
    varlen_bwd(
        dout, q, k, v, out, softmax_lse, dq, dk, dv, cu_seqlens_q, cu_seqlens_k, ctx.max_seqlen_q,
        ctx.max_seqlen_k, ctx.dropout_p, ctx.softmax_scale, ctx.causal, ctx.window_size[0], ctx.window_size[1],
        ctx.softcap, ctx.alibi_slopes, ctx.deterministic, rng_state,
    )


def _saved_qkv(ctx):
    return ctx.saved_tensors[:3]


def _needs_grad(is_grad_enabled, *tensors):
    return bool(is_grad_enabled) and any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)


def _apply(function, inputs, *args):
    """function.apply(*args), or, in a plain eager call (_ops.eager_direct) where none of the differentiable inputs
    needs a gradient, function.forward alone: the autograd Function would record nothing, and skipping it saves its
    host cost per call. Each Function's forward takes is_grad_enabled last and touches ctx only when it records."""
    if not _needs_grad(args[-1], *inputs) and _ops.eager_direct(*inputs):
        return function.forward(None, *args)
    return function.apply(*args)


class FlashAttnQKVPackedFunc(torch.autograd.Function):
    @staticmethod
    def forward(ctx, qkv, dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic,
                return_softmax, is_grad_enabled):
        is_grad = _needs_grad(is_grad_enabled, qkv)
        head_size_og = qkv.shape[-1]
        qkv = _pad_head_dim(qkv.detach())
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        return _run_dense(ctx, q, k, v, head_size_og, dropout_p, softmax_scale, causal, window_size, softcap,
                          alibi_slopes, deterministic, return_softmax, is_grad)

    @staticmethod
    def backward(ctx, dout, *args):
        q, k, v = _saved_qkv(ctx)
        dqkv = q.new_empty((*q.shape[:2], 3, *q.shape[2:]))
        _bwd_dense(ctx, dout, dqkv[:, :, 0], dqkv[:, :, 1], dqkv[:, :, 2])
        return (dqkv[..., : dout.shape[-1]],) + (None,) * 9


class FlashAttnKVPackedFunc(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, kv, dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic,
                return_softmax, is_grad_enabled):
        is_grad = _needs_grad(is_grad_enabled, q, kv)
        head_size_og = q.shape[-1]
        q, kv = _pad_head_dim(q.detach()), _pad_head_dim(kv.detach())
        k, v = kv[:, :, 0], kv[:, :, 1]
        return _run_dense(ctx, q, k, v, head_size_og, dropout_p, softmax_scale, causal, window_size, softcap,
                          alibi_slopes, deterministic, return_softmax, is_grad)

    @staticmethod
    def backward(ctx, dout, *args):
        q, k, v = _saved_qkv(ctx)
        dq = torch.empty_like(q)
        dkv = k.new_empty((*k.shape[:2], 2, *k.shape[2:]))
        _bwd_dense(ctx, dout, dq, dkv[:, :, 0], dkv[:, :, 1])
        d = dout.shape[-1]
        return (dq[..., :d], dkv[..., :d]) + (None,) * 9


class FlashAttnFunc(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic,
                return_softmax, is_grad_enabled):
        is_grad = _needs_grad(is_grad_enabled, q, k, v)
        head_size_og = q.shape[-1]
        q, k, v = _pad_head_dim(q.detach()), _pad_head_dim(k.detach()), _pad_head_dim(v.detach())
        return _run_dense(ctx, q, k, v, head_size_og, dropout_p, softmax_scale, causal, window_size, softcap,
                          alibi_slopes, deterministic, return_softmax, is_grad)

    @staticmethod
    def backward(ctx, dout, *args):
        q, k, v = _saved_qkv(ctx)
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        _bwd_dense(ctx, dout, dq, dk, dv)
        d = dout.shape[-1]
        return (dq[..., :d], dk[..., :d], dv[..., :d]) + (None,) * 9


class FlashAttnVarlenQKVPackedFunc(torch.autograd.Function):
    @staticmethod
    def forward(ctx, qkv, cu_seqlens, max_seqlen, dropout_p, softmax_scale, causal, window_size, softcap,
                alibi_slopes, deterministic, return_softmax, is_grad_enabled):
        is_grad = _needs_grad(is_grad_enabled, qkv)
        head_size_og = qkv.shape[-1]
        qkv = _pad_head_dim(qkv.detach())
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
        return _run_varlen(ctx, q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, head_size_og, dropout_p,
                           softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic, return_softmax,
                           None, is_grad)

    @staticmethod
    def backward(ctx, dout, *args):
        q, k, v = _saved_qkv(ctx)
        dqkv = q.new_empty((q.shape[0], 3, *q.shape[1:]))
        _bwd_varlen(ctx, dout, dqkv[:, 0], dqkv[:, 1], dqkv[:, 2])
        return (dqkv[..., : dout.shape[-1]],) + (None,) * 11


class FlashAttnVarlenKVPackedFunc(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, kv, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p, softmax_scale,
                causal, window_size, softcap, alibi_slopes, deterministic, return_softmax, is_grad_enabled):
        is_grad = _needs_grad(is_grad_enabled, q, kv)
        head_size_og = q.shape[-1]
        q, kv = _pad_head_dim(q.detach()), _pad_head_dim(kv.detach())
        k, v = kv[:, 0], kv[:, 1]
        return _run_varlen(ctx, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, head_size_og,
                           dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic,
                           return_softmax, None, is_grad)

    @staticmethod
    def backward(ctx, dout, *args):
        q, k, v = _saved_qkv(ctx)
        dq = torch.empty_like(q)
        dkv = k.new_empty((k.shape[0], 2, *k.shape[1:]))
        _bwd_varlen(ctx, dout, dq, dkv[:, 0], dkv[:, 1])
        d = dout.shape[-1]
        return (dq[..., :d], dkv[..., :d]) + (None,) * 13


class FlashAttnVarlenFunc(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p, softmax_scale,
                causal, window_size, softcap, alibi_slopes, deterministic, return_softmax, block_table,
                is_grad_enabled):
        is_grad = _needs_grad(is_grad_enabled, q, k, v)
        head_size_og = q.shape[-1]
        q, k, v = _pad_head_dim(q.detach()), _pad_head_dim(k.detach()), _pad_head_dim(v.detach())
        return _run_varlen(ctx, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, head_size_og,
                           dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic,
                           return_softmax, block_table, is_grad)

    @staticmethod
    def backward(ctx, dout, *args):
        if ctx.paged:
            raise NotImplementedError("flash_attn_varlen_func: block_table (paged KV) is forward only; the backward "
                                      "needs contiguous k and v")
        q, k, v = _saved_qkv(ctx)
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        _bwd_varlen(ctx, dout, dq, dk, dv)
        d = dout.shape[-1]
        return (dq[..., :d], dk[..., :d], dv[..., :d]) + (None,) * 14


# ----------------------------------------------------------------------------------------------------------
# Public API (signatures match flash-attn 2.8 exactly; transformers inspects the parameter names).
# ----------------------------------------------------------------------------------------------------------


def flash_attn_qkvpacked_func(
    qkv,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),  # -1 means infinite context window
    softcap=0.0,  # 0.0 means deactivated (as does any value < 0, as in 2.x)
    alibi_slopes=None,
    deterministic=False,
    return_attn_probs=False,
):
    """Attention with q, k, v packed in one tensor.

    qkv: (batch_size, seqlen, 3, nheads, headdim), fp16 or bf16, on a CUDA device.
    Returns out (batch_size, seqlen, nheads, headdim); with return_attn_probs=True,
    (out, softmax_lse (batch_size, nheads, seqlen) fp32, None).
    """
    _checks.check_packed("qkv", qkv, 5, 2, 3, "(batch, seqlen, 3, nheads, headdim)")
    qkv = maybe_contiguous(qkv)
    cfg = _checks.validate_fwd_args(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], dropout_p, softmax_scale, causal,
                                    window_size, softcap, alibi_slopes)
    return _apply(
        FlashAttnQKVPackedFunc, (qkv,),
        qkv, dropout_p, cfg.softmax_scale, cfg.causal, cfg.window_size, softcap, alibi_slopes, deterministic,
        return_attn_probs, torch.is_grad_enabled(),
    )


def flash_attn_kvpacked_func(
    q,
    kv,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),  # -1 means infinite context window
    softcap=0.0,  # 0.0 means deactivated
    alibi_slopes=None,
    deterministic=False,
    return_attn_probs=False,
):
    """Attention with k and v packed: q (batch_size, seqlen_q, nheads, headdim),
    kv (batch_size, seqlen_k, 2, nheads_k, headdim); nheads must be a multiple of nheads_k (MQA/GQA).
    causal=True aligns the mask to the bottom-right corner of the (seqlen_q, seqlen_k) score matrix.
    Returns out (batch_size, seqlen_q, nheads, headdim), or (out, softmax_lse, None) if return_attn_probs.
    """
    _checks.check_packed("kv", kv, 5, 2, 2, "(batch, seqlen_k, 2, nheads_k, headdim)")
    q, kv = maybe_contiguous(q), maybe_contiguous(kv)
    cfg = _checks.validate_fwd_args(q, kv[:, :, 0], kv[:, :, 1], dropout_p, softmax_scale, causal, window_size,
                                    softcap, alibi_slopes)
    return _apply(
        FlashAttnKVPackedFunc, (q, kv),
        q, kv, dropout_p, cfg.softmax_scale, cfg.causal, cfg.window_size, softcap, alibi_slopes, deterministic,
        return_attn_probs, torch.is_grad_enabled(),
    )


def flash_attn_func(
    q,
    k,
    v,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),  # -1 means infinite context window
    softcap=0.0,  # 0.0 means deactivated
    alibi_slopes=None,
    deterministic=False,
    return_attn_probs=False,
):
    """softmax(q kᵀ · softmax_scale) v per head.

    q: (batch_size, seqlen_q, nheads, headdim); k, v: (batch_size, seqlen_k, nheads_k, headdim), nheads a
    multiple of nheads_k (MQA/GQA). fp16 or bf16, CUDA, any strides with a contiguous last dimension.
    softmax_scale defaults to 1/sqrt(headdim). causal=True: query i sees key j iff j <= i + seqlen_k - seqlen_q
    (bottom-right aligned); a query row that sees no key gives 0 and lse +inf.
    Returns out (batch_size, seqlen_q, nheads, headdim); with return_attn_probs=True,
    (out, softmax_lse (batch_size, nheads, seqlen_q) fp32, None).
    """
    q, k, v = maybe_contiguous(q), maybe_contiguous(k), maybe_contiguous(v)
    cfg = _checks.validate_fwd_args(q, k, v, dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes)
    return _apply(
        FlashAttnFunc, (q, k, v),
        q, k, v, dropout_p, cfg.softmax_scale, cfg.causal, cfg.window_size, softcap, alibi_slopes, deterministic,
        return_attn_probs, torch.is_grad_enabled(),
    )


def flash_attn_varlen_qkvpacked_func(
    qkv,
    cu_seqlens,
    max_seqlen,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),  # -1 means infinite context window
    softcap=0.0,  # 0.0 means deactivated
    alibi_slopes=None,
    deterministic=False,
    return_attn_probs=False,
):
    """Variable-length attention with packed qkv (total, 3, nheads, headdim); cu_seqlens (batch + 1,) int32.
    Returns out (total, nheads, headdim), or (out, softmax_lse (nheads, total) fp32, None).
    """
    _checks.check_packed("qkv", qkv, 4, 1, 3, "(total, 3, nheads, headdim)")
    qkv = maybe_contiguous(qkv)
    cfg, max_seqlen_q, _ = _checks.validate_varlen_fwd_args(
        qkv[:, 0], qkv[:, 1], qkv[:, 2], cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, dropout_p, softmax_scale,
        causal, window_size, softcap, alibi_slopes)
    return _apply(
        FlashAttnVarlenQKVPackedFunc, (qkv,),
        qkv, cu_seqlens, max_seqlen_q, dropout_p, cfg.softmax_scale, cfg.causal, cfg.window_size, softcap,
        alibi_slopes, deterministic, return_attn_probs, torch.is_grad_enabled(),
    )


def flash_attn_varlen_kvpacked_func(
    q,
    kv,
    cu_seqlens_q,
    cu_seqlens_k,
    max_seqlen_q,
    max_seqlen_k,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),  # -1 means infinite context window
    softcap=0.0,  # 0.0 means deactivated
    alibi_slopes=None,
    deterministic=False,
    return_attn_probs=False,
):
    """Variable-length attention: q (total_q, nheads, headdim), kv (total_k, 2, nheads_k, headdim).
    Returns out (total_q, nheads, headdim), or (out, softmax_lse (nheads, total_q) fp32, None).
    """
    _checks.check_packed("kv", kv, 4, 1, 2, "(total_k, 2, nheads_k, headdim)")
    q, kv = maybe_contiguous(q), maybe_contiguous(kv)
    cfg, max_seqlen_q, max_seqlen_k = _checks.validate_varlen_fwd_args(
        q, kv[:, 0], kv[:, 1], cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p, softmax_scale,
        causal, window_size, softcap, alibi_slopes)
    return _apply(
        FlashAttnVarlenKVPackedFunc, (q, kv),
        q, kv, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p, cfg.softmax_scale, cfg.causal,
        cfg.window_size, softcap, alibi_slopes, deterministic, return_attn_probs, torch.is_grad_enabled(),
    )


def flash_attn_varlen_func(
    q,
    k,
    v,
    cu_seqlens_q,
    cu_seqlens_k,
    max_seqlen_q,
    max_seqlen_k,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),  # -1 means infinite context window
    softcap=0.0,  # 0.0 means deactivated
    alibi_slopes=None,
    deterministic=False,
    return_attn_probs=False,
    block_table=None,
):
    """Variable-length attention over sequences concatenated along the first axis.

    q: (total_q, nheads, headdim); k, v: (total_k, nheads_k, headdim); cu_seqlens_q / cu_seqlens_k:
    (batch_size + 1,) int32 cumulative sequence lengths starting at 0 (zero-length sequences allowed);
    max_seqlen_q / max_seqlen_k: int or 0-d integer tensor, upper bounds of the lengths. causal masks
    per sequence, bottom-right aligned on its true lengths.
    Returns out (total_q, nheads, headdim), or (out, softmax_lse (nheads, total_q) fp32, None).
    """
    q, k, v = maybe_contiguous(q), maybe_contiguous(k), maybe_contiguous(v)
    cfg, max_seqlen_q, max_seqlen_k = _checks.validate_varlen_fwd_args(
        q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p, softmax_scale, causal,
        window_size, softcap, alibi_slopes, block_table)
    return _apply(
        FlashAttnVarlenFunc, (q, k, v),
        q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p, cfg.softmax_scale, cfg.causal,
        cfg.window_size, softcap, alibi_slopes, deterministic, return_attn_probs, block_table,
        torch.is_grad_enabled(),
    )


def flash_attn_with_kvcache(
    q,
    k_cache,
    v_cache,
    k=None,
    v=None,
    rotary_cos=None,
    rotary_sin=None,
    cache_seqlens: Optional[Union[int, torch.Tensor]] = None,
    cache_batch_idx: Optional[torch.Tensor] = None,
    cache_leftpad: Optional[torch.Tensor] = None,
    block_table: Optional[torch.Tensor] = None,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),  # -1 means infinite context window
    softcap=0.0,  # 0.0 means deactivated
    rotary_interleaved=True,
    alibi_slopes=None,
    num_splits=0,
    return_softmax_lse=False,
):
    """Attention of q (batch, seqlen_q, nheads, headdim) against a KV cache (batch_cache, seqlen_cache, nheads_k,
    headdim), for decoding and chunked prefill. New keys/values k, v (batch, seqlen_new, nheads_k, headdim) are
    first written into the caches in place at cache_seqlens (rotated by rotary_cos/rotary_sin when given, which
    also rotate q); attention then covers keys [cache_leftpad, cache_seqlens + seqlen_new) of each sequence,
    bottom-right aligned for causal/window. A paged cache is (num_pages, page_size, nheads_k, headdim) with
    block_table (batch, max_blocks) int32 naming the page of every page_size positions (page_size a multiple of
    16). No autograd. Returns out, or (out, softmax_lse (batch, nheads, seqlen_q)) with return_softmax_lse."""
    cfg = _checks.validate_kvcache_args(
        q, k_cache, v_cache, k, v, rotary_cos, rotary_sin, cache_seqlens, cache_batch_idx, cache_leftpad,
        block_table, softmax_scale, causal, window_size, softcap, rotary_interleaved, alibi_slopes, num_splits,
    )
    head_dim = q.shape[-1]
    q, k, v = (None if x is None else maybe_contiguous(x) for x in (q, k, v))
    k_cache_og, v_cache_og = k_cache, v_cache
    if head_dim % 8 != 0:  # the kernels need a multiple of 8: padded copies, written back below
        q, k, v, k_cache, v_cache = (None if x is None else _pad_head_dim(x) for x in (q, k, v, k_cache, v_cache))
    opts = cfg.fwd
    fwd_kvcache = _ops.op_or_body(_ops.fwd_kvcache, q, k_cache, v_cache, k, v, cfg.cache_seqlens, rotary_cos,
                                  rotary_sin, cache_batch_idx, cache_leftpad, block_table, alibi_slopes)
    out, softmax_lse = fwd_kvcache(
        q, k_cache, v_cache, k, v, cfg.cache_seqlens, rotary_cos, rotary_sin, cache_batch_idx, cache_leftpad,
        block_table, alibi_slopes, opts.softmax_scale, opts.causal, opts.window_size_left, opts.window_size_right,
        float(softcap), rotary_interleaved, cfg.num_splits,
    )
    if head_dim % 8 != 0:
        out = out[..., :head_dim]
        if k is not None:
            k_cache_og.copy_(k_cache[..., :head_dim])
            v_cache_og.copy_(v_cache[..., :head_dim])
    return (out, softmax_lse) if return_softmax_lse else out
