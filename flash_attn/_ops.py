"""torch.library custom ops wrapping the CUDA extension, with fake (meta) implementations.

The ops see head dims already padded to a multiple of 8 (the public functions pad). They are opaque to
torch.compile: the fake implementations give output shapes, the real ones validate and call
``flash_attn_2_cuda``. Importing this module never requires the extension.
"""

import os
from typing import Optional, Tuple

import torch

from flash_attn import _checks

try:
    import flash_attn_2_cuda as flash_attn_gpu  # the compiled extension (setup.py)

    _EXT_IMPORT_ERROR: Optional[BaseException] = None
except ImportError as e:  # source tree / not built: the package must still import
    flash_attn_gpu = None
    _EXT_IMPORT_ERROR = e

# Set FLASH_ATTN_DEBUG_POISON=1 to hand the kernel a NaN-filled output buffer (tests use it to catch
# elements the kernel forgets to write).
POISON_ENV = "FLASH_ATTN_DEBUG_POISON"


def _require_extension():
    if flash_attn_gpu is None:
        raise RuntimeError(
            "flash_attn CUDA extension (flash_attn_2_cuda) is not built or failed to import: "
            f"{_EXT_IMPORT_ERROR}. Install flash_attn from source (pip install --no-build-isolation .)"
        )
    return flash_attn_gpu


def _poisoned_out(q: torch.Tensor) -> Optional[torch.Tensor]:
    if os.environ.get(POISON_ENV, "0") not in ("", "0"):
        return torch.full_like(q, float("nan"))
    return None


def _empty_result(q, lse_shape, s_dmask_shape=(0,)):
    """Outputs for calls with no key (or no query) anywhere: out 0, lse +inf; no launch needed."""
    out = torch.zeros_like(q)
    lse = torch.full(lse_shape, float("inf"), dtype=torch.float32, device=q.device)
    s_dmask = torch.zeros(s_dmask_shape, dtype=q.dtype, device=q.device)
    return out, lse, s_dmask, torch.zeros(2, dtype=torch.int64, device=q.device)


def _launch_fwd(q, k, v, dropout_p, softmax_scale, causal, window_size_left, window_size_right, softcap,
                alibi_slopes, return_softmax):
    """Real forward: checks (including device and build config), then the extension."""
    _checks.check_dense_tensors(q, k, v, require_padded=True)
    _checks.check_devices(q, (("k", k), ("v", v), ("alibi_slopes", alibi_slopes)))
    _checks.check_build(q.dtype, q.shape[-1], q.device)
    b, sq, h, _ = q.shape
    if sq == 0 or k.shape[1] == 0:
        return _empty_result(q, (b, h, sq), _s_dmask_shape(b, h, sq, k.shape[1], dropout_p, return_softmax))
    ext = _require_extension()
    q, k, v = (_checks.vector_aligned(x) for x in (q, k, v))  # the kernels move 16 bytes at a time
    out, lse, s_dmask, rng_state = ext.fwd(
        q, k, v, _poisoned_out(q), alibi_slopes, dropout_p, softmax_scale, causal,
        window_size_left, window_size_right, softcap, return_softmax, None,
    )
    return out, lse, s_dmask, rng_state


