"""Rotary position embeddings (flash_attn.layers.rotary, 2.x API): functions with autograd and the
RotaryEmbedding module. The rotation runs in our CUDA kernel (flash_attn.ops.triton.rotary.apply_rotary, named
where 2.x keeps it; a custom op, so torch.compile traces these functions); rotate_half and apply_rotary_emb_torch are
the plain PyTorch definitions."""

from typing import Optional, Tuple, Union

import torch

from flash_attn.ops.triton.rotary import apply_rotary


def rotate_half(x: torch.Tensor, interleaved: bool = False) -> torch.Tensor:
    if not interleaved:
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((-x2, x1), dim=-1)
    x1, x2 = x[..., ::2], x[..., 1::2]
    return torch.stack((-x2, x1), dim=-1).flatten(-2)


def apply_rotary_emb_torch(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                           interleaved: bool = False) -> torch.Tensor:
    """x (batch, seqlen, nheads, headdim), cos/sin (seqlen, rotary_dim / 2): the reference rotation."""
    ro_dim = cos.shape[-1] * 2
    assert ro_dim <= x.shape[-1]
    seqlen = x.shape[1]
    if interleaved:
        cos, sin = cos.repeat_interleave(2, dim=-1), sin.repeat_interleave(2, dim=-1)
    else:
        cos, sin = torch.cat((cos, cos), dim=-1), torch.cat((sin, sin), dim=-1)
    cos, sin = cos[:seqlen].unsqueeze(-2), sin[:seqlen].unsqueeze(-2)  # (seqlen, 1, rotary_dim)
    rotated = x[..., :ro_dim] * cos + rotate_half(x[..., :ro_dim], interleaved) * sin
    return torch.cat((rotated, x[..., ro_dim:]), dim=-1)


def _tracked(*tensors) -> bool:
    """Whether autograd records the call. When it does not, the rotation runs without its autograd.Function (whose
    ctx.mark_dirty torch.compile traces only for inputs that require grad)."""
    return torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)


class ApplyRotaryEmb(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, cos, sin, interleaved=False, inplace=False, seqlen_offsets: Union[int, torch.Tensor] = 0,
                cu_seqlens: Optional[torch.Tensor] = None, max_seqlen: Optional[int] = None):
        out = apply_rotary(x, cos, sin, seqlen_offsets=seqlen_offsets, cu_seqlens=cu_seqlens, max_seqlen=max_seqlen,
                           interleaved=interleaved, inplace=inplace)
        if inplace:
            ctx.mark_dirty(x)
        if isinstance(seqlen_offsets, int):
            ctx.save_for_backward(cos, sin, cu_seqlens)
            ctx.seqlen_offsets = seqlen_offsets
        else:
            ctx.save_for_backward(cos, sin, cu_seqlens, seqlen_offsets)
            ctx.seqlen_offsets = None
        ctx.interleaved, ctx.inplace, ctx.max_seqlen = interleaved, inplace, max_seqlen
        return out if not inplace else x

    @staticmethod
    def backward(ctx, do):
        if ctx.seqlen_offsets is None:
            cos, sin, cu_seqlens, seqlen_offsets = ctx.saved_tensors
        else:
            cos, sin, cu_seqlens = ctx.saved_tensors
            seqlen_offsets = ctx.seqlen_offsets
        # The inverse rotation, never in place: do may be a tensor the caller still holds (autograd.grad's
        # grad_outputs), and rotating it would change their copy.
        dx = apply_rotary(do, cos, sin, seqlen_offsets=seqlen_offsets, cu_seqlens=cu_seqlens,
                          max_seqlen=ctx.max_seqlen, interleaved=ctx.interleaved, inplace=False, conjugate=True)
        return dx, None, None, None, None, None, None, None


