"""Argument validation (flash_attn._checks) on meta and CPU tensors: no GPU needed.

Every bad input must raise the expected exception type with a message naming the argument."""

import math
import sys

import pytest
import torch

import flash_attn
from flash_attn import _checks, _ops
from flash_attn._checks import FlashAttnTypeError, FlashAttnValueError

META = "meta"
F16, BF16 = torch.float16, torch.bfloat16


def t(*shape, dtype=F16, device=META):
    return torch.empty(*shape, dtype=dtype, device=device)


def dense(b=2, sq=16, sk=32, h=4, hk=2, d=64, dtype=F16, device=META):
    return t(b, sq, h, d, dtype=dtype, device=device), t(b, sk, hk, d, dtype=dtype, device=device), \
        t(b, sk, hk, d, dtype=dtype, device=device)


def varlen(tq=20, tk=30, h=4, hk=2, d=64, batch=3, dtype=F16, device=META):
    q, k, v = t(tq, h, d, dtype=dtype, device=device), t(tk, hk, d, dtype=dtype, device=device), \
        t(tk, hk, d, dtype=dtype, device=device)
    cu = torch.zeros(batch + 1, dtype=torch.int32, device=device)
    return q, k, v, cu, cu.clone()


def vdense(q, k, v, **kw):
    return _checks.validate_fwd_args(q, k, v, check_device=False, **kw)


def vvarlen(q, k, v, cu_q, cu_k, max_q=8, max_k=8, **kw):
    return _checks.validate_varlen_fwd_args(q, k, v, cu_q, cu_k, max_q, max_k, check_device=False, **kw)


def bwd(**overrides):
    """check_bwd_tensors on a valid dense (b 2, sq 16, sk 32, h 4, hk 2, d 64) set with some tensors replaced."""
    q, k, v = dense()
    args = dict(dout=t(2, 16, 4, 64), out=t(2, 16, 4, 64), softmax_lse=t(2, 4, 16, dtype=torch.float32),
                dq=t(2, 16, 4, 64), dk=t(2, 32, 2, 64), dv=t(2, 32, 2, 64))
    args.update(overrides)
    return _checks.check_bwd_tensors(q, k, v, lse_shape=(2, 4, 16), **args)


def _noncontig_last(x):
    # same shape, last stride 2
    big = torch.empty(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype, device=x.device)
    return big[..., ::2]


q0, k0, v0 = dense()
vq0, vk0, vv0, cu0, cuk0 = varlen()