def _launch_varlen_fwd(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p,
                       softmax_scale, causal, window_size_left, window_size_right, softcap, alibi_slopes,
                       return_softmax, block_table, leftpad_k, seqused_k, zero_tensors, num_splits=0):
    paged = block_table is not None
    _checks.check_varlen_tensors(q, k, v, cu_seqlens_q, cu_seqlens_k, require_padded=True, paged=paged)
    batch = cu_seqlens_q.shape[0] - 1
    if paged:
        _checks.check_block_table(block_table, k, batch)
        if leftpad_k is not None:
            raise _checks.FlashAttnValueError("leftpad_k does not work with a paged cache (block_table)")
    _checks.check_per_batch_int32("seqused_k", seqused_k, batch)
    _checks.check_per_batch_int32("leftpad_k", leftpad_k, batch)
    _checks.check_devices(
        q, (("k", k), ("v", v), ("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k),
            ("alibi_slopes", alibi_slopes), ("block_table", block_table), ("seqused_k", seqused_k),
            ("leftpad_k", leftpad_k)),
    )
    _checks.check_build(q.dtype, q.shape[-1], q.device)
    _checks.check_varlen_index_values(q, k, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, block_table,
                                      seqused_k, leftpad_k)
    total_q, h, _ = q.shape
    # max_seqlen == 0 still launches: the lengths come from cu_seqlens, which a stale bound may understate.
    if total_q == 0 or k.shape[0] == 0:
        s_dmask_shape = _s_dmask_shape(batch, h, max_seqlen_q, max_seqlen_k, dropout_p, return_softmax)
        return _empty_result(q, (h, total_q), s_dmask_shape)
    ext = _require_extension()
    q, k, v = (_checks.vector_aligned(x) for x in (q, k, v))  # the kernels move 16 bytes at a time
    out, lse, s_dmask, rng_state = ext.varlen_fwd(
        q, k, v, _poisoned_out(q), cu_seqlens_q, cu_seqlens_k, seqused_k, leftpad_k, block_table,
        alibi_slopes, max_seqlen_q, max_seqlen_k, dropout_p, softmax_scale, zero_tensors, causal,
        window_size_left, window_size_right, softcap, return_softmax, None, num_splits,
    )
    return out, lse, s_dmask, rng_state


def _check_varlen_num_splits(num_splits, block_table) -> int:
    """The private varlen forward's num_splits (0 = heuristic, 1 = no split, n > 1 = split the keys n ways): an int
    >= 0, and at most 1 with a paged K/V (as in flash-attn 2.8)."""
    num_splits = _checks.as_int("num_splits", num_splits)
    if num_splits < 0:
        raise _checks.FlashAttnValueError(f"num_splits must be >= 0 (0 = heuristic), got {num_splits}")
    if num_splits > 1 and block_table is not None:
        raise _checks.FlashAttnValueError(
            f"num_splits > 1 is not supported with paged KV (block_table), got num_splits={num_splits}"
        )
    return num_splits


# ----------------------------------------------------------------------------------------------------------
# Custom ops. No device_types restriction: a CPU call reaches the body and gets a clear device error.
# ----------------------------------------------------------------------------------------------------------


@torch.library.custom_op("flash_attn::_flash_attn_forward", mutates_args=())
def _flash_attn_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    dropout_p: float,
    softmax_scale: float,
    causal: bool,
    window_size_left: int,
    window_size_right: int,
    softcap: float,
    alibi_slopes: Optional[torch.Tensor],
    return_softmax: bool,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _launch_fwd(q, k, v, dropout_p, softmax_scale, causal, window_size_left, window_size_right,
                       softcap, alibi_slopes, return_softmax)


@_flash_attn_forward.register_fake
def _flash_attn_forward_fake(q, k, v, dropout_p, softmax_scale, causal, window_size_left, window_size_right,
                             softcap, alibi_slopes, return_softmax):
    b, sq, h, _ = q.shape
    out = torch.empty_like(q)
    lse = q.new_empty((b, h, sq), dtype=torch.float32)
    s_dmask = q.new_empty(_s_dmask_shape(b, h, sq, k.shape[1], dropout_p, return_softmax))
    rng_state = q.new_empty((2,), dtype=torch.int64)
    return out, lse, s_dmask, rng_state


@torch.library.custom_op("flash_attn::_flash_attn_varlen_forward", mutates_args=())
def _flash_attn_varlen_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor,
    max_seqlen_q: int,
    max_seqlen_k: int,
    dropout_p: float,
    softmax_scale: float,
    causal: bool,
    window_size_left: int = -1,
    window_size_right: int = -1,
    softcap: float = 0.0,
    alibi_slopes: Optional[torch.Tensor] = None,
    return_softmax: bool = False,
    block_table: Optional[torch.Tensor] = None,
    leftpad_k: Optional[torch.Tensor] = None,
    seqused_k: Optional[torch.Tensor] = None,
    zero_tensors: bool = False,
    num_splits: int = 0,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    num_splits = _check_varlen_num_splits(num_splits, block_table)
    return _launch_varlen_fwd(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p,
                              softmax_scale, causal, window_size_left, window_size_right, softcap, alibi_slopes,
                              return_softmax, block_table, leftpad_k, seqused_k, zero_tensors, num_splits)


@_flash_attn_varlen_forward.register_fake
def _flash_attn_varlen_forward_fake(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p,
                                    softmax_scale, causal, window_size_left=-1, window_size_right=-1, softcap=0.0,
                                    alibi_slopes=None, return_softmax=False, block_table=None, leftpad_k=None,
                                    seqused_k=None, zero_tensors=False, num_splits=0):
    _check_varlen_num_splits(num_splits, block_table)  # the same error while tracing as in eager
    total_q, h, _ = q.shape
    out = torch.empty_like(q)
    lse = q.new_empty((h, total_q), dtype=torch.float32)
    batch = cu_seqlens_q.shape[0] - 1
    s_dmask = q.new_empty(_s_dmask_shape(batch, h, max_seqlen_q, max_seqlen_k, dropout_p, return_softmax))
    rng_state = q.new_empty((2,), dtype=torch.int64)
    return out, lse, s_dmask, rng_state


# ----------------------------------------------------------------------------------------------------------
# Backward ops (same schema as flash-attn 2.8: write dq/dk/dv in place, return softmax_d = rowsum(dout * out),
# dense (b, h, round128(sq)), varlen (h, total_q + 128 * b)).
# ----------------------------------------------------------------------------------------------------------


def _poison_grads(*grads):
    if os.environ.get(POISON_ENV, "0") not in ("", "0"):
        for g in grads:
            if g is not None:
                g.fill_(float("nan"))


def _zero_grads(*grads):
    for g in grads:
        if g is not None:
            g.zero_()


def _bwd_device_args(k, v, dout, out, softmax_lse, dq, dk, dv, alibi_slopes):
    return (("k", k), ("v", v), ("dout", dout), ("out", out), ("softmax_lse", softmax_lse), ("dq", dq),
            ("dk", dk), ("dv", dv), ("alibi_slopes", alibi_slopes))


def _launch_bwd(dout, q, k, v, out, softmax_lse, dq, dk, dv, dropout_p, softmax_scale, causal, window_size_left,
                window_size_right, softcap, alibi_slopes, deterministic, rng_state):
    _checks.check_dense_tensors(q, k, v, require_padded=True)
    b, sq, h, _ = q.shape
    _checks.check_bwd_tensors(q, k, v, dout, out, softmax_lse, dq, dk, dv, (b, h, sq))
    _checks.check_devices(q, _bwd_device_args(k, v, dout, out, softmax_lse, dq, dk, dv, alibi_slopes))
    _checks.check_build(q.dtype, q.shape[-1], q.device)
    if sq == 0 or k.shape[1] == 0:  # nothing attends: zero gradients, no launch
        _zero_grads(dq, dk, dv)
        return torch.zeros((b, h, _round128(sq)), dtype=torch.float32, device=q.device)
    _poison_grads(dq, dk, dv)
    ext = _require_extension()
    dout, q, k, v, out = (_checks.vector_aligned(x) for x in (dout, q, k, v, out))  # 16-byte moves
    _, _, _, softmax_d = ext.bwd(
        dout, q, k, v, out, softmax_lse, dq, dk, dv, alibi_slopes, dropout_p, softmax_scale, causal,
        window_size_left, window_size_right, softcap, deterministic, None, rng_state,
    )
    return softmax_d


def _launch_varlen_bwd(dout, q, k, v, out, softmax_lse, dq, dk, dv, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                       max_seqlen_k, dropout_p, softmax_scale, causal, window_size_left, window_size_right, softcap,
                       alibi_slopes, deterministic, rng_state, zero_tensors):
    _checks.check_varlen_tensors(q, k, v, cu_seqlens_q, cu_seqlens_k, require_padded=True)
    total_q, h, _ = q.shape
    _checks.check_bwd_tensors(q, k, v, dout, out, softmax_lse, dq, dk, dv, (h, total_q))
    _checks.check_devices(q, _bwd_device_args(k, v, dout, out, softmax_lse, dq, dk, dv, alibi_slopes)
                          + (("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k)))
    _checks.check_build(q.dtype, q.shape[-1], q.device)
    batch = cu_seqlens_q.shape[0] - 1
    _checks.check_varlen_index_values(q, k, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
    if total_q == 0 or k.shape[0] == 0:
        _zero_grads(dq, dk, dv)
        return torch.zeros((h, total_q + 128 * batch), dtype=torch.float32, device=q.device)
    _poison_grads(dq, dk, dv)
    ext = _require_extension()
    dout, q, k, v, out = (_checks.vector_aligned(x) for x in (dout, q, k, v, out))  # 16-byte moves
    _, _, _, softmax_d = ext.varlen_bwd(
        dout, q, k, v, out, softmax_lse, dq, dk, dv, cu_seqlens_q, cu_seqlens_k, alibi_slopes, max_seqlen_q,
        max_seqlen_k, dropout_p, softmax_scale, zero_tensors, causal, window_size_left, window_size_right, softcap,
        deterministic, None, rng_state,
    )
    return softmax_d


def _round128(x):
    return (x + 127) // 128 * 128


def _s_dmask_shape(batch, nheads, seqlen_q, seqlen_k, dropout_p, return_softmax):
    """S_dmask's shape as the binding makes it: (b, h, round128(sq), round128(sk)) for return_softmax with
    dropout, else the empty (0,)."""
    if return_softmax and dropout_p > 0:
        return (batch, nheads, _round128(seqlen_q), _round128(seqlen_k))
    return (0,)


@torch.library.custom_op("flash_attn::_flash_attn_backward", mutates_args=("dq", "dk", "dv"))
def _flash_attn_backward(
    dout: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    softmax_lse: torch.Tensor,
    dq: Optional[torch.Tensor],
    dk: Optional[torch.Tensor],
    dv: Optional[torch.Tensor],
    dropout_p: float,
    softmax_scale: float,
    causal: bool,
    window_size_left: int,
    window_size_right: int,
    softcap: float,
    alibi_slopes: Optional[torch.Tensor],
    deterministic: bool,
    rng_state: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    return _launch_bwd(dout, q, k, v, out, softmax_lse, dq, dk, dv, dropout_p, softmax_scale, causal,
                       window_size_left, window_size_right, softcap, alibi_slopes, deterministic, rng_state)


@_flash_attn_backward.register_fake
def _flash_attn_backward_fake(dout, q, k, v, out, softmax_lse, dq, dk, dv, dropout_p, softmax_scale, causal,
                              window_size_left, window_size_right, softcap, alibi_slopes, deterministic,
                              rng_state=None):
    b, sq, h, _ = q.shape
    return q.new_empty((b, h, _round128(sq)), dtype=torch.float32)


@torch.library.custom_op("flash_attn::_flash_attn_varlen_backward", mutates_args=("dq", "dk", "dv"))
def _flash_attn_varlen_backward(
    dout: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    softmax_lse: torch.Tensor,
    dq: Optional[torch.Tensor],
    dk: Optional[torch.Tensor],
    dv: Optional[torch.Tensor],
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor,
    max_seqlen_q: int,
    max_seqlen_k: int,
    dropout_p: float,
    softmax_scale: float,
    causal: bool,
    window_size_left: int,
    window_size_right: int,
    softcap: float,
    alibi_slopes: Optional[torch.Tensor],
    deterministic: bool,
    rng_state: Optional[torch.Tensor] = None,
    zero_tensors: bool = False,
) -> torch.Tensor:
    return _launch_varlen_bwd(dout, q, k, v, out, softmax_lse, dq, dk, dv, cu_seqlens_q, cu_seqlens_k,
                              max_seqlen_q, max_seqlen_k, dropout_p, softmax_scale, causal, window_size_left,
                              window_size_right, softcap, alibi_slopes, deterministic, rng_state, zero_tensors)


@_flash_attn_varlen_backward.register_fake
def _flash_attn_varlen_backward_fake(dout, q, k, v, out, softmax_lse, dq, dk, dv, cu_seqlens_q, cu_seqlens_k,
                                     max_seqlen_q, max_seqlen_k, dropout_p, softmax_scale, causal, window_size_left,
                                     window_size_right, softcap, alibi_slopes, deterministic, rng_state=None,
                                     zero_tensors=False):
    total_q, h, _ = q.shape
    batch = cu_seqlens_q.shape[0] - 1
    return q.new_empty((h, total_q + 128 * batch), dtype=torch.float32)
