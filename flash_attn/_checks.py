"""Argument validation shared by every flash_attn entry point: the one validation layer.

Each entry point calls one ``validate_*`` function once, before its custom op: the public functions in Python
before the autograd Function / op, the flash-attn 2.x private ops (``flash_attn::_flash_attn_forward`` etc., which
other libraries call directly) at the top of their body; the ops the public functions call do not validate
again (the C++ binding keeps its structural checks as the last guard). Window semantics live in one function,
:func:`normalize_window`.

Everything here works on CPU and meta tensors (and on fake tensors while torch.compile traces), so the checks
themselves are testable without a GPU. Device checks come last and are skipped with ``check_device=False``; host
reads of index tensors are skipped on meta tensors, during CUDA graph capture and while torch.compile traces. Whether
the kernels were built (:func:`check_build`, needs the real device) is checked where they are launched (_ops).

Errors name the offending argument and what was expected. Value/shape/device problems raise
:class:`FlashAttnValueError` and dtype/type problems :class:`FlashAttnTypeError`; both also derive from
``RuntimeError`` because the 2.x C++ extension raised ``RuntimeError`` for all of them. Features that are
not implemented yet raise ``NotImplementedError``.
"""

import math
import operator
import os
from typing import NamedTuple, Optional, Sequence, Tuple

import torch

MAX_HEADDIM = 256
from ._kernel_config import HEADDIM_BUCKETS
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16)
DTYPE_NAMES = {torch.float16: "fp16", torch.bfloat16: "bf16"}


class FlashAttnValueError(ValueError, RuntimeError):
    """Bad value, shape or device of an argument."""


class FlashAttnTypeError(TypeError, RuntimeError):
    """Bad dtype or Python type of an argument."""


class FwdConfig(NamedTuple):
    """Normalised forward options (what the kernel gets)."""

    softmax_scale: float
    causal: bool
    window_size_left: int
    window_size_right: int

    @property
    def window_size(self) -> Tuple[int, int]:
        return self.window_size_left, self.window_size_right


# ----------------------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------------------


def _shape(t: torch.Tensor) -> Tuple[int, ...]:
    return tuple(t.shape)


def _require_tensor(name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise FlashAttnTypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")


def as_int(name: str, value) -> int:
    """Python int from an int-like argument (int, 0-d/1-element integer tensor, numpy integer)."""
    if type(value) is int:  # the usual case, first: this runs several times a call
        return value
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise FlashAttnValueError(
                f"{name} must be an int or a 0-d integer tensor, got a tensor of shape {_shape(value)}"
            )
        if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
            raise FlashAttnTypeError(f"{name} must be an int or a 0-d integer tensor, got dtype {value.dtype}")
        return int(value.item())
    if isinstance(value, bool):
        raise FlashAttnTypeError(f"{name} must be an int, got bool")
    if isinstance(value, (int, torch.SymInt)):
        return value
    try:
        return operator.index(value)
    except TypeError:
        raise FlashAttnTypeError(f"{name} must be an int, got {type(value).__name__}") from None


def _as_float(name: str, value) -> float:
    if type(value) is float:  # the usual case, first
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.SymInt, torch.SymFloat)):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise FlashAttnTypeError(f"{name} must be a float, got {type(value).__name__}") from None
    return value


def padded_head_dim(head_dim: int) -> int:
    """Head dim rounded up to a multiple of 8 (what the wrappers pass to the kernel)."""
    return (head_dim + 7) // 8 * 8


def head_dim_bucket(head_dim: int) -> int:
    """Smallest kernel head-dim bucket that holds ``head_dim`` (after padding to a multiple of 8)."""
    d = padded_head_dim(head_dim)
    for b in HEADDIM_BUCKETS:
        if d <= b:
            return b
    raise FlashAttnValueError(f"head_dim must be <= {MAX_HEADDIM}, got {head_dim}")


# ----------------------------------------------------------------------------------------------------------
# Tensor checks
# ----------------------------------------------------------------------------------------------------------


def check_dtypes(q: torch.Tensor, others: Sequence[Tuple[str, torch.Tensor]], q_name: str = "q") -> None:
    if q.dtype not in SUPPORTED_DTYPES:
        raise FlashAttnTypeError(
            f"{q_name} must have dtype torch.float16 or torch.bfloat16, got {q.dtype} "
            "(FlashAttention only supports fp16 and bf16)"
        )
    for name, t in others:
        if t.dtype != q.dtype:
            raise FlashAttnTypeError(
                f"{name} must have the same dtype as {q_name} ({q.dtype}), got {t.dtype}"
            )


def _check_last_dim_contiguous(named: Sequence[Tuple[str, torch.Tensor]]) -> None:
    for name, t in named:
        if t.stride(-1) != 1 and t.shape[-1] != 1:
            raise FlashAttnValueError(
                f"{name} must have contiguous last dimension (stride(-1) == 1), got strides {tuple(t.stride())}"
            )


VECTOR_BYTES = 16  # the kernels move q, k, v, out and the gradients 16 bytes at a time