# (id, thunk, exception type, regex the message must match: names the argument)
BAD_CASES = [
    ("q_fp32", lambda: vdense(*dense(dtype=torch.float32)), FlashAttnTypeError, r"^q must have dtype"),
    ("k_dtype", lambda: vdense(q0, k0.to(BF16), v0), FlashAttnTypeError, r"^k must have the same dtype"),
    ("v_dtype", lambda: vdense(q0, k0, v0.to(BF16)), FlashAttnTypeError, r"^v must have the same dtype"),
    ("q_not_tensor", lambda: vdense([1.0], k0, v0), FlashAttnTypeError, r"^q must be a torch.Tensor"),
    ("q_ndim", lambda: vdense(q0[0], k0, v0), FlashAttnValueError, r"^q must be 4-D"),
    ("k_ndim", lambda: vdense(q0, k0[0], v0), FlashAttnValueError, r"^k must be 4-D"),
    ("v_ndim", lambda: vdense(q0, k0, v0[..., None]), FlashAttnValueError, r"^v must be 4-D"),
    ("batch_zero", lambda: vdense(*dense(b=0)), FlashAttnValueError, r"^q batch size"),
    ("k_batch", lambda: vdense(q0, k0[:1], v0), FlashAttnValueError, r"^k batch size"),
    ("v_seqlen", lambda: vdense(q0, k0, v0[:, :5]), FlashAttnValueError, r"^v seqlen_k"),
    ("v_heads", lambda: vdense(q0, k0, v0[:, :, :1]), FlashAttnValueError, r"^v nheads_k"),
    ("head_dim_too_big", lambda: vdense(*dense(d=264)), FlashAttnValueError, r"^q head dim .*<= 256"),
    ("head_dim_zero", lambda: vdense(*dense(d=0)), FlashAttnValueError, r"^q head dim .*positive"),
    ("k_head_dim", lambda: vdense(q0, k0[..., :32], v0), FlashAttnValueError, r"^k head dim"),
    ("v_head_dim", lambda: vdense(q0, k0, v0[..., :32]), FlashAttnValueError, r"^v head dim"),
    ("heads_divisible", lambda: vdense(*dense(h=6, hk=4)), FlashAttnValueError, r"heads in q .*heads in k/v"),
    ("q_last_stride", lambda: vdense(_noncontig_last(q0), k0, v0), FlashAttnValueError,
     r"^q must have contiguous last dimension"),
    ("v_last_stride", lambda: vdense(q0, k0, _noncontig_last(v0)), FlashAttnValueError,
     r"^v must have contiguous last dimension"),
    ("dropout_range", lambda: vdense(q0, k0, v0, dropout_p=1.0), FlashAttnValueError, r"^dropout_p must be in"),
    ("dropout_negative", lambda: vdense(q0, k0, v0, dropout_p=-0.1), FlashAttnValueError, r"^dropout_p"),
    ("dropout_softcap", lambda: vdense(q0, k0, v0, dropout_p=0.1, softcap=5.0), FlashAttnValueError,
     r"^dropout_p > 0 cannot be combined with softcap"),
    ("window_below_minus_one", lambda: vdense(q0, k0, v0, window_size=(-2, 0)), FlashAttnValueError,
     r"^window_size entries must be >= -1"),
    ("window_right_below_minus_one", lambda: vdense(q0, k0, v0, causal=True, window_size=(4, -3)),
     FlashAttnValueError, r"^window_size entries must be >= -1"),
    ("window_bad_form", lambda: vdense(q0, k0, v0, window_size=(1, 2, 3)), FlashAttnValueError, r"^window_size"),
    ("window_bad_tensor", lambda: vdense(q0, k0, v0, window_size=torch.tensor([1, 2, 3])), FlashAttnValueError,
     r"^window_size"),
    ("window_float", lambda: vdense(q0, k0, v0, window_size=(-1, 0.5)), FlashAttnTypeError, r"^window_size\[1\]"),
    ("softcap_nan", lambda: vdense(q0, k0, v0, softcap=float("nan")), FlashAttnValueError, r"^softcap must be"),
    ("softcap_neg_inf", lambda: vdense(q0, k0, v0, softcap=float("-inf")), FlashAttnValueError,
     r"^softcap must be a finite number"),
    ("softcap_inf", lambda: vdense(q0, k0, v0, softcap=float("inf")), FlashAttnValueError, r"^softcap must be"),
    ("alibi_dtype", lambda: vdense(q0, k0, v0, alibi_slopes=torch.ones(4, dtype=torch.float64)), FlashAttnTypeError,
     r"^alibi_slopes must have dtype torch.float32"),
    ("alibi_not_tensor", lambda: vdense(q0, k0, v0, alibi_slopes=[0.5] * 4), FlashAttnTypeError,
     r"^alibi_slopes must be a torch.Tensor"),
    ("alibi_shape", lambda: vdense(q0, k0, v0, alibi_slopes=torch.ones(2)), FlashAttnValueError,
     r"^alibi_slopes must have shape \(nheads,\) = \(4,\) or \(batch, nheads\) = \(2, 4\)"),
    ("alibi_shape_2d", lambda: vdense(q0, k0, v0, alibi_slopes=torch.ones(3, 4)), FlashAttnValueError,
     r"^alibi_slopes must have shape"),
    ("alibi_stride", lambda: vdense(q0, k0, v0, alibi_slopes=torch.ones(2, 8)[:, ::2]), FlashAttnValueError,
     r"^alibi_slopes must be contiguous"),
    ("alibi_varlen_shape", lambda: vvarlen(vq0, vk0, vv0, cu0, cuk0, alibi_slopes=torch.ones(2, 4)),
     FlashAttnValueError, r"^alibi_slopes must have shape .* \(3, 4\)"),
    ("causal_type", lambda: vdense(q0, k0, v0, causal="yes"), FlashAttnTypeError, r"^causal"),
    ("softmax_scale_type", lambda: vdense(q0, k0, v0, softmax_scale="x"), FlashAttnTypeError, r"^softmax_scale"),
    ("device_cpu", lambda: _checks.validate_fwd_args(*dense(device="cpu")), FlashAttnValueError,
     r"^q must be a CUDA tensor"),
    ("device_meta", lambda: _checks.validate_fwd_args(q0, k0, v0), FlashAttnValueError, r"^q must be a CUDA tensor"),
    ("op_level_unpadded", lambda: _checks.check_dense_tensors(*dense(d=59), require_padded=True),
     FlashAttnValueError, r"^q head dim must be a multiple of 8"),
    # varlen
    ("varlen_q_ndim", lambda: vvarlen(vq0[None], vk0, vv0, cu0, cuk0), FlashAttnValueError, r"^q must be 3-D"),
    ("varlen_k_ndim", lambda: vvarlen(vq0, vk0[None], vv0, cu0, cuk0), FlashAttnValueError, r"^k must be 3-D"),
    ("varlen_v_total", lambda: vvarlen(vq0, vk0, vv0[:3], cu0, cuk0), FlashAttnValueError, r"^v total_k"),
    ("varlen_k_head_dim", lambda: vvarlen(vq0, vk0[..., :8], vv0[..., :8], cu0, cuk0), FlashAttnValueError,
     r"^k head dim"),
    ("varlen_dtype", lambda: vvarlen(vq0, vk0.to(BF16), vv0.to(BF16), cu0, cuk0), FlashAttnTypeError,
     r"^k must have the same dtype"),
    ("cu_seqlens_q_dtype", lambda: vvarlen(vq0, vk0, vv0, cu0.long(), cuk0), FlashAttnTypeError,
     r"^cu_seqlens_q must have dtype torch.int32"),
    ("cu_seqlens_k_dtype", lambda: vvarlen(vq0, vk0, vv0, cu0, cuk0.float()), FlashAttnTypeError,
     r"^cu_seqlens_k must have dtype torch.int32"),
    ("cu_seqlens_k_ndim", lambda: vvarlen(vq0, vk0, vv0, cu0, cuk0[None]), FlashAttnValueError,
     r"^cu_seqlens_k must be 1-D"),
    ("cu_seqlens_k_length", lambda: vvarlen(vq0, vk0, vv0, cu0, cuk0[:3]), FlashAttnValueError,
     r"^cu_seqlens_k must have length batch \+ 1 = 4"),
    ("cu_seqlens_q_too_short", lambda: vvarlen(vq0, vk0, vv0, cu0[:1], cuk0[:1]), FlashAttnValueError,
     r"^cu_seqlens_q must have length batch \+ 1 >= 2"),
    ("cu_seqlens_q_noncontig", lambda: vvarlen(vq0, vk0, vv0, torch.zeros(8, dtype=torch.int32, device=META)[::2],
                                               cuk0), FlashAttnValueError, r"^cu_seqlens_q must be contiguous"),
    ("cu_seqlens_not_tensor", lambda: vvarlen(vq0, vk0, vv0, [0, 1, 2, 3], cuk0), FlashAttnTypeError,
     r"^cu_seqlens_q must be a torch.Tensor"),
    ("max_seqlen_q_float", lambda: vvarlen(vq0, vk0, vv0, cu0, cuk0, max_q=8.0), FlashAttnTypeError,
     r"^max_seqlen_q must be an int"),
    ("max_seqlen_k_negative", lambda: vvarlen(vq0, vk0, vv0, cu0, cuk0, max_k=-1), FlashAttnValueError,
     r"^max_seqlen_k must be >= 0"),
    ("max_seqlen_q_vector", lambda: vvarlen(vq0, vk0, vv0, cu0, cuk0, max_q=torch.tensor([3, 4])),
     FlashAttnValueError, r"^max_seqlen_q must be an int or a 0-d integer tensor"),
    ("max_seqlen_k_float_tensor", lambda: vvarlen(vq0, vk0, vv0, cu0, cuk0, max_k=torch.tensor(3.0)),
     FlashAttnTypeError, r"^max_seqlen_k must be an int"),
    ("block_table_3d_k", lambda: vvarlen(vq0, vk0, vv0, cu0, cuk0, block_table=torch.zeros(3, 1, dtype=I32)),
     FlashAttnValueError, r"^k must be 4-D \(num_pages, page_size, nheads_k, headdim\) with block_table"),
    ("block_table_dtype", lambda: vvarlen(vq0, t(4, 16, 2, 64), t(4, 16, 2, 64), cu0, cuk0,
                                          block_table=torch.zeros(3, 1, dtype=torch.int64)),
     FlashAttnTypeError, r"^block_table must have dtype torch.int32"),
    ("block_table_shape", lambda: vvarlen(vq0, t(4, 16, 2, 64), t(4, 16, 2, 64), cu0, cuk0,
                                          block_table=torch.zeros(2, 1, dtype=I32)),
     FlashAttnValueError, r"^block_table must have shape \(batch, max_blocks_per_seq\) = \(3, \*\)"),
    ("block_table_page_size", lambda: vvarlen(vq0, t(4, 24, 2, 64), t(4, 24, 2, 64), cu0, cuk0,
                                              block_table=torch.zeros(3, 1, dtype=I32)),
     FlashAttnValueError, r"^paged KV cache: the page size \(k.shape\[1\]\) must be a multiple of 16"),
    ("block_table_v_pages", lambda: vvarlen(vq0, t(4, 16, 2, 64), t(5, 16, 2, 64), cu0, cuk0,
                                            block_table=torch.zeros(3, 1, dtype=I32)),
     FlashAttnValueError, r"^v pages"),
    ("varlen_device", lambda: _checks.validate_varlen_fwd_args(vq0, vk0, vv0, cu0, cuk0, 8, 8), FlashAttnValueError,
     r"^q must be a CUDA tensor"),
    ("packed_qkv", lambda: _checks.check_packed("qkv", t(2, 8, 2, 4, 64), 5, 2, 3, "(b, s, 3, h, d)"),
     FlashAttnValueError, r"^qkv must be 5-D"),
    # backward op tensors (dout, out, softmax_lse, dq, dk, dv) against q, k, v
    ("bwd_dout_shape", lambda: bwd(dout=t(2, 15, 4, 64)), FlashAttnValueError, r"^dout must have the shape of q"),
    ("bwd_dout_dtype", lambda: bwd(dout=t(2, 16, 4, 64, dtype=BF16)), FlashAttnTypeError,
     r"^dout must have the same dtype as q"),
    ("bwd_dout_type", lambda: bwd(dout=[0.0]), FlashAttnTypeError, r"^dout must be a torch.Tensor"),
    ("bwd_dout_last_dim", lambda: bwd(dout=t(2, 16, 64, 4).transpose(-1, -2)), FlashAttnValueError,
     r"^dout must have contiguous last dimension"),
    ("bwd_out_shape", lambda: bwd(out=t(2, 16, 4, 56)), FlashAttnValueError, r"^out must have the shape of q"),
    ("bwd_lse_dtype", lambda: bwd(softmax_lse=t(2, 4, 16)), FlashAttnTypeError, r"^softmax_lse must have dtype"),
    ("bwd_lse_shape", lambda: bwd(softmax_lse=t(2, 16, 4, dtype=torch.float32)), FlashAttnValueError,
     r"^softmax_lse must have shape \(2, 4, 16\)"),
    ("bwd_dq_shape", lambda: bwd(dq=t(2, 16, 4, 32)), FlashAttnValueError, r"^dq must have the shape of q"),
    ("bwd_dk_shape", lambda: bwd(dk=t(2, 32, 4, 64)), FlashAttnValueError, r"^dk must have the shape of k"),
    ("bwd_dv_dtype", lambda: bwd(dv=t(2, 32, 2, 64, dtype=BF16)), FlashAttnTypeError,
     r"^dv must have the same dtype as q"),
    ("bwd_dv_type", lambda: bwd(dv="dv"), FlashAttnTypeError, r"^dv must be a torch.Tensor"),
]

