"""``apply_rotary`` where 2.x code imports it (``flash_attn.ops.triton.rotary``); here it runs our CUDA kernel."""

from typing import Optional, Union

import torch

from flash_attn import _checks
from flash_attn._ops import _require_extension


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, seqlen_offsets: Union[int, torch.Tensor] = 0,
                 cu_seqlens: Optional[torch.Tensor] = None, max_seqlen: Optional[int] = None,
                 interleaved: bool = False, inplace: bool = False, conjugate: bool = False) -> torch.Tensor:
    """x (batch, seqlen, nheads, headdim), or (total, nheads, headdim) with cu_seqlens and max_seqlen; cos/sin
    (seqlen_ro, rotary_dim / 2). The first rotary_dim channels rotated (by minus the angle with conjugate), the rest
    copied; positions past seqlen_ro are left as they are. Returns the result (x itself when inplace)."""
    if not isinstance(x, torch.Tensor) or x.dim() != (3 if cu_seqlens is not None else 4):
        raise ValueError("x must be (batch, seqlen, nheads, headdim), or (total, nheads, headdim) with cu_seqlens")
    if cu_seqlens is not None and max_seqlen is None:
        raise ValueError("max_seqlen is required with cu_seqlens")
    if cos.dim() != 2 or sin.shape != cos.shape:
        raise ValueError(f"cos and sin must be 2-D (seqlen_ro, rotary_dim / 2) of one shape, got {tuple(cos.shape)} "
                         f"and {tuple(sin.shape)}")
    if 2 * cos.shape[1] > x.shape[-1]:
        raise ValueError(f"rotary_dim (2 * cos.shape[1] = {2 * cos.shape[1]}) must be <= headdim ({x.shape[-1]})")
    if x.shape[-1] > 256:
        raise ValueError(f"headdim must be <= 256, got {x.shape[-1]}")
    if cos.dtype != x.dtype or sin.dtype != x.dtype:
        raise TypeError(f"cos/sin must have x's dtype {x.dtype}, got {cos.dtype} and {sin.dtype}")
    if cu_seqlens is not None:
        _checks.check_rotary_index_values(x, cu_seqlens, max_seqlen)
    if x.stride(-1) != 1:
        if inplace:
            raise ValueError("inplace rotary needs x contiguous in its last dim")
        x = x.contiguous()
    cos, sin = (t if t.stride(-1) == 1 else t.contiguous() for t in (cos, sin))
    if sin.stride(0) != cos.stride(0):
        cos, sin = cos.contiguous(), sin.contiguous()
    out = x if inplace else torch.empty_like(x, memory_format=torch.contiguous_format)
    offsets = seqlen_offsets if isinstance(seqlen_offsets, torch.Tensor) else None
    offset = 0 if offsets is not None else int(seqlen_offsets)
    if offsets is not None:
        offsets = offsets.contiguous()
    _require_extension().apply_rotary(x, cos, sin, out, offsets, offset, cu_seqlens,
                                      int(max_seqlen) if max_seqlen is not None else 0, interleaved, conjugate)
    return out