def _vector_elems(t: torch.Tensor) -> int:
    return max(1, VECTOR_BYTES // t.element_size())


def is_vector_aligned(t: torch.Tensor) -> bool:
    """Whether every 16-byte chunk of t's rows starts 16-byte aligned: storage offset and every stride but the
    last a multiple of 16 bytes (dims of size 1 aside). Storages themselves are allocated aligned."""
    elems = _vector_elems(t)
    if t.storage_offset() % elems != 0:
        return False
    shape = t.shape  # this runs on every call's q, k, v (and dout, out): the usual case first
    if shape and shape[-1] > 0 and shape[-1] % elems == 0 and t.is_contiguous():
        return True  # every stride is a multiple of the last dim
    strides = t.stride()
    return all(size <= 1 or stride % elems == 0 for size, stride in zip(shape[:-1], strides[:-1]))


def vector_aligned(t: torch.Tensor) -> torch.Tensor:
    """t, or a contiguous copy when the kernels could not read it in place (see is_vector_aligned)."""
    return t if is_vector_aligned(t) else t.clone(memory_format=torch.contiguous_format)


def _check_vector_aligned(named: Sequence[Tuple[str, torch.Tensor]]) -> None:
    for name, t in named:
        if not is_vector_aligned(t):
            raise FlashAttnValueError(
                f"{name} must have a storage offset and strides (except the last) that are multiples of "
                f"{_vector_elems(t)} "
                f"elements (the kernels move 16 bytes at a time), got strides {tuple(t.stride())} and storage "
                f"offset {t.storage_offset()}; pass {name}.contiguous()"
            )


def _check_head_dims(head_dim: int, q_name: str, require_padded: bool) -> None:
    if head_dim <= 0:
        raise FlashAttnValueError(f"{q_name} head dim (last dimension) must be positive, got {head_dim}")
    if head_dim > MAX_HEADDIM:
        raise FlashAttnValueError(
            f"{q_name} head dim (last dimension) must be <= {MAX_HEADDIM}, got {head_dim}"
        )
    if require_padded and head_dim % 8 != 0:
        raise FlashAttnValueError(
            f"{q_name} head dim must be a multiple of 8 at the op level, got {head_dim} "
            "(the public flash_attn_* functions pad it)"
        )


def _check_heads(nheads: int, nheads_k: int) -> None:
    if nheads <= 0:
        raise FlashAttnValueError(f"q must have at least one head, got nheads={nheads}")
    if nheads_k <= 0:
        raise FlashAttnValueError(f"k must have at least one head, got nheads_k={nheads_k}")
    if nheads % nheads_k != 0:
        raise FlashAttnValueError(
            f"number of heads in q ({nheads}) must be divisible by the number of heads in k/v ({nheads_k})"
        )


def _check_qkv_agreement(q, k, v, nheads, head_dim, keys_name: str, require_padded: bool) -> None:
    """What dense and varlen layouts share: the last three dims are (keys, heads, head dim)."""
    if v.shape[-3] != k.shape[-3]:
        raise FlashAttnValueError(f"v {keys_name} ({v.shape[-3]}) must match k {keys_name} ({k.shape[-3]})")
    if v.shape[-2] != k.shape[-2]:
        raise FlashAttnValueError(f"v nheads_k ({v.shape[-2]}) must match k nheads_k ({k.shape[-2]})")
    _check_head_dims(head_dim, "q", require_padded)
    for name, t in (("k", k), ("v", v)):
        if t.shape[-1] != head_dim:
            raise FlashAttnValueError(f"{name} head dim ({t.shape[-1]}) must match q head dim ({head_dim})")
    _check_heads(nheads, k.shape[-2])
    _check_last_dim_contiguous((("q", q), ("k", k), ("v", v)))


def check_dense_tensors(q, k, v, *, require_padded: bool = False) -> None:
    """Shape/dtype/layout of dense q (b, sq, h, d), k and v (b, sk, hk, d)."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        _require_tensor(name, t)
    check_dtypes(q, (("k", k), ("v", v)))
    if q.dim() != 4:
        raise FlashAttnValueError(
            f"q must be 4-D (batch, seqlen_q, nheads, headdim), got shape {_shape(q)}"
        )
    for name, t in (("k", k), ("v", v)):
        if t.dim() != 4:
            raise FlashAttnValueError(
                f"{name} must be 4-D (batch, seqlen_k, nheads_k, headdim), got shape {_shape(t)}"
            )
    batch, _, nheads, head_dim = q.shape
    if batch <= 0:
        raise FlashAttnValueError(f"q batch size must be positive, got shape {_shape(q)}")
    if k.shape[0] != batch:
        raise FlashAttnValueError(f"k batch size ({k.shape[0]}) must match q batch size ({batch})")
    if v.shape[0] != batch:
        raise FlashAttnValueError(f"v batch size ({v.shape[0]}) must match q batch size ({batch})")
    _check_qkv_agreement(q, k, v, nheads, head_dim, "seqlen_k", require_padded)


def check_varlen_tensors(
    q, k, v, cu_seqlens_q, cu_seqlens_k, *, require_padded: bool = False, paged: bool = False
) -> None:
    """Shape/dtype/layout of varlen q (total_q, h, d), k/v (total_k, hk, d) (paged: (num_pages, page_size, hk, d))
    and cu_seqlens (b+1,) int32."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        _require_tensor(name, t)
    check_dtypes(q, (("k", k), ("v", v)))
    if q.dim() != 3:
        raise FlashAttnValueError(f"q must be 3-D (total_q, nheads, headdim), got shape {_shape(q)}")
    for name, t in (("k", k), ("v", v)):
        if paged and t.dim() != 4:
            raise FlashAttnValueError(
                f"{name} must be 4-D (num_pages, page_size, nheads_k, headdim) with block_table, got shape "
                f"{_shape(t)}"
            )
        if not paged and t.dim() != 3:
            raise FlashAttnValueError(
                f"{name} must be 3-D (total_k, nheads_k, headdim), got shape {_shape(t)}"
            )
    if paged and v.shape[:2] != k.shape[:2]:
        raise FlashAttnValueError(f"v pages {_shape(v)[:2]} must match k pages {_shape(k)[:2]}")
    _, nheads, head_dim = q.shape
    _check_qkv_agreement(q, k, v, nheads, head_dim, "total_k", require_padded)
    for name, cu in (("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k)):
        _require_tensor(name, cu)
        if cu.dtype != torch.int32:
            raise FlashAttnTypeError(f"{name} must have dtype torch.int32, got {cu.dtype}")
        if cu.dim() != 1:
            raise FlashAttnValueError(f"{name} must be 1-D (batch + 1,), got shape {_shape(cu)}")
        if cu.shape[0] < 2:
            raise FlashAttnValueError(
                f"{name} must have length batch + 1 >= 2 (batch must be positive), got shape {_shape(cu)}"
            )
        if not cu.is_contiguous():
            raise FlashAttnValueError(f"{name} must be contiguous, got strides {tuple(cu.stride())}")
    if cu_seqlens_k.shape[0] != cu_seqlens_q.shape[0]:
        raise FlashAttnValueError(
            f"cu_seqlens_k must have length batch + 1 = {cu_seqlens_q.shape[0]} (the length of cu_seqlens_q), "
            f"got {cu_seqlens_k.shape[0]}"
        )


def check_bwd_tensors(q, k, v, dout, out, softmax_lse, dq, dk, dv, lse_shape: Tuple[int, ...]) -> None:
    """The backward op's extra tensors against the (already checked) q, k, v: dout and out shaped like q,
    softmax_lse float32 of lse_shape, and dq/dk/dv (optional, may be strided views) shaped like q/k/v."""
    for name, t in (("dout", dout), ("out", out), ("softmax_lse", softmax_lse)):
        _require_tensor(name, t)
    grads = tuple((name, g, like) for name, g, like in (("dq", dq, q), ("dk", dk, k), ("dv", dv, v)) if g is not None)
    for name, g, _ in grads:
        _require_tensor(name, g)
    check_dtypes(q, (("dout", dout), ("out", out)) + tuple((name, g) for name, g, _ in grads))
    for name, t, like in (("dout", dout, q), ("out", out, q)) + grads:
        if t.shape != like.shape:
            like_name = {"dk": "k", "dv": "v"}.get(name, "q")
            raise FlashAttnValueError(
                f"{name} must have the shape of {like_name} {_shape(like)}, got {_shape(t)}"
            )
    _check_last_dim_contiguous((("dout", dout), ("out", out)) + tuple((name, g) for name, g, _ in grads))
    _check_vector_aligned(tuple((name, g) for name, g, _ in grads))  # outputs: inputs are copied instead
    if softmax_lse.dtype != torch.float32:
        raise FlashAttnTypeError(f"softmax_lse must have dtype torch.float32, got {softmax_lse.dtype}")
    if _shape(softmax_lse) != tuple(lse_shape):
        raise FlashAttnValueError(f"softmax_lse must have shape {tuple(lse_shape)}, got {_shape(softmax_lse)}")


def check_devices(q: torch.Tensor, others: Sequence[Tuple[str, Optional[torch.Tensor]]]) -> None:
    """q must be a CUDA tensor; every other tensor (None entries skipped) on q's device."""
    if q.device.type != "cuda":
        raise FlashAttnValueError(f"q must be a CUDA tensor, got device '{q.device}'")
    for name, t in others:
        if t is not None and t.device != q.device:
            raise FlashAttnValueError(
                f"{name} must be on the same device as q ({q.device}), got device '{t.device}'"
            )


# ----------------------------------------------------------------------------------------------------------
# Option checks
# ----------------------------------------------------------------------------------------------------------


def check_max_seqlen(name: str, value) -> int:
    n = as_int(name, value)
    if n < 0:
        raise FlashAttnValueError(f"{name} must be >= 0, got {n}")
    return n


def normalize_window(window_size, causal: bool, seqlen_k) -> Tuple[bool, int, int]:
    """The window semantics, defined here only: (causal, left, right) as the binding gets them, from a pair or a
    2-element integer tensor. As 2.x: key j is visible to query i iff i + sk - sq - left <= j <= i + sk - sq +
    right; -1 = unbounded (no other sentinel); a side reaching every key (>= seqlen_k; seqlen_k None: varlen, never)
    is unbounded; causal forces right = 0 and keeps left; (-1, 0) is plain causal attention, returned as
    (True, -1, -1)."""
    if isinstance(window_size, torch.Tensor):
        if window_size.numel() != 2 or window_size.dtype.is_floating_point or window_size.dtype == torch.bool:
            raise FlashAttnValueError(
                "window_size must be a pair of ints (left, right) or a 2-element integer tensor, "
                f"got a tensor of shape {_shape(window_size)} and dtype {window_size.dtype}"
            )
        left, right = (int(x) for x in window_size.flatten().tolist())
    else:
        if not isinstance(window_size, (tuple, list)) or len(window_size) != 2:
            raise FlashAttnValueError(f"window_size must be a pair of ints (left, right), got {window_size!r}")
        left = as_int("window_size[0]", window_size[0])
        right = as_int("window_size[1]", window_size[1])
    if left < -1 or right < -1:
        raise FlashAttnValueError(
            f"window_size entries must be >= -1 (-1 = unbounded), got window_size={(left, right)}"
        )
    if seqlen_k is not None and left >= seqlen_k:
        left = -1
    if seqlen_k is not None and right >= seqlen_k:
        right = -1
    if causal:
        right = 0
    if left < 0 and right == 0:
        return True, -1, -1
    return False, left, right


def check_fwd_options(
    head_dim: int,
    seqlen_k,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),
    softcap=0.0,
    alibi_slopes=None,
) -> FwdConfig:
    """Validate and normalise the scalar options of a forward call (head_dim = the caller's, unpadded)."""
    dropout_p = _as_float("dropout_p", dropout_p)
    if not (0.0 <= dropout_p < 1.0):
        raise FlashAttnValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    softcap = _as_float("softcap", softcap)
    if not (-math.inf < softcap < math.inf):  # <= 0 = off, as in 2.x (NaN fails both comparisons)
        raise FlashAttnValueError(f"softcap must be a finite number (<= 0 = off), got softcap={softcap}")
    if dropout_p > 0.0 and softcap > 0.0:
        raise FlashAttnValueError(
            f"dropout_p > 0 cannot be combined with softcap > 0 (got dropout_p={dropout_p}, softcap={softcap})"
        )
    if not isinstance(causal, (bool, torch.SymBool)):
        if isinstance(causal, int) and causal in (0, 1):
            causal = bool(causal)
        else:
            raise FlashAttnTypeError(f"causal must be a bool, got {type(causal).__name__}")
    if softmax_scale is None:
        softmax_scale = 1.0 / math.sqrt(head_dim)
    else:
        softmax_scale = _as_float("softmax_scale", softmax_scale)
    causal, left, right = normalize_window(window_size, causal, seqlen_k)
    return FwdConfig(softmax_scale, causal, left, right)


def check_alibi_slopes(alibi_slopes, batch: int, nheads: int) -> None:
    """alibi_slopes: None, or fp32 of shape (nheads,) or (batch, nheads) with a contiguous last dim."""
    if alibi_slopes is None:
        return
    if not isinstance(alibi_slopes, torch.Tensor):
        raise FlashAttnTypeError(f"alibi_slopes must be a torch.Tensor or None, got {type(alibi_slopes).__name__}")
    if alibi_slopes.dtype != torch.float32:
        raise FlashAttnTypeError(f"alibi_slopes must have dtype torch.float32, got {alibi_slopes.dtype}")
    shape = _shape(alibi_slopes)
    if shape not in ((nheads,), (batch, nheads)):
        raise FlashAttnValueError(
            f"alibi_slopes must have shape (nheads,) = ({nheads},) or (batch, nheads) = ({batch}, {nheads}), "
            f"got {shape}"
        )
    if alibi_slopes.stride(-1) != 1:
        raise FlashAttnValueError("alibi_slopes must be contiguous in its last dim (stride(-1) == 1)")


def check_block_table(block_table, k, batch: int, k_name: str = "k") -> int:
    """A paged cache: k (num_pages, page_size, nheads_k, headdim) and block_table (batch, max_blocks) int32 naming
    the page of every page_size positions. Returns the positions per sequence (max_blocks * page_size)."""
    _require_tensor("block_table", block_table)
    if block_table.dtype != torch.int32:
        raise FlashAttnTypeError(f"block_table must have dtype torch.int32, got {block_table.dtype}")
    if block_table.dim() != 2 or block_table.shape[0] != batch:
        raise FlashAttnValueError(
            f"block_table must have shape (batch, max_blocks_per_seq) = ({batch}, *), got {_shape(block_table)}"
        )
    if block_table.stride(-1) != 1:
        raise FlashAttnValueError("block_table must be contiguous in its last dim (stride(-1) == 1)")
    page_size = k.shape[1]
    if page_size % 16 != 0:
        raise FlashAttnValueError(
            f"paged KV cache: the page size ({k_name}.shape[1]) must be a multiple of 16, got {page_size}"
        )
    return block_table.shape[1] * page_size


def check_per_batch_int32(name: str, t, batch: int) -> None:
    if t is None:
        return
    _require_tensor(name, t)
    if t.dtype != torch.int32:
        raise FlashAttnTypeError(f"{name} must have dtype torch.int32, got {t.dtype}")
    if _shape(t) != (batch,):
        raise FlashAttnValueError(f"{name} must have shape (batch,) = ({batch},), got {_shape(t)}")


def _is_capturing(t: torch.Tensor) -> bool:
    return t.device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def _values_unreadable(t: torch.Tensor) -> bool:
    """Whether t's values cannot be read on the host now: while torch.compile traces (checked first, so dynamo
    folds the rest away), fake or meta tensors, CUDA graph capture (a copy would break the capture)."""
    return (torch.compiler.is_compiling() or torch._subclasses.fake_tensor.is_fake(t) or t.device.type == "meta"
            or _is_capturing(t))


def check_kvcache_capacity(cache_seqlens, seqlen_new: int, capacity: int) -> None:
    """cache_seqlens (int or (batch,) int32) + seqlen_new must fit the cache. A tensor is read on the host,
    except where it cannot be (_values_unreadable: the kernels then skip writes past the cache and clamp what
    they read)."""
    if isinstance(cache_seqlens, torch.Tensor):
        if _values_unreadable(cache_seqlens) or cache_seqlens.numel() == 0:
            return
        host = cache_seqlens.cpu()  # one copy (a synchronisation), not a reduction kernel and a copy per bound
        lo, hi = int(host.min()), int(host.max())
    else:
        lo = hi = cache_seqlens
    if lo < 0:
        raise FlashAttnValueError(f"cache_seqlens must be >= 0, got a minimum of {lo}")
    if hi + seqlen_new > capacity:
        raise FlashAttnValueError(
            f"cache_seqlens + seqlen_new must fit the cache: max(cache_seqlens) = {hi} plus {seqlen_new} new "
            f"tokens exceeds the cache's {capacity} positions (k_cache.shape[1], or max_blocks * page_size of "
            "block_table)"
        )


class KvcacheConfig(NamedTuple):
    fwd: FwdConfig
    cache_seqlens: Optional[torch.Tensor]  # (batch,) int32 on q's device, or None for a full cache
    rotary_dim: int
    num_splits: int  # 0 = heuristic


def validate_kvcache_args(q, k_cache, v_cache, k=None, v=None, rotary_cos=None, rotary_sin=None,
                          cache_seqlens=None, cache_batch_idx=None, cache_leftpad=None, block_table=None,
                          softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                          rotary_interleaved=True, alibi_slopes=None, num_splits=0, *,
                          check_device: bool = True) -> KvcacheConfig:
    """Everything flash_attn_with_kvcache needs checked (API.md); returns the normalised options."""
    for name, t in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache)):
        _require_tensor(name, t)
    check_dtypes(q, (("k_cache", k_cache), ("v_cache", v_cache)))
    if q.dim() != 4:
        raise FlashAttnValueError(f"q must be 4-D (batch, seqlen_q, nheads, headdim), got shape {_shape(q)}")
    for name, t in (("k_cache", k_cache), ("v_cache", v_cache)):
        if t.dim() != 4:
            raise FlashAttnValueError(
                f"{name} must be 4-D (batch_cache, seqlen_cache, nheads_k, headdim), got shape {_shape(t)}"
            )
    if _shape(v_cache) != _shape(k_cache):
        raise FlashAttnValueError(f"v_cache shape {_shape(v_cache)} must match k_cache shape {_shape(k_cache)}")
    batch, _, nheads, head_dim = q.shape
    if batch <= 0:
        raise FlashAttnValueError(f"q batch size must be positive, got shape {_shape(q)}")
    _check_head_dims(head_dim, "q", False)
    if k_cache.shape[-1] != head_dim:
        raise FlashAttnValueError(f"k_cache head dim ({k_cache.shape[-1]}) must match q head dim ({head_dim})")
    nheads_k, capacity = k_cache.shape[2], k_cache.shape[1]
    _check_heads(nheads, nheads_k)
    _check_last_dim_contiguous((("q", q), ("k_cache", k_cache), ("v_cache", v_cache)))
    check_per_batch_int32("cache_batch_idx", cache_batch_idx, batch)
    check_per_batch_int32("cache_leftpad", cache_leftpad, batch)
    if block_table is not None:  # paged: k_cache is (num_pages, page_size, nheads_k, headdim)
        capacity = check_block_table(block_table, k_cache, batch, "k_cache")
        if cache_batch_idx is not None or cache_leftpad is not None:
            raise FlashAttnValueError("cache_batch_idx and cache_leftpad do not work with a paged cache (block_table)")
    elif cache_batch_idx is None and k_cache.shape[0] != batch:
        raise FlashAttnValueError(
            f"k_cache batch size ({k_cache.shape[0]}) must match q batch size ({batch}) unless cache_batch_idx "
            "maps batch entries to cache rows"
        )
    if (k is None) != (v is None):
        raise FlashAttnValueError("k and v must be passed together (both new keys and new values, or neither)")
    seqlen_new = 0
    if k is not None:
        check_dtypes(q, (("k", k), ("v", v)))
        for name, t in (("k", k), ("v", v)):
            if t.dim() != 4 or t.shape[0] != batch or t.shape[2] != nheads_k or t.shape[3] != head_dim:
                raise FlashAttnValueError(
                    f"{name} must have shape (batch, seqlen_new, nheads_k, headdim) = ({batch}, *, {nheads_k}, "
                    f"{head_dim}), got {_shape(t)}"
                )
        if _shape(v) != _shape(k):
            raise FlashAttnValueError(f"v shape {_shape(v)} must match k shape {_shape(k)}")
        if cache_seqlens is None:
            raise FlashAttnValueError("appending k/v needs cache_seqlens (where each sequence's new tokens go)")
        _check_last_dim_contiguous((("k", k), ("v", v)))
        seqlen_new = k.shape[1]
    if cache_seqlens is not None:
        if isinstance(cache_seqlens, torch.Tensor):
            check_per_batch_int32("cache_seqlens", cache_seqlens, batch)
        else:
            cache_seqlens = as_int("cache_seqlens", cache_seqlens)
        check_kvcache_capacity(cache_seqlens, seqlen_new, capacity)
        if not isinstance(cache_seqlens, torch.Tensor):
            cache_seqlens = torch.full((batch,), cache_seqlens, dtype=torch.int32, device=q.device)
    if (rotary_cos is None) != (rotary_sin is None):
        raise FlashAttnValueError("rotary_cos and rotary_sin must be passed together")
    rotary_dim = 0
    if rotary_cos is not None:
        if k is None:
            raise FlashAttnValueError("rotary_cos/rotary_sin are applied to new k (and q): pass k and v with them")
        check_dtypes(q, (("rotary_cos", rotary_cos), ("rotary_sin", rotary_sin)))
        if rotary_cos.dim() != 2 or _shape(rotary_sin) != _shape(rotary_cos):
            raise FlashAttnValueError(
                "rotary_cos and rotary_sin must be 2-D (seqlen_ro, rotary_dim / 2) of the same shape, got "
                f"{_shape(rotary_cos)} and {_shape(rotary_sin)}"
            )
        rotary_dim = 2 * rotary_cos.shape[1]
        if rotary_dim <= 0 or rotary_dim % 16 != 0 or rotary_dim > head_dim:
            raise FlashAttnValueError(
                f"rotary_dim = 2 * rotary_cos.shape[1] = {rotary_dim} must be a positive multiple of 16 and "
                f"<= headdim ({head_dim})"
            )
        if rotary_cos.shape[0] < capacity:
            raise FlashAttnValueError(
                f"rotary_cos/rotary_sin need a row per cache position: seqlen_ro = {rotary_cos.shape[0]} < "
                f"the cache's {capacity} positions"
            )
    num_splits = as_int("num_splits", num_splits)
    if num_splits < 0:
        raise FlashAttnValueError(f"num_splits must be >= 0 (0 = heuristic), got {num_splits}")
    if not isinstance(rotary_interleaved, bool):
        raise FlashAttnTypeError(f"rotary_interleaved must be a bool, got {type(rotary_interleaved).__name__}")
    cfg = check_fwd_options(head_dim, capacity, 0.0, softmax_scale, causal, window_size, softcap, alibi_slopes)
    check_alibi_slopes(alibi_slopes, batch, nheads)
    if check_device:
        check_devices(q, (("k_cache", k_cache), ("v_cache", v_cache), ("k", k), ("v", v), ("rotary_cos", rotary_cos),
                          ("rotary_sin", rotary_sin), ("cache_seqlens", cache_seqlens),
                          ("cache_batch_idx", cache_batch_idx), ("cache_leftpad", cache_leftpad),
                          ("block_table", block_table), ("alibi_slopes", alibi_slopes)))
    check_kvcache_index_values(k_cache, cache_seqlens, seqlen_new, cache_batch_idx, cache_leftpad, block_table)
    return KvcacheConfig(cfg, cache_seqlens, rotary_dim, num_splits)