I32 = torch.int32


def kvc(b=2, sq=1, cap=64, h=4, hk=2, d=64, new=1, device=META, **kw):
    """validate_kvcache_args on a (b, cap, hk, d) cache with `new` appended tokens; kw overrides arguments. (Through
    flash_attn_with_kvcache itself where test_kvcache_public_bad_input swaps _kvc_call.)"""
    args = dict(q=t(b, sq, h, d, device=device), k_cache=t(b, cap, hk, d, device=device),
                v_cache=t(b, cap, hk, d, device=device), cache_seqlens=3)
    if new:
        args.update(k=t(b, new, hk, d, device=device), v=t(b, new, hk, d, device=device))
    args.update(kw)
    return _kvc_call(**args)


def _kvc_call(**args):
    return _checks.validate_kvcache_args(**args, check_device=False)


def rot(rows, half, device=META):
    return dict(rotary_cos=t(rows, half, device=device), rotary_sin=t(rows, half, device=device))


KVCACHE_BAD_CASES = [
    ("kv_block_table_dtype", lambda: kvc(block_table=torch.zeros(2, 1, dtype=torch.int64)), FlashAttnTypeError,
     r"^block_table must have dtype torch.int32"),
    ("kv_block_table_shape", lambda: kvc(block_table=torch.zeros(3, 1, dtype=I32)), FlashAttnValueError,
     r"^block_table must have shape \(batch, max_blocks_per_seq\) = \(2, \*\)"),
    ("kv_page_size", lambda: kvc(cap=24, block_table=torch.zeros(2, 4, dtype=I32)), FlashAttnValueError,
     r"^paged KV cache: the page size \(k_cache.shape\[1\]\) must be a multiple of 16, got 24"),
    ("kv_paged_batch_idx", lambda: kvc(block_table=torch.zeros(2, 1, dtype=I32), cache_batch_idx=torch.zeros(
        2, dtype=I32)), FlashAttnValueError, r"^cache_batch_idx and cache_leftpad do not work with a paged cache"),
    ("kv_paged_capacity", lambda: kvc(cap=16, block_table=torch.zeros(2, 2, dtype=I32), cache_seqlens=31, new=2),
     FlashAttnValueError, r"^cache_seqlens \+ seqlen_new must fit the cache: .* 32 positions"),
    ("kv_cache_ndim", lambda: kvc(k_cache=t(2, 64, 128), v_cache=t(2, 64, 128)), FlashAttnValueError,
     r"^k_cache must be 4-D"),
    ("kv_v_cache_shape", lambda: kvc(v_cache=t(2, 32, 2, 64)), FlashAttnValueError, r"^v_cache shape"),
    ("kv_heads", lambda: kvc(k_cache=t(2, 64, 3, 64), v_cache=t(2, 64, 3, 64), new=0), FlashAttnValueError,
     r"^number of heads in q \(4\) must be divisible"),
    ("kv_cache_dtype", lambda: kvc(k_cache=t(2, 64, 2, 64, dtype=BF16)), FlashAttnTypeError,
     r"^k_cache must have the same dtype"),
    ("kv_k_without_v", lambda: kvc(v=None), FlashAttnValueError, r"^k and v must be passed together"),
    ("kv_k_heads", lambda: kvc(k=t(2, 1, 4, 64), v=t(2, 1, 4, 64)), FlashAttnValueError, r"^k must have shape"),
    ("kv_append_needs_seqlens", lambda: kvc(cache_seqlens=None), FlashAttnValueError,
     r"^appending k/v needs cache_seqlens"),
    ("kv_seqlens_dtype", lambda: kvc(cache_seqlens=torch.zeros(2, dtype=torch.int64)), FlashAttnTypeError,
     r"^cache_seqlens must have dtype torch.int32"),
    ("kv_seqlens_shape", lambda: kvc(cache_seqlens=torch.zeros(3, dtype=I32)), FlashAttnValueError,
     r"^cache_seqlens must have shape \(batch,\) = \(2,\)"),
    ("kv_seqlens_past_cache_int", lambda: kvc(cache_seqlens=64), FlashAttnValueError,
     r"^cache_seqlens \+ seqlen_new must fit the cache"),
    ("kv_seqlens_past_cache_tensor", lambda: kvc(cache_seqlens=torch.tensor([3, 60], dtype=I32), new=5),
     FlashAttnValueError, r"^cache_seqlens \+ seqlen_new must fit the cache"),
    ("kv_seqlens_negative", lambda: kvc(cache_seqlens=-1), FlashAttnValueError, r"^cache_seqlens must be >= 0"),
    ("kv_batch_idx_dtype", lambda: kvc(cache_batch_idx=torch.zeros(2, dtype=torch.int64)), FlashAttnTypeError,
     r"^cache_batch_idx must have dtype torch.int32"),
    ("kv_cache_batch", lambda: kvc(k_cache=t(3, 64, 2, 64), v_cache=t(3, 64, 2, 64)), FlashAttnValueError,
     r"^k_cache batch size \(3\) must match q batch size \(2\) unless cache_batch_idx"),
    ("kv_leftpad_shape", lambda: kvc(cache_leftpad=torch.zeros(1, dtype=I32)), FlashAttnValueError,
     r"^cache_leftpad must have shape"),
    ("kv_rotary_odd", lambda: kvc(**rot(64, 4)), FlashAttnValueError, r"^rotary_dim = 2 \* rotary_cos.shape\[1\] = 8"),
    ("kv_rotary_too_wide", lambda: kvc(**rot(64, 40)), FlashAttnValueError, r"^rotary_dim .* <= headdim \(64\)"),
    ("kv_rotary_short_table", lambda: kvc(**rot(32, 16)), FlashAttnValueError,
     r"^rotary_cos/rotary_sin need a row per cache position"),
    ("kv_rotary_without_kv", lambda: kvc(new=0, **rot(64, 16)), FlashAttnValueError,
     r"^rotary_cos/rotary_sin are applied to new k"),
    ("kv_rotary_one_table", lambda: kvc(rotary_cos=t(64, 16)), FlashAttnValueError,
     r"^rotary_cos and rotary_sin must be passed together"),
    ("kv_num_splits", lambda: kvc(num_splits=-1), FlashAttnValueError, r"^num_splits must be >= 0"),
    ("kv_window", lambda: kvc(window_size=(-2, 0)), FlashAttnValueError, r"^window_size entries must be >= -1"),
    ("kv_softcap", lambda: kvc(softcap=float("nan")), FlashAttnValueError, r"^softcap must be a finite number"),
    ("kv_alibi", lambda: kvc(alibi_slopes=torch.zeros(3, dtype=torch.float32)), FlashAttnValueError,
     r"^alibi_slopes must have shape"),
    ("kv_device", lambda: _checks.validate_kvcache_args(t(2, 1, 4, 64), t(2, 8, 2, 64), t(2, 8, 2, 64)),
     FlashAttnValueError, r"^q must be a CUDA tensor"),
]
BAD_CASES += KVCACHE_BAD_CASES


