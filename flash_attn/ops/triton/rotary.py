"""``apply_rotary`` where 2.x code imports it (``flash_attn.ops.triton.rotary``); here it runs our CUDA kernel
through the ``flash_attn::apply_rotary`` / ``apply_rotary_`` custom ops (opaque to torch.compile)."""

from typing import Optional, Union

import torch

from flash_attn import _checks, _ops


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, seqlen_offsets: Union[int, torch.Tensor] = 0,
                 cu_seqlens: Optional[torch.Tensor] = None, max_seqlen: Optional[int] = None,
                 interleaved: bool = False, inplace: bool = False, conjugate: bool = False) -> torch.Tensor:
    """x (batch, seqlen, nheads, headdim), or (total, nheads, headdim) with cu_seqlens and max_seqlen; cos/sin
    (seqlen_ro, rotary_dim / 2). The first rotary_dim channels rotated (by minus the angle with conjugate), the rest
    copied; positions past seqlen_ro are left as they are. Returns the result (x itself when inplace)."""
    _checks.validate_rotary_args(x, cos, sin, cu_seqlens, max_seqlen, inplace)
    offsets = seqlen_offsets if isinstance(seqlen_offsets, torch.Tensor) else None
    offset = 0 if offsets is not None else int(seqlen_offsets)
    max_seqlen = int(max_seqlen) if max_seqlen is not None else 0
    if inplace:
        _ops.apply_rotary_(x, cos, sin, offsets, offset, cu_seqlens, max_seqlen, interleaved, conjugate)
        return x
    return _ops.apply_rotary(x, cos, sin, offsets, offset, cu_seqlens, max_seqlen, interleaved, conjugate)