# ----------------------------------------------------------------------------------------------------------
# Entry-point validators
# ----------------------------------------------------------------------------------------------------------


def validate_fwd_args(
    q,
    k,
    v,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),
    softcap=0.0,
    alibi_slopes=None,
    *,
    check_device: bool = True,
    require_padded: bool = False,
) -> FwdConfig:
    """Everything a dense forward call needs checked; returns the normalised options. require_padded: the private
    op's call (head dim already a multiple of 8)."""
    check_dense_tensors(q, k, v, require_padded=require_padded)
    cfg = check_fwd_options(
        q.shape[-1], k.shape[1], dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes
    )
    check_alibi_slopes(alibi_slopes, q.shape[0], q.shape[2])
    if check_device:
        check_devices(q, (("k", k), ("v", v), ("alibi_slopes", alibi_slopes)))
    return cfg


def check_num_splits(num_splits, paged: bool) -> int:
    """The private varlen forward's num_splits (0 = heuristic, 1 = no split, n > 1 = split the keys n ways): an int
    >= 0, and at most 1 with a paged K/V (as in flash-attn 2.8)."""
    num_splits = as_int("num_splits", num_splits)
    if num_splits < 0:
        raise FlashAttnValueError(f"num_splits must be >= 0 (0 = heuristic), got {num_splits}")
    if num_splits > 1 and paged:
        raise FlashAttnValueError(
            f"num_splits > 1 is not supported with paged KV (block_table), got num_splits={num_splits}"
        )
    return num_splits