def varlen_op(seqused_k=None, leftpad_k=None, block_table=None, k=None):
    """The private varlen forward op (API.md's extras) on CPU tensors: its argument checks run before the device
    check; cu_seqlens for batch 3."""
    cpu = "cpu"
    q = t(20, 4, 64, device=cpu)
    k = t(30, 2, 64, device=cpu) if k is None else k
    cu = torch.zeros(4, dtype=I32)
    return flash_attn.flash_attn_interface._flash_attn_varlen_forward(
        q, k, k.clone(), cu, cu.clone(), 8, 8, 0.0, 0.125, True, block_table=block_table, leftpad_k=leftpad_k,
        seqused_k=seqused_k)


BAD_CASES += [
    ("op_seqused_k_dtype", lambda: varlen_op(seqused_k=torch.zeros(3, dtype=torch.int64)), FlashAttnTypeError,
     r"^seqused_k must have dtype torch.int32"),
    ("op_seqused_k_shape", lambda: varlen_op(seqused_k=torch.zeros(4, dtype=I32)), FlashAttnValueError,
     r"^seqused_k must have shape \(batch,\) = \(3,\)"),
    ("op_leftpad_k_shape", lambda: varlen_op(leftpad_k=torch.zeros(2, dtype=I32)), FlashAttnValueError,
     r"^leftpad_k must have shape \(batch,\) = \(3,\)"),
    ("op_leftpad_k_paged", lambda: varlen_op(leftpad_k=torch.zeros(3, dtype=I32), k=t(4, 16, 2, 64, device="cpu"),
                                             block_table=torch.zeros(3, 2, dtype=I32)),
     FlashAttnValueError, r"^leftpad_k does not work with a paged cache"),
    ("op_block_table_dtype", lambda: varlen_op(k=t(4, 16, 2, 64, device="cpu"),
                                               block_table=torch.zeros(3, 2, dtype=torch.int64)),
     FlashAttnTypeError, r"^block_table must have dtype torch.int32"),
    ("op_device", lambda: varlen_op(seqused_k=torch.zeros(3, dtype=I32)), FlashAttnValueError,
     r"^q must be a CUDA tensor"),
]