def apply_rotary_emb(x, cos, sin, interleaved=False, inplace=False, seqlen_offsets: Union[int, torch.Tensor] = 0,
                     cu_seqlens: Optional[torch.Tensor] = None, max_seqlen: Optional[int] = None):
    """x (batch, seqlen, nheads, headdim), or (total, nheads, headdim) with cu_seqlens and max_seqlen; cos/sin
    (seqlen_ro, rotary_dim / 2), rotary_dim <= headdim. The first rotary_dim channels become x * cos +
    rotate(x) * sin at positions i + seqlen_offsets (int, or (batch,) int32/int64); the rest are copied.
    interleaved: GPT-J pairs (0, 1), (2, 3), ...; else GPT-NeoX halves."""
    if not _tracked(x, cos, sin):
        return apply_rotary(x, cos, sin, seqlen_offsets=seqlen_offsets, cu_seqlens=cu_seqlens, max_seqlen=max_seqlen,
                            interleaved=interleaved, inplace=inplace)
    return ApplyRotaryEmb.apply(x, cos, sin, interleaved, inplace, seqlen_offsets, cu_seqlens, max_seqlen)


apply_rotary_emb_func = apply_rotary_emb


def _qk_views(qkv: torch.Tensor, num_heads_q: Optional[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """q and k of a packed qkv: (b, s, 3, h, d), or (b, s, hq + 2 hk, d) with num_heads_q."""
    if qkv.dim() == 5:
        if qkv.shape[2] != 3:
            raise ValueError(f"qkv must be (batch, seqlen, 3, nheads, headdim), got {tuple(qkv.shape)}")
        return qkv[:, :, 0], qkv[:, :, 1]
    if qkv.dim() != 4 or num_heads_q is None:
        raise ValueError("qkv must be (batch, seqlen, 3, nheads, headdim), or (batch, seqlen, nheads_q + 2 nheads_k, "
                         f"headdim) with num_heads_q; got shape {tuple(qkv.shape)}")
    num_heads_k = (qkv.shape[2] - num_heads_q) // 2
    if num_heads_q + 2 * num_heads_k != qkv.shape[2]:
        raise ValueError(f"qkv's {qkv.shape[2]} heads are not num_heads_q ({num_heads_q}) + 2 * nheads_k")
    return qkv[:, :, :num_heads_q], qkv[:, :, num_heads_q:num_heads_q + num_heads_k]


def _rotate_qk_(qkv, cos, sin, cos_k, sin_k, interleaved, seqlen_offsets, num_heads_q):
    q, k = _qk_views(qkv, num_heads_q)
    apply_rotary(q, cos, sin, seqlen_offsets, interleaved=interleaved, inplace=True)
    apply_rotary(k, cos_k, sin_k, seqlen_offsets, interleaved=interleaved, inplace=True)


def _check_kv(kv):
    if kv.dim() != 5 or kv.shape[2] != 2:
        raise ValueError(f"kv must be (batch, seqlen, 2, nheads, headdim), got {tuple(kv.shape)}")


class ApplyRotaryEmbQKV_(torch.autograd.Function):
    @staticmethod
    def forward(ctx, qkv, cos, sin, cos_k=None, sin_k=None, interleaved=False,
                seqlen_offsets: Union[int, torch.Tensor] = 0, num_heads_q=None):
        cos_k = cos if cos_k is None else cos_k
        sin_k = sin if sin_k is None else sin_k
        _rotate_qk_(qkv, cos, sin, cos_k, sin_k, interleaved, seqlen_offsets, num_heads_q)
        ctx.mark_dirty(qkv)
        tensors = (cos, sin, cos_k, sin_k) + ((seqlen_offsets,) if isinstance(seqlen_offsets, torch.Tensor) else ())
        ctx.save_for_backward(*tensors)
        ctx.seqlen_offsets = None if isinstance(seqlen_offsets, torch.Tensor) else seqlen_offsets
        ctx.interleaved, ctx.num_heads_q = interleaved, num_heads_q
        return qkv

    @staticmethod
    def backward(ctx, dqkv):
        cos, sin, cos_k, sin_k, *rest = ctx.saved_tensors
        seqlen_offsets = rest[0] if rest else ctx.seqlen_offsets
        dqkv = dqkv.clone()  # rotated in place below; the incoming gradient may be the caller's tensor
        dq, dk = _qk_views(dqkv, ctx.num_heads_q)
        apply_rotary(dq, cos, sin, seqlen_offsets, interleaved=ctx.interleaved, inplace=True, conjugate=True)
        apply_rotary(dk, cos_k, sin_k, seqlen_offsets, interleaved=ctx.interleaved, inplace=True, conjugate=True)
        return dqkv, None, None, None, None, None, None, None


def apply_rotary_emb_qkv_(qkv, cos, sin, cos_k=None, sin_k=None, interleaved=False,
                          seqlen_offsets: Union[int, torch.Tensor] = 0, num_heads_q=None):
    """In place on q and k of qkv (batch, seqlen, 3, nheads, headdim), or (batch, seqlen, nheads_q + 2 nheads_k,
    headdim) with num_heads_q; k uses cos_k/sin_k when given. Returns qkv."""
    if not _tracked(qkv, cos, sin, cos_k, sin_k):
        _rotate_qk_(qkv, cos, sin, cos if cos_k is None else cos_k, sin if sin_k is None else sin_k, interleaved,
                    seqlen_offsets, num_heads_q)
        return qkv
    return ApplyRotaryEmbQKV_.apply(qkv, cos, sin, cos_k, sin_k, interleaved, seqlen_offsets, num_heads_q)


class ApplyRotaryEmbKV_(torch.autograd.Function):
    @staticmethod
    def forward(ctx, kv, cos, sin, interleaved=False, seqlen_offsets: Union[int, torch.Tensor] = 0):
        _check_kv(kv)
        apply_rotary(kv[:, :, 0], cos, sin, seqlen_offsets, interleaved=interleaved, inplace=True)
        ctx.mark_dirty(kv)
        tensors = (cos, sin) + ((seqlen_offsets,) if isinstance(seqlen_offsets, torch.Tensor) else ())
        ctx.save_for_backward(*tensors)
        ctx.seqlen_offsets = None if isinstance(seqlen_offsets, torch.Tensor) else seqlen_offsets
        ctx.interleaved = interleaved
        return kv

    @staticmethod
    def backward(ctx, dkv):
        cos, sin, *rest = ctx.saved_tensors
        seqlen_offsets = rest[0] if rest else ctx.seqlen_offsets
        dkv = dkv.clone()  # rotated in place below; the incoming gradient may be the caller's tensor
        apply_rotary(dkv[:, :, 0], cos, sin, seqlen_offsets, interleaved=ctx.interleaved, inplace=True,
                     conjugate=True)
        return dkv, None, None, None, None


def apply_rotary_emb_kv_(kv, cos, sin, interleaved=False, seqlen_offsets: Union[int, torch.Tensor] = 0):
    """In place on k of kv (batch, seqlen, 2, nheads, headdim). Returns kv."""
    if not _tracked(kv, cos, sin):
        _check_kv(kv)
        apply_rotary(kv[:, :, 0], cos, sin, seqlen_offsets, interleaved=interleaved, inplace=True)
        return kv
    return ApplyRotaryEmbKV_.apply(kv, cos, sin, interleaved, seqlen_offsets)


class RotaryEmbedding(torch.nn.Module):
    """Rotary embeddings (RoFormer; XPos with scale_base) applied in place to packed qkv, or to q and kv.

    inv_freq = 1 / base^(arange(0, dim, 2) / dim); the cos/sin tables are computed in fp32 and cached in the
    input's dtype, grown as longer sequences come."""

    def __init__(self, dim: int, base=10000.0, interleaved=False, scale_base=None, pos_idx_in_fp32=True,
                 device=None):
        super().__init__()
        self.dim, self.base = dim, float(base)
        self.pos_idx_in_fp32 = pos_idx_in_fp32
        self.register_buffer("inv_freq", self._compute_inv_freq(device), persistent=False)
        self.interleaved, self.scale_base = interleaved, scale_base
        scale = ((torch.arange(0, dim, 2, device=device, dtype=torch.float32) + 0.4 * dim) / (1.4 * dim)
                 if scale_base is not None else None)
        self.register_buffer("scale", scale, persistent=False)
        self._seq_len_cached = 0
        self._cos_cached = self._sin_cached = self._cos_k_cached = self._sin_k_cached = None

    def _compute_inv_freq(self, device=None):
        return 1.0 / (self.base ** (torch.arange(0, self.dim, 2, device=device, dtype=torch.float32) / self.dim))

    def _update_cos_sin_cache(self, seqlen, device=None, dtype=None):
        if (seqlen > self._seq_len_cached or self._cos_cached is None or self._cos_cached.device != device
                or self._cos_cached.dtype != dtype or (self.training and self._cos_cached.is_inference())):
            self._seq_len_cached = seqlen
            if self.pos_idx_in_fp32:
                t = torch.arange(seqlen, device=device, dtype=torch.float32)
                inv_freq = self.inv_freq.to(torch.float32) if self.inv_freq.dtype != torch.float32 else self.inv_freq
            else:
                t = torch.arange(seqlen, device=device, dtype=self.inv_freq.dtype)
                inv_freq = self.inv_freq
            freqs = torch.outer(t, inv_freq)
            if self.scale is None:
                self._cos_cached = torch.cos(freqs).to(dtype)
                self._sin_cached = torch.sin(freqs).to(dtype)
            else:
                power = (torch.arange(seqlen, dtype=self.scale.dtype, device=self.scale.device)
                         - seqlen // 2) / self.scale_base
                scale = self.scale.to(device=power.device) ** power.unsqueeze(-1)
                self._cos_cached = (torch.cos(freqs) * scale).to(dtype)
                self._sin_cached = (torch.sin(freqs) * scale).to(dtype)
                self._cos_k_cached = (torch.cos(freqs) / scale).to(dtype)
                self._sin_k_cached = (torch.sin(freqs) / scale).to(dtype)

    def forward(self, qkv: torch.Tensor, kv: Optional[torch.Tensor] = None,
                seqlen_offset: Union[int, torch.Tensor] = 0, max_seqlen: Optional[int] = None,
                num_heads_q: Optional[int] = None):
        """qkv (batch, seqlen, 3, nheads, headdim) or (batch, seqlen, nheads_q + 2 nheads_k, headdim) with
        num_heads_q, or q (batch, seqlen, nheads, headdim) with kv (batch, seqlen, 2, nheads, headdim); rotated
        in place at positions seqlen_offset + i. Returns qkv, or (q, kv)."""
        seqlen = qkv.shape[1]
        if max_seqlen is not None:
            self._update_cos_sin_cache(max_seqlen, device=qkv.device, dtype=qkv.dtype)
        elif isinstance(seqlen_offset, int):
            self._update_cos_sin_cache(seqlen + seqlen_offset, device=qkv.device, dtype=qkv.dtype)
        if kv is None:
            return apply_rotary_emb_qkv_(qkv, self._cos_cached, self._sin_cached, self._cos_k_cached,
                                         self._sin_k_cached, interleaved=self.interleaved,
                                         seqlen_offsets=seqlen_offset, num_heads_q=num_heads_q)
        q = apply_rotary_emb_func(qkv, self._cos_cached, self._sin_cached, interleaved=self.interleaved,
                                  inplace=True, seqlen_offsets=seqlen_offset)
        cos_k = self._cos_cached if self.scale is None else self._cos_k_cached
        sin_k = self._sin_cached if self.scale is None else self._sin_k_cached
        kv = apply_rotary_emb_kv_(kv, cos_k, sin_k, interleaved=self.interleaved, seqlen_offsets=seqlen_offset)
        return q, kv


__all__ = ["ApplyRotaryEmb", "RotaryEmbedding", "apply_rotary_emb", "apply_rotary_emb_func",
           "apply_rotary_emb_kv_", "apply_rotary_emb_qkv_", "apply_rotary_emb_torch", "rotate_half"]