def validate_varlen_fwd_args(
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
    window_size=(-1, -1),
    softcap=0.0,
    alibi_slopes=None,
    block_table=None,
    *,
    check_device: bool = True,
    require_padded: bool = False,
    seqused_k=None,
    leftpad_k=None,
    num_splits=0,
) -> Tuple[FwdConfig, int, int]:
    """Everything a varlen forward call needs checked; returns (options, max_seqlen_q, max_seqlen_k) as ints.
    block_table: k and v are paged (num_pages, page_size, nheads_k, headdim); forward only. require_padded,
    seqused_k, leftpad_k, num_splits: the private op's call."""
    paged = block_table is not None
    check_num_splits(num_splits, paged)
    check_varlen_tensors(q, k, v, cu_seqlens_q, cu_seqlens_k, require_padded=require_padded, paged=paged)
    max_seqlen_q = check_max_seqlen("max_seqlen_q", max_seqlen_q)
    max_seqlen_k = check_max_seqlen("max_seqlen_k", max_seqlen_k)
    batch = cu_seqlens_q.shape[0] - 1
    if paged:
        check_block_table(block_table, k, batch)
        if leftpad_k is not None:
            raise FlashAttnValueError("leftpad_k does not work with a paged cache (block_table)")
    check_per_batch_int32("seqused_k", seqused_k, batch)
    check_per_batch_int32("leftpad_k", leftpad_k, batch)
    # Windows stay as given (seqlen_k None): max_seqlen_k may understate a sequence's keys (a stale bound, as in
    # CUDA-graph replays), so it cannot tell that a window covers every key.
    cfg = check_fwd_options(
        q.shape[-1], None, dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes
    )
    check_alibi_slopes(alibi_slopes, batch, q.shape[1])
    if check_device:
        check_devices(q, (("k", k), ("v", v), ("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k),
                          ("alibi_slopes", alibi_slopes), ("block_table", block_table), ("seqused_k", seqused_k),
                          ("leftpad_k", leftpad_k)))
    check_varlen_index_values(q, k, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, block_table, seqused_k,
                              leftpad_k)
    return cfg, max_seqlen_q, max_seqlen_k


def _bwd_named(k, v, dout, out, softmax_lse, dq, dk, dv, alibi_slopes):
    return (("k", k), ("v", v), ("dout", dout), ("out", out), ("softmax_lse", softmax_lse), ("dq", dq), ("dk", dk),
            ("dv", dv), ("alibi_slopes", alibi_slopes))


def validate_bwd_args(dout, q, k, v, out, softmax_lse, dq, dk, dv, dropout_p, softmax_scale, causal,
                      window_size_left, window_size_right, softcap, alibi_slopes, *,
                      check_device: bool = True) -> FwdConfig:
    """The private dense backward op's call (head dim already padded; dq/dk/dv optional, may be strided views);
    returns the normalised options. The public functions' backward gets tensors they made: no checks."""
    check_dense_tensors(q, k, v, require_padded=True)
    b, sq, h, _ = q.shape
    check_bwd_tensors(q, k, v, dout, out, softmax_lse, dq, dk, dv, (b, h, sq))
    cfg = check_fwd_options(q.shape[-1], k.shape[1], dropout_p, softmax_scale, causal,
                            (window_size_left, window_size_right), softcap, alibi_slopes)
    check_alibi_slopes(alibi_slopes, b, h)
    if check_device:
        check_devices(q, _bwd_named(k, v, dout, out, softmax_lse, dq, dk, dv, alibi_slopes))
    return cfg


def validate_varlen_bwd_args(dout, q, k, v, out, softmax_lse, dq, dk, dv, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                             max_seqlen_k, dropout_p, softmax_scale, causal, window_size_left, window_size_right,
                             softcap, alibi_slopes, *, check_device: bool = True) -> Tuple[FwdConfig, int, int]:
    """The private varlen backward op's call; returns (options, max_seqlen_q, max_seqlen_k)."""
    check_varlen_tensors(q, k, v, cu_seqlens_q, cu_seqlens_k, require_padded=True)
    total_q, h, _ = q.shape
    check_bwd_tensors(q, k, v, dout, out, softmax_lse, dq, dk, dv, (h, total_q))
    max_seqlen_q = check_max_seqlen("max_seqlen_q", max_seqlen_q)
    max_seqlen_k = check_max_seqlen("max_seqlen_k", max_seqlen_k)
    cfg = check_fwd_options(q.shape[-1], None, dropout_p, softmax_scale, causal,
                            (window_size_left, window_size_right), softcap, alibi_slopes)
    check_alibi_slopes(alibi_slopes, cu_seqlens_q.shape[0] - 1, h)
    if check_device:
        check_devices(q, _bwd_named(k, v, dout, out, softmax_lse, dq, dk, dv, alibi_slopes)
                      + (("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k)))
    check_varlen_index_values(q, k, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
    return cfg, max_seqlen_q, max_seqlen_k


def validate_rotary_args(x, cos, sin, cu_seqlens=None, max_seqlen=None, inplace: bool = False) -> None:
    """flash_attn.ops.triton.rotary.apply_rotary's call: x (batch, seqlen, nheads, headdim), or (total, nheads,
    headdim) with cu_seqlens and max_seqlen; cos/sin (seqlen_ro, rotary_dim / 2) of x's dtype. Devices, strides and
    seqlen_offsets are the binding's checks."""
    if not isinstance(x, torch.Tensor) or x.dim() != (3 if cu_seqlens is not None else 4):
        raise FlashAttnValueError(
            "x must be (batch, seqlen, nheads, headdim), or (total, nheads, headdim) with cu_seqlens")
    if cu_seqlens is not None and max_seqlen is None:
        raise FlashAttnValueError("max_seqlen is required with cu_seqlens")
    _require_tensor("cos", cos)
    _require_tensor("sin", sin)
    if cos.dim() != 2 or sin.shape != cos.shape:
        raise FlashAttnValueError(f"cos and sin must be 2-D (seqlen_ro, rotary_dim / 2) of one shape, got "
                                  f"{_shape(cos)} and {_shape(sin)}")
    if 2 * cos.shape[1] > x.shape[-1]:
        raise FlashAttnValueError(
            f"rotary_dim (2 * cos.shape[1] = {2 * cos.shape[1]}) must be <= headdim ({x.shape[-1]})")
    if x.shape[-1] > MAX_HEADDIM:
        raise FlashAttnValueError(f"headdim must be <= {MAX_HEADDIM}, got {x.shape[-1]}")
    if cos.dtype != x.dtype or sin.dtype != x.dtype:
        raise FlashAttnTypeError(f"cos/sin must have x's dtype {x.dtype}, got {cos.dtype} and {sin.dtype}")
    if inplace and x.stride(-1) != 1:
        raise FlashAttnValueError("inplace rotary needs x contiguous in its last dim")
    if cu_seqlens is not None:
        check_rotary_index_values(x, cu_seqlens, max_seqlen)


# ----------------------------------------------------------------------------------------------------------
# Build configuration (which kernels were compiled)
# ----------------------------------------------------------------------------------------------------------


class BuildConfig(NamedTuple):
    cuda_archs: Tuple[int, ...]
    ptx_archs: Tuple[int, ...]
    headdims: Tuple[int, ...]
    dtypes: Tuple[str, ...]
    found: bool  # False: flash_attn/_build_config.py missing (source tree) -> nothing built


def parse_build_config(module) -> BuildConfig:
    """BuildConfig from the generated ``flash_attn._build_config`` module (or None if it is missing)."""
    if module is None:
        return BuildConfig((), (), (), (), False)
    return BuildConfig(
        tuple(int(a) for a in getattr(module, "CUDA_ARCHS", ())),
        tuple(int(a) for a in getattr(module, "PTX_ARCHS", ())),
        tuple(int(d) for d in getattr(module, "HEADDIMS", ())),
        tuple(str(d) for d in getattr(module, "DTYPES", ())),
        True,
    )


_BUILD_CONFIG: Optional[BuildConfig] = None


def get_build_config() -> BuildConfig:
    global _BUILD_CONFIG
    if _BUILD_CONFIG is None:
        try:
            from flash_attn import _build_config as module  # generated by setup.py
        except ImportError:
            module = None
        _BUILD_CONFIG = parse_build_config(module)
    return _BUILD_CONFIG


def _env_suggestion(var: str, current, extra) -> str:
    values = [str(x) for x in current]
    if str(extra) not in values:
        values.append(str(extra))
    return f'{var}="{";".join(values)}"'


def _arch_runs(cfg: BuildConfig, major: int, minor: int) -> bool:
    cc = major * 10 + minor
    # SASS runs on the same major version with an equal or newer minor; PTX JIT-compiles for any newer arch.
    if any(a // 10 == major and a <= cc for a in cfg.cuda_archs):
        return True
    return any(p <= cc for p in cfg.ptx_archs)


def check_build(dtype: torch.dtype, head_dim: int, device: Optional[torch.device] = None) -> None:
    """RuntimeError if the kernel for (dtype, head dim bucket, device arch) was not compiled in."""
    cfg = get_build_config()
    note = "" if cfg.found else " (no build configuration found: flash_attn/_build_config.py is missing)"
    bucket = head_dim_bucket(head_dim)
    if bucket not in cfg.headdims:
        raise RuntimeError(
            f"flash_attn was built without head dim {bucket} kernels (head_dim={head_dim}); rebuild with "
            f"{_env_suggestion('FLASH_ATTN_HEADDIMS', cfg.headdims, bucket)}{note}"
        )
    dname = DTYPE_NAMES.get(dtype)
    if dname is None:
        raise FlashAttnTypeError(f"q must have dtype torch.float16 or torch.bfloat16, got {dtype}")
    if dname not in cfg.dtypes:
        raise RuntimeError(
            f"flash_attn was built without {dname} kernels (dtype={dtype}); rebuild with "
            f"{_env_suggestion('FLASH_ATTN_DTYPES', cfg.dtypes, dname)}{note}"
        )
    if device is not None and torch.device(device).type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if major < 8:
            raise RuntimeError(
                f"FlashAttention requires an Ampere (sm80) or newer GPU, got compute capability {major}.{minor}"
            )
        if not _arch_runs(cfg, major, minor):
            raise RuntimeError(
                f"flash_attn was built without kernels for this GPU (compute capability {major}.{minor}, "
                f"built SASS {list(cfg.cuda_archs)}, PTX {list(cfg.ptx_archs)}); rebuild with "
                f"{_env_suggestion('FLASH_ATTN_CUDA_ARCHS', cfg.cuda_archs, major * 10 + minor)}{note}"
            )


def check_packed(name: str, t, ndim: int, axis: int, count: int, layout: str) -> None:
    """Packed qkv / kv: ``ndim``-D with ``count`` entries along ``axis`` (e.g. qkv (b, s, 3, h, d))."""
    _require_tensor(name, t)
    if t.dim() != ndim or t.shape[axis] != count:
        raise FlashAttnValueError(f"{name} must be {ndim}-D {layout}, got shape {_shape(t)}")


# ----------------------------------------------------------------------------------------------------------
# Index tensors (opt-in: FLASH_ATTN_CHECK_INPUTS=1)
# ----------------------------------------------------------------------------------------------------------
#
# The kernels never read or write outside the tensors of a call whatever the index tensors hold (csrc/flash/seqlen.h
# and paged.h clamp them; a sequence longer than max_seqlen is still computed whole). A bad value there is still a
# caller's bug, and with FLASH_ATTN_CHECK_INPUTS=1 the calls read these tensors on the host (one copy per call) and
# raise FlashAttnIndexError for it. Off by default: the copy synchronises with the GPU, which stalls training and
# cannot happen while a CUDA graph is being captured (the checks are skipped then).

CHECK_INPUTS_ENV = "FLASH_ATTN_CHECK_INPUTS"


class FlashAttnIndexError(FlashAttnValueError):
    """A value in an index tensor (cu_seqlens, block_table, cache_batch_idx, ...) that does not fit the call."""


def index_checks_enabled() -> bool:
    return os.environ.get(CHECK_INPUTS_ENV, "0") not in ("", "0")


def _host_values(named: Sequence[Tuple[str, Optional[torch.Tensor]]]):
    """{name: host int64 tensor} for the given tensors, copied in one transfer; None when there is nothing to check
    (validation off, or values unreadable: torch.compile tracing, meta/fake tensors, CUDA graph capture)."""
    if torch.compiler.is_compiling():  # before the environment read: nothing to trace here
        return None
    tensors = [(name, t) for name, t in named if isinstance(t, torch.Tensor)]
    if not index_checks_enabled() or not tensors:
        return None
    if any(_values_unreadable(t) for _, t in tensors):
        return None
    flat = torch.cat([t.reshape(-1).to(torch.int64) for _, t in tensors]).cpu()
    out, at = {}, 0
    for name, t in tensors:
        out[name] = flat[at:at + t.numel()].reshape(t.shape)
        at += t.numel()
    return out


def _check_cu_seqlens_values(name: str, cu: torch.Tensor, total: int, total_name: str, max_name: str,
                             max_seqlen: Optional[int]) -> torch.Tensor:
    """Lengths of the sequences of a host cu_seqlens."""
    if int(cu[0]) < 0:
        raise FlashAttnIndexError(f"{name}[0] must be >= 0, got {int(cu[0])}")
    lengths = cu[1:] - cu[:-1]
    bad = (lengths < 0).nonzero()
    if bad.numel():
        i = int(bad[0, 0])
        raise FlashAttnIndexError(
            f"{name} must be non-decreasing, got {name}[{i + 1}] = {int(cu[i + 1])} < {name}[{i}] = {int(cu[i])}")
    if int(cu[-1]) > total:
        raise FlashAttnIndexError(
            f"{name}[-1] = {int(cu[-1])} runs past the packed tokens: {total_name} = {total}")
    if max_seqlen is not None and lengths.numel() and int(lengths.max()) > max_seqlen:
        i = int(lengths.argmax())
        raise FlashAttnIndexError(
            f"{max_name} = {max_seqlen} is smaller than sequence {i}'s length {int(lengths[i])} "
            f"({name}[{i + 1}] - {name}[{i}])")
    return lengths


def _check_range(name: str, values: torch.Tensor, lo, hi, what: str) -> None:
    """Every entry of values (host, any shape; lo/hi scalars or per-entry tensors) in [lo, hi]."""
    bad = ((values < lo) | (values > hi)).nonzero()
    if bad.numel():
        idx = tuple(int(i) for i in bad[0])
        at = ", ".join(map(str, idx))
        lo_v = int(lo[idx]) if isinstance(lo, torch.Tensor) else lo
        hi_v = int(hi[idx]) if isinstance(hi, torch.Tensor) else hi
        raise FlashAttnIndexError(f"{name}[{at}] = {int(values[idx])} must be in [{lo_v}, {hi_v}] ({what})")


def _check_block_table_values(block_table: torch.Tensor, used: torch.Tensor, page_size: int, num_pages: int,
                              k_name: str) -> None:
    """The entries a sequence of used[b] keys reads (the first ceil(used / page_size)) name pages of the cache;
    entries past them are never read and may hold anything (Hugging Face pads with -1)."""
    blocks = (used.clamp(min=0) + page_size - 1) // page_size
    in_use = torch.arange(block_table.shape[1])[None, :] < blocks[:, None]
    bad = (in_use & ((block_table < 0) | (block_table >= num_pages))).nonzero()
    if bad.numel():
        b, j = (int(i) for i in bad[0])
        raise FlashAttnIndexError(
            f"block_table[{b}, {j}] = {int(block_table[b, j])} is not a page of {k_name} ({k_name}.shape[0] = "
            f"{num_pages} pages); sequence {b} uses its first {int(blocks[b])} entries")


def check_varlen_index_values(q, k, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, block_table=None,
                              seqused_k=None, leftpad_k=None) -> None:
    """FLASH_ATTN_CHECK_INPUTS=1: a varlen call's cu_seqlens (non-decreasing, within q/k's rows, lengths up to
    max_seqlen), seqused_k / leftpad_k and the block-table entries in use."""
    host = _host_values((("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k), ("block_table", block_table),
                         ("seqused_k", seqused_k), ("leftpad_k", leftpad_k)))
    if host is None:
        return
    paged = block_table is not None
    _check_cu_seqlens_values("cu_seqlens_q", host["cu_seqlens_q"], q.shape[0], "q.shape[0]", "max_seqlen_q",
                             max_seqlen_q)
    k_total = block_table.shape[1] * k.shape[1] if paged else k.shape[0]
    keys = _check_cu_seqlens_values("cu_seqlens_k", host["cu_seqlens_k"], math.inf if paged else k_total,
                                    "k.shape[0]", "max_seqlen_k", None if seqused_k is not None else max_seqlen_k)
    if paged:
        _check_range("cu_seqlens_k lengths", keys, 0, k_total, "a sequence fits the block table's "
                     f"{block_table.shape[1]} pages of {k.shape[1]}")
    used = keys
    if seqused_k is not None:
        used = host["seqused_k"]
        _check_range("seqused_k", used, 0, keys, "at most the sequence's keys from cu_seqlens_k")
        if max_seqlen_k is not None and used.numel() and int(used.max()) > max_seqlen_k:
            raise FlashAttnIndexError(
                f"max_seqlen_k = {max_seqlen_k} is smaller than seqused_k[{int(used.argmax())}] = {int(used.max())}")
    if leftpad_k is not None:
        _check_range("leftpad_k", host["leftpad_k"], 0, used, "at most the keys in use")
    if paged:
        _check_block_table_values(host["block_table"], used, k.shape[1], k.shape[0], "k")


def check_kvcache_index_values(k_cache, cache_seqlens, seqlen_new: int, cache_batch_idx=None, cache_leftpad=None,
                               block_table=None) -> None:
    """FLASH_ATTN_CHECK_INPUTS=1: flash_attn_with_kvcache's cache_batch_idx (rows of k_cache), cache_leftpad (within
    the keys in use) and the block-table entries in use (cache_seqlens + the appended keys)."""
    host = _host_values((("cache_seqlens", cache_seqlens), ("cache_batch_idx", cache_batch_idx),
                         ("cache_leftpad", cache_leftpad), ("block_table", block_table)))
    if host is None:
        return
    if cache_batch_idx is not None:
        _check_range("cache_batch_idx", host["cache_batch_idx"], 0, k_cache.shape[0] - 1,
                     f"a row of k_cache, whose batch size is {k_cache.shape[0]}")
    capacity = block_table.shape[1] * k_cache.shape[1] if block_table is not None else k_cache.shape[1]
    used = host["cache_seqlens"] + seqlen_new if cache_seqlens is not None else None
    if used is not None:
        _check_range("cache_seqlens", host["cache_seqlens"], 0, capacity - seqlen_new,
                     f"the cached and {seqlen_new} appended tokens fit the cache's {capacity} positions")
    if cache_leftpad is not None:
        hi = used if used is not None else capacity
        _check_range("cache_leftpad", host["cache_leftpad"], 0, hi, "at most the keys in use")
    if block_table is not None:
        if used is None:
            used = torch.full((block_table.shape[0],), capacity, dtype=torch.int64)
        _check_block_table_values(host["block_table"], used, k_cache.shape[1], k_cache.shape[0], "k_cache")


def check_rotary_index_values(x, cu_seqlens, max_seqlen) -> None:
    """FLASH_ATTN_CHECK_INPUTS=1: apply_rotary's varlen cu_seqlens (non-decreasing, within x's rows, lengths up to
    max_seqlen)."""
    host = _host_values((("cu_seqlens", cu_seqlens),))
    if host is None:
        return
    _check_cu_seqlens_values("cu_seqlens", host["cu_seqlens"], x.shape[0], "x.shape[0]", "max_seqlen",
                             None if max_seqlen is None else int(max_seqlen))