def test_kvcache_valid_arguments():
    cfg = kvc(**rot(64, 16), cache_seqlens=7, window_size=(8, 0))
    assert cfg.rotary_dim == 32 and cfg.cache_seqlens.dtype == I32 and cfg.cache_seqlens.shape == (2,)
    assert cfg.fwd.causal is False and (cfg.fwd.window_size_left, cfg.fwd.window_size_right) == (8, 0)
    full = kvc(new=0, cache_seqlens=None)
    assert full.cache_seqlens is None and full.rotary_dim == 0
    # paged: 48-slot pages, 3 per sequence, any number of pages in the pool; rotary rows cover 144 positions
    kvc(k_cache=t(7, 48, 2, 64), v_cache=t(7, 48, 2, 64), block_table=torch.zeros(2, 3, dtype=I32),
        cache_seqlens=140, new=4, **rot(144, 16))


@pytest.mark.parametrize("thunk,exc,pattern", [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_input(thunk, exc, pattern):
    with pytest.raises(exc, match=pattern):
        thunk()


@pytest.mark.parametrize("thunk,exc,pattern", [c[1:] for c in KVCACHE_BAD_CASES],
                         ids=[c[0] for c in KVCACHE_BAD_CASES])
def test_kvcache_public_bad_input(monkeypatch, thunk, exc, pattern):
    """flash_attn_with_kvcache itself on the same meta tensors: the same errors, raised before its custom op."""
    monkeypatch.setattr(sys.modules[__name__], "_kvc_call", flash_attn.flash_attn_with_kvcache)
    monkeypatch.setattr(_ops, "_launch_fwd_kvcache", None)  # never reached
    with pytest.raises(exc, match=pattern):
        thunk()


def test_kvcache_public_meta_reaches_the_fake(monkeypatch):
    """Valid meta arguments pass the checks (the device check aside) and the op's fake gives the shapes; an unaligned
    head dim is padded for the op and sliced off again."""
    monkeypatch.setattr(sys.modules[__name__], "_kvc_call", flash_attn.flash_attn_with_kvcache)
    with pytest.raises(FlashAttnValueError, match=r"^q must be a CUDA tensor"):
        kvc(**rot(64, 16), window_size=(8, 0))
    monkeypatch.setattr(_checks, "check_devices", lambda *args, **kwargs: None)
    out = kvc(**rot(64, 16), window_size=(8, 0))
    assert out.device.type == "meta" and out.shape == (2, 1, 4, 64) and out.dtype == F16
    out, lse = kvc(d=59, sq=3, new=3, cache_seqlens=torch.zeros(2, dtype=I32, device=META), return_softmax_lse=True)
    assert out.shape == (2, 3, 4, 59) and lse.shape == (2, 4, 3) and lse.dtype == torch.float32


def test_enough_bad_cases():
    assert len(BAD_CASES) >= 20


def test_errors_are_runtime_errors_like_2x():
    # 2.x raised RuntimeError from C++ for all of these; keep `except RuntimeError` working.
    assert issubclass(FlashAttnValueError, RuntimeError) and issubclass(FlashAttnValueError, ValueError)
    assert issubclass(FlashAttnTypeError, RuntimeError) and issubclass(FlashAttnTypeError, TypeError)
    assert issubclass(NotImplementedError, RuntimeError)


def test_device_mismatch_message():
    # check_devices names the tensor on the wrong device; q must be CUDA, so exercise the second part by
    # pretending with an object whose .device says cuda.
    class FakeCuda:
        device = torch.device("cuda", 0)

    with pytest.raises(FlashAttnValueError, match=r"^cu_seqlens_k must be on the same device as q"):
        _checks.check_devices(FakeCuda(), (("k", FakeCuda()), ("cu_seqlens_k", torch.zeros(2))))


# ----------------------------------------------------------------------------------------------------------
# Accepted inputs and normalisation
# ----------------------------------------------------------------------------------------------------------


def test_defaults_and_scale():
    cfg = vdense(*dense(d=59))
    assert cfg.softmax_scale == pytest.approx(1 / math.sqrt(59))  # caller's d, not the padded one
    assert (cfg.causal, cfg.window_size_left, cfg.window_size_right) == (False, -1, -1)
    assert vdense(q0, k0, v0, softmax_scale=0.5).softmax_scale == 0.5
    assert vdense(q0, k0, v0, softcap=0.0).causal is False  # 0 = off
    assert vdense(q0, k0, v0, softcap=30.0).causal is False


@pytest.mark.parametrize(
    "window,causal,expected_causal",
    [
        ((-1, -1), False, False),
        ([-1, -1], False, False),
        (torch.tensor([-1, -1]), False, False),
        ((-1, 0), True, True),
        ((-1, -1), True, True),
        ((-1, 0), False, True),  # (-1, 0) is causal
        ((32, 32), False, False),  # >= seqlen_k (32): unbounded
        ((100, -1), False, False),
        ((32, 5), True, True),  # causal forces right = 0; left unbounded
        (torch.tensor([40, 40], dtype=torch.int32), True, True),
    ],
)
def test_window_normalisation(window, causal, expected_causal):
    cfg = vdense(q0, k0, v0, causal=causal, window_size=window)  # seqlen_k = 32
    assert (cfg.causal, cfg.window_size_left, cfg.window_size_right) == (expected_causal, -1, -1)


@pytest.mark.parametrize(
    "window,causal,expected",
    [
        ((8, 8), False, (8, 8)),
        ((8, 0), True, (8, 0)),  # a left-bounded causal window is a window, not plain causal
        ((8, 5), True, (8, 0)),  # causal forces right = 0
        ((0, 0), False, (0, 0)),  # each query sees its diagonal key only
        ((-1, 3), False, (-1, 3)),
        ((31, 40), False, (31, -1)),  # right >= seqlen_k: unbounded
        (torch.tensor([4, 2]), False, (4, 2)),
    ],
)
def test_window_bounded(window, causal, expected):
    cfg = vdense(q0, k0, v0, causal=causal, window_size=window)  # seqlen_k = 32
    assert (cfg.causal, cfg.window_size_left, cfg.window_size_right) == (False, *expected)


def test_varlen_max_seqlen_forms():
    cfg, mq, mk = vvarlen(vq0, vk0, vv0, cu0, cuk0, max_q=torch.tensor(7, dtype=torch.int32),
                          max_k=torch.tensor(9))
    assert (mq, mk) == (7, 9) and type(mq) is int and type(mk) is int
    np = pytest.importorskip("numpy")
    _, mq, _ = vvarlen(vq0, vk0, vv0, cu0, cuk0, max_q=np.int64(5))
    assert mq == 5
    # varlen windows are not normalised against max_seqlen_k, which may understate a sequence's keys (a stale
    # bound in CUDA-graph replays); causal still forces the right side to 0
    cfg, _, _ = vvarlen(vq0, vk0, vv0, cu0, cuk0, max_k=16, window_size=(16, 16))
    assert (cfg.causal, cfg.window_size_left, cfg.window_size_right) == (False, 16, 16)
    cfg, _, _ = vvarlen(vq0, vk0, vv0, cu0, cuk0, max_k=16, window_size=(-1, 0))
    assert (cfg.causal, cfg.window_size_left, cfg.window_size_right) == (True, -1, -1)


def test_noncontiguous_but_last_dim_ok():
    big = t(2, 32, 8, 128)
    q = big[:, :16, :4, :64]  # strided everywhere except the last dim
    vdense(q, k0, v0)
    qt = t(2, 4, 16, 64).transpose(1, 2)  # HF-style transposed view
    vdense(qt, k0, v0)


def test_gqa_accepted():
    vdense(*dense(h=8, hk=1))
    vdense(*dense(h=8, hk=2))
    vdense(*dense(h=8, hk=8, d=256))


# ----------------------------------------------------------------------------------------------------------
# Public entry points on meta / CPU tensors: validation happens before any launch
# ----------------------------------------------------------------------------------------------------------

PUBLIC_BAD = [
    ("func_dtype", lambda: flash_attn.flash_attn_func(*dense(dtype=torch.float32)), FlashAttnTypeError, r"^q must"),
    ("func_device", lambda: flash_attn.flash_attn_func(*dense()), FlashAttnValueError, r"^q must be a CUDA tensor"),
    ("func_cpu", lambda: flash_attn.flash_attn_func(*dense(device="cpu")), FlashAttnValueError,
     r"^q must be a CUDA tensor"),
    ("func_dropout_softcap", lambda: flash_attn.flash_attn_func(*dense(), 0.1, softcap=5.0), FlashAttnValueError,
     r"^dropout_p"),
    ("func_window", lambda: flash_attn.flash_attn_func(*dense(), window_size=(4, -2)), FlashAttnValueError,
     r"^window_size entries"),
    ("func_softcap", lambda: flash_attn.flash_attn_func(*dense(), softcap=float("nan")), FlashAttnValueError,
     r"^softcap"),
    ("func_alibi_device", lambda: flash_attn.flash_attn_func(*dense(device="cpu"), alibi_slopes=torch.ones(4)),
     FlashAttnValueError, r"^q must be a CUDA tensor"),
    ("func_alibi_dtype", lambda: flash_attn.flash_attn_func(*dense(), alibi_slopes=torch.ones(4, dtype=torch.half)),
     FlashAttnTypeError, r"^alibi_slopes must have dtype"),
    ("qkvpacked_shape", lambda: flash_attn.flash_attn_qkvpacked_func(t(2, 8, 2, 4, 64)), FlashAttnValueError,
     r"^qkv must be 5-D"),
    ("kvpacked_shape", lambda: flash_attn.flash_attn_kvpacked_func(q0, t(2, 32, 3, 2, 64)), FlashAttnValueError,
     r"^kv must be 5-D"),
    ("kvpacked_heads", lambda: flash_attn.flash_attn_kvpacked_func(q0, t(2, 32, 2, 3, 64)), FlashAttnValueError,
     r"heads in q"),
    ("varlen_cu_dtype", lambda: flash_attn.flash_attn_varlen_func(vq0, vk0, vv0, cu0.long(), cuk0, 8, 8),
     FlashAttnTypeError, r"^cu_seqlens_q"),
    ("varlen_block_table", lambda: flash_attn.flash_attn_varlen_func(vq0, vk0, vv0, cu0, cuk0, 8, 8,
                                                                     block_table=cu0), FlashAttnValueError,
     r"^k must be 4-D"),
    ("varlen_device", lambda: flash_attn.flash_attn_varlen_func(vq0, vk0, vv0, cu0, cuk0, 8, 8), FlashAttnValueError,
     r"^q must be a CUDA tensor"),
    ("varlen_qkvpacked_shape", lambda: flash_attn.flash_attn_varlen_qkvpacked_func(t(20, 2, 4, 64), cu0, 8),
     FlashAttnValueError, r"^qkv must be 4-D"),
    ("varlen_kvpacked_max", lambda: flash_attn.flash_attn_varlen_kvpacked_func(vq0, t(30, 2, 2, 64), cu0, cuk0, 8,
                                                                               "8"),
     FlashAttnTypeError, r"^max_seqlen_k"),
]


@pytest.mark.parametrize("thunk,exc,pattern", [c[1:] for c in PUBLIC_BAD], ids=[c[0] for c in PUBLIC_BAD])
def test_public_bad_input(thunk, exc, pattern):
    with pytest.raises(exc, match=pattern):
        thunk()


def test_custom_op_body_rejects_cpu():
    # Direct op call with CPU tensors reaches the real body, which checks the device before any launch.
    q, k, v = dense(device="cpu")
    with pytest.raises(FlashAttnValueError, match=r"^q must be a CUDA tensor"):
        torch.ops.flash_attn._flash_attn_forward(q, k, v, 0.0, 0.125, False, -1, -1, 0.0, None, False)
    q, k, v, cu, cuk = varlen(device="cpu")
    with pytest.raises(FlashAttnValueError, match=r"^q must be a CUDA tensor"):
        torch.ops.flash_attn._flash_attn_varlen_forward(q, k, v, cu, cuk, 8, 8, 0.0, 0.125, False)


def test_bwd_checks_accept_valid_and_optional_grads():
    bwd()
    bwd(dq=None, dk=None, dv=None)
    packed = t(2, 32, 2, 2, 64)
    bwd(dk=packed[:, :, 0], dv=packed[:, :, 1])  # strided views of a packed dkv


def test_backward_op_body_checks_before_launch():
    # Direct backward-op calls with CPU tensors reach the real body: tensor checks first, then the device check.
    q, k, v = dense(device="cpu")
    lse = torch.zeros(2, 4, 16)
    with pytest.raises(FlashAttnValueError, match=r"^dout must have the shape of q"):
        torch.ops.flash_attn._flash_attn_backward(torch.zeros_like(q[:, :8]), q, k, v, q, lse, None, None, None,
                                                  0.0, 0.125, False, -1, -1, 0.0, None, False)
    with pytest.raises(FlashAttnValueError, match=r"^q must be a CUDA tensor"):
        torch.ops.flash_attn._flash_attn_backward(q, q, k, v, q, lse, None, None, None, 0.0, 0.125, False, -1, -1,
                                                  0.0, None, False)
    q, k, v, cu, cuk = varlen(device="cpu")
    with pytest.raises(FlashAttnValueError, match=r"^softmax_lse must have shape \(4, 20\)"):
        torch.ops.flash_attn._flash_attn_varlen_backward(q, q, k, v, q, torch.zeros(20, 4), None, None, None, cu, cuk,
                                                         8, 8, 0.0, 0.125, False, -1, -1, 0.0, None, False)
    with pytest.raises(FlashAttnValueError, match=r"^q must be a CUDA tensor"):
        torch.ops.flash_attn._flash_attn_varlen_backward(q, q, k, v, q, torch.zeros(4, 20), None, None, None, cu, cuk,
                                                         8, 8, 0.0, 0.125, False, -1, -1, 0.0, None, False)


def test_misaligned_grads_rejected_at_the_op():
    # The kernels move 16 bytes at a time: inputs whose rows do not start 16-byte aligned are copied by the ops,
    # but a caller's dq/dk/dv buffer that is misaligned gets a clear error, not a misaligned-address fault.
    q, k, v = dense(device="cpu")
    lse = torch.zeros(2, 4, 16)
    dq = torch.zeros(2 * 16 * 4 * 64 + 1, dtype=F16)[1:].view(2, 16, 4, 64)  # contiguous, but starts off by 2 bytes
    with pytest.raises(FlashAttnValueError, match=r"^dq must have a storage offset and strides .* multiples of 8"):
        torch.ops.flash_attn._flash_attn_backward(q, q, k, v, q, lse, dq, None, None, 0.0, 0.125, False, -1, -1,
                                                  0.0, None, False)


def test_vector_alignment():
    wide = torch.randn(2, 16, 4, 72, dtype=F16)
    sliced = wide[..., 4:68]
    assert not _checks.is_vector_aligned(sliced)
    copied = _checks.vector_aligned(sliced)
    assert _checks.is_vector_aligned(copied) and torch.equal(copied, sliced)
    shifted = torch.randn(2 * 16 * 4 * 64 + 1, dtype=F16)[1:].view(2, 16, 4, 64)
    assert shifted.is_contiguous() and not _checks.is_vector_aligned(shifted)
    assert _checks.is_vector_aligned(_checks.vector_aligned(shifted))
    packed = torch.randn(2, 16, 3, 4, 64, dtype=F16)[:, :, 1]  # a packed projection's k: aligned, no copy
    assert _checks.vector_aligned(packed) is packed
    assert not _checks.is_vector_aligned(torch.randn(2, 3, 68, dtype=F16))  # contiguous, 136-byte rows


def test_vector_alignment_matches_its_definition():
    """The contiguous fast path of is_vector_aligned agrees with the definition (storage offset and every stride
    but the last, of dims longer than 1, a multiple of 16 bytes) on contiguous tensors, views and singleton dims."""
    def by_definition(t):
        elems = 16 // t.element_size()
        return t.storage_offset() % elems == 0 and all(
            size <= 1 or stride % elems == 0 for size, stride in zip(t.shape[:-1], t.stride()[:-1]))

    base = torch.randn(3 * 5 * 7 * 80 + 8, dtype=F16)
    cases = []
    for last in (1, 4, 8, 12, 16, 64, 72, 80):
        for offset in (0, 4, 8):
            t = base[offset:offset + 3 * 5 * last].view(3, 5, last)
            cases += [t, t[:, :1], t[:1], t.transpose(0, 1), t[..., : max(1, last // 2)]]
    cases.append(torch.randn(1, 7, 1, 64, dtype=torch.float32).as_strided((1, 7, 1, 64), (3, 64, 5, 1)))
    for t in cases:
        assert _checks.is_vector_aligned(t) == by_definition(t), (tuple(t.shape), t.stride(), t.storage_offset())
