"""flash_attn.layers.rotary: the pure-PyTorch helpers on CPU; on the GPU our kernel against the float32 PyTorch
rotation (dense and varlen, interleaved and GPT-NeoX, int and per-batch offsets, positions past the table,
partial rotary_dim, odd head dims, in place), its gradients (the inverse rotation), the packed qkv / kv
variants and RotaryEmbedding (plain and XPos)."""

import pytest
import torch

from flash_attn.layers.rotary import (RotaryEmbedding, apply_rotary_emb, apply_rotary_emb_kv_, apply_rotary_emb_qkv_,
                                      apply_rotary_emb_torch, rotate_half)
from flash_attn.ops.triton.rotary import apply_rotary
from helpers import DEVICE, requires_gpu, skip_in_dryrun
from helpers import randn as _randn
from reference import assert_close_to_ref


def _table(seqlen_ro, rotary_dim, dtype, device="cpu", seed=0):
    angle = torch.randn(seqlen_ro, rotary_dim // 2, generator=torch.Generator().manual_seed(seed)) * 3
    return torch.cos(angle).to(device=device, dtype=dtype), torch.sin(angle).to(device=device, dtype=dtype)


def _complex_ref(x, cos, sin, interleaved, positions):
    """x (b, s, h, d) rotated as a complex multiplication by exp(i angle) (float64) at positions (b, s)."""
    ro = cos.shape[1] * 2
    x = x.double()
    angle = torch.atan2(sin.double(), cos.double())[positions.clamp(max=cos.shape[0] - 1)]  # (b, s, ro/2)
    valid = (positions < cos.shape[0])[..., None]
    mag = torch.sqrt(cos.double() ** 2 + sin.double() ** 2)[positions.clamp(max=cos.shape[0] - 1)]
    rot = torch.polar(torch.where(valid, mag, torch.ones_like(mag)), torch.where(valid, angle, 0 * angle))
    a, b = (x[..., 0:ro:2], x[..., 1:ro:2]) if interleaved else (x[..., : ro // 2], x[..., ro // 2: ro])
    z = torch.complex(a, b) * rot[:, :, None, :]
    out = x.clone()
    if interleaved:
        out[..., 0:ro:2], out[..., 1:ro:2] = z.real, z.imag
    else:
        out[..., : ro // 2], out[..., ro // 2: ro] = z.real, z.imag
    return out


@pytest.mark.parametrize("interleaved", [False, True])
def test_torch_reference_is_a_complex_rotation(interleaved):
    x = torch.randn(2, 7, 3, 40, dtype=torch.float64)
    cos, sin = _table(7, 32, torch.float64)
    ref = _complex_ref(x, cos, sin, interleaved, torch.arange(7).expand(2, 7))
    assert torch.allclose(apply_rotary_emb_torch(x, cos, sin, interleaved), ref, atol=1e-12)


def test_rotate_half():
    x = torch.arange(8.0)
    assert rotate_half(x).tolist() == [-4, -5, -6, -7, 0, 1, 2, 3]
    assert rotate_half(x, interleaved=True).tolist() == [-1, 0, -3, 2, -5, 4, -7, 6]


def test_rotary_embedding_tables():
    rope = RotaryEmbedding(16, base=100.0)
    assert torch.allclose(rope.inv_freq, 100.0 ** (-torch.arange(0, 16, 2).float() / 16))
    rope._update_cos_sin_cache(5, device=torch.device("cpu"), dtype=torch.float32)
    freqs = torch.outer(torch.arange(5.0), rope.inv_freq)
    assert torch.equal(rope._cos_cached, torch.cos(freqs)) and torch.equal(rope._sin_cached, torch.sin(freqs))
    xpos = RotaryEmbedding(16, scale_base=512)
    xpos._update_cos_sin_cache(6, device=torch.device("cpu"), dtype=torch.float32)
    assert torch.allclose(xpos._cos_cached * xpos._cos_k_cached + xpos._sin_cached * xpos._sin_k_cached,
                          torch.ones(6, 8), atol=1e-6)  # q scaled up by what k is scaled down by


def test_apply_rotary_checks():
    x = torch.randn(2, 4, 3, 32)
    cos, sin = _table(4, 16, torch.float32)
    with pytest.raises(ValueError, match="rotary_dim"):
        apply_rotary(x, *_table(4, 48, torch.float32))
    with pytest.raises(ValueError, match="max_seqlen is required"):
        apply_rotary(x[0], cos, sin, cu_seqlens=torch.tensor([0, 4], dtype=torch.int32))
    with pytest.raises(ValueError, match="x must be"):
        apply_rotary(x[0], cos, sin)
    with pytest.raises(TypeError, match="cos/sin must have x's dtype"):
        apply_rotary(x.half(), cos, sin)


DTYPES = [torch.float16, torch.bfloat16]


def _assert_rotation(name, ours, x, cos, sin, interleaved, positions):
    """ours against the float64 rotation of the same (rounded) inputs; the low-precision reference is that
    rotation rounded once to x's dtype, the best a kernel can do."""
    ref = _complex_ref(x, cos, sin, interleaved, positions)
    assert_close_to_ref(name, ours, ref.float(), ref.to(x.dtype), eps=1e-3)


def _positions(b, s, off):
    base = off.reshape(-1, 1).long() if isinstance(off, torch.Tensor) else torch.full((b, 1), off, device=DEVICE)
    return base + torch.arange(s, device=DEVICE)


OFFSETS = {"int": 5, "int32": [0, 7, 20], "int64": [3, 0, 30]}  # 30 + 36 >= seqlen_ro 50: identity there


def _offsets(kind):
    v = OFFSETS[kind]
    return v if kind == "int" else torch.tensor(v, dtype=getattr(torch, kind), device=DEVICE)


@requires_gpu
@skip_in_dryrun
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("d,rotary_dim", [(64, 64), (128, 32), (59, 32), (256, 128)])
@pytest.mark.parametrize("offsets", list(OFFSETS))
@pytest.mark.parametrize("inplace", [False, True])
def test_apply_rotary_emb_dense(dtype, interleaved, d, rotary_dim, offsets, inplace):
    b, s, h = 3, 37, 4
    x = _randn((b, s, h, d), dtype, 1)
    cos, sin = _table(50, rotary_dim, dtype, DEVICE)
    off = _offsets(offsets)
    xin = x.clone()
    out = apply_rotary_emb(xin, cos, sin, interleaved=interleaved, inplace=inplace, seqlen_offsets=off)
    assert (out is xin) == inplace
    _assert_rotation("out", out, x, cos, sin, interleaved, _positions(b, s, off))
    assert torch.equal(out[..., rotary_dim:], x[..., rotary_dim:])


@requires_gpu
@skip_in_dryrun
@pytest.mark.parametrize("interleaved", [False, True])
def test_apply_rotary_emb_varlen(interleaved):
    dtype, h, d, rotary_dim = torch.bfloat16, 3, 96, 64
    seqlens = [5, 0, 33, 12]
    cu = torch.tensor([0, 5, 5, 38, 50], dtype=torch.int32, device=DEVICE)
    x = _randn((sum(seqlens), h, d), dtype, 2)
    cos, sin = _table(64, rotary_dim, dtype, DEVICE)
    off = torch.tensor([0, 3, 10, 60], dtype=torch.int32, device=DEVICE)
    out = apply_rotary_emb(x, cos, sin, interleaved=interleaved, seqlen_offsets=off, cu_seqlens=cu, max_seqlen=33)
    for i, n in enumerate(seqlens):
        if n == 0:
            continue
        lo = int(cu[i])
        seg = x[lo:lo + n][None]
        _assert_rotation(f"seq {i}", out[lo:lo + n][None], seg, cos, sin, interleaved, _positions(1, n, off[i:i + 1]))


@requires_gpu
@skip_in_dryrun
@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("inplace", [False, True])
def test_apply_rotary_emb_grad(interleaved, inplace):
    dtype, b, s, h, d, rotary_dim = torch.float16, 2, 29, 4, 64, 48
    cos, sin = _table(40, rotary_dim, dtype, DEVICE)
    x = _randn((b, s, h, d), dtype, 3).requires_grad_()
    dout = _randn((b, s, h, d), dtype, 4)
    y = x * 1 if inplace else x  # in place needs a non-leaf
    out = apply_rotary_emb(y, cos, sin, interleaved=interleaved, inplace=inplace, seqlen_offsets=4)
    (grad,) = torch.autograd.grad(out, x, dout)
    # the backward is the inverse rotation of dout, i.e. the rotation by minus the angle
    _assert_rotation("dx", grad, dout, cos, -sin, interleaved, _positions(b, s, 4))


@requires_gpu
@skip_in_dryrun
def test_packed_qkv_and_kv_in_place():
    dtype, b, s, h, d, rotary_dim = torch.bfloat16, 2, 21, 4, 64, 64
    cos, sin = _table(32, rotary_dim, dtype, DEVICE)
    cos_k, sin_k = _table(32, rotary_dim, dtype, DEVICE, seed=1)
    pos = _positions(b, s, 2)
    qkv = _randn((b, s, 3, h, d), dtype, 5)
    ref = qkv.clone()
    assert apply_rotary_emb_qkv_(qkv, cos, sin, cos_k, sin_k, seqlen_offsets=2) is qkv
    _assert_rotation("q", qkv[:, :, 0], ref[:, :, 0], cos, sin, False, pos)
    _assert_rotation("k", qkv[:, :, 1], ref[:, :, 1], cos_k, sin_k, False, pos)
    assert torch.equal(qkv[:, :, 2], ref[:, :, 2])
    hq, hk = 8, 2  # (b, s, hq + 2 hk, d) with num_heads_q
    packed = _randn((b, s, hq + 2 * hk, d), dtype, 6)
    ref = packed.clone()
    apply_rotary_emb_qkv_(packed, cos, sin, seqlen_offsets=2, num_heads_q=hq, interleaved=True)
    _assert_rotation("q", packed[:, :, :hq], ref[:, :, :hq], cos, sin, True, pos)
    _assert_rotation("k", packed[:, :, hq:hq + hk], ref[:, :, hq:hq + hk], cos, sin, True, pos)
    assert torch.equal(packed[:, :, hq + hk:], ref[:, :, hq + hk:])
    kv = _randn((b, s, 2, hk, d), dtype, 7)
    ref = kv.clone()
    assert apply_rotary_emb_kv_(kv, cos, sin, seqlen_offsets=2) is kv
    _assert_rotation("k", kv[:, :, 0], ref[:, :, 0], cos, sin, False, pos)
    assert torch.equal(kv[:, :, 1], ref[:, :, 1])


@requires_gpu
@skip_in_dryrun
@pytest.mark.parametrize("scale_base", [None, 512])
def test_rotary_embedding_module(scale_base):
    dtype, b, s, h, d = torch.float16, 2, 17, 4, 32
    rope = RotaryEmbedding(d, scale_base=scale_base, device=DEVICE)
    qkv = _randn((b, s, 3, h, d), dtype, 8)
    ref = qkv.clone()
    rope(qkv, seqlen_offset=3)
    cos, sin = rope._cos_cached, rope._sin_cached
    cos_k = cos if scale_base is None else rope._cos_k_cached
    sin_k = sin if scale_base is None else rope._sin_k_cached
    pos = _positions(b, s, 3)
    _assert_rotation("q", qkv[:, :, 0], ref[:, :, 0], cos, sin, False, pos)
    _assert_rotation("k", qkv[:, :, 1], ref[:, :, 1], cos_k, sin_k, False, pos)
