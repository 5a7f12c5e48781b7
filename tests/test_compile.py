"""torch.compile(fullgraph=True) of flash_attn_with_kvcache (a decode step: append to the caches in place, rotary,
attend) and of the rotary functions, through the flash_attn::fwd_kvcache / apply_rotary / apply_rotary_ custom ops.

CPU (run everywhere): the ops' real bodies run on the reference stand-in for the extension (conftest.ref_extension),
so the compiled graph (aot_eager; inductor where a C++ compiler is found) is checked against eager on the same
arguments, the caches included, and against the float32 reference; and the arguments handed to the binding.
GPU (requires_gpu): the same decode step and rotary under the default (inductor) backend on the kernels."""

import shutil

import pytest
import torch
import torch._dynamo.testing

from flash_attn import flash_attn_with_kvcache
from flash_attn.layers.rotary import apply_rotary_emb, apply_rotary_emb_kv_, apply_rotary_emb_qkv_
from helpers import DEVICE, require_kernel, requires_gpu, skip_in_dryrun
from helpers import randn as _randn
from reference import assert_close_to_ref, kvcache_ref, rotary_ref

I32 = torch.int32


def _rand(*shape, seed, dtype=torch.bfloat16, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)


def _decode_step(q, k_cache, v_cache, k, v, cache_seqlens, cos, sin):
    return flash_attn_with_kvcache(q, k_cache, v_cache, k=k, v=v, cache_seqlens=cache_seqlens, rotary_cos=cos,
                                   rotary_sin=sin, causal=True)


def _decode_inputs(b=2, h=8, hk=2, d=128, cap=256, rotary_dim=None, seed=0, device="cpu"):
    rotary_dim = d if rotary_dim is None else rotary_dim
    q = _rand(b, 1, h, d, seed=seed, device=device)
    k, v = _rand(b, 1, hk, d, seed=seed + 1, device=device), _rand(b, 1, hk, d, seed=seed + 2, device=device)
    k_cache = _rand(b, cap, hk, d, seed=seed + 3, device=device)
    v_cache = _rand(b, cap, hk, d, seed=seed + 4, device=device)
    angle = _rand(cap, rotary_dim // 2, seed=seed + 5, dtype=torch.float32, device=device) * 3
    return q, k_cache, v_cache, k, v, torch.cos(angle).to(q.dtype), torch.sin(angle).to(q.dtype)


def _compare_steps(fn, compiled, cache_args, *args):
    """fn and compiled on clones of the caches: the same outputs and the same caches after the append. Returns the
    eager outputs and caches."""
    eager_caches = [c.clone() for c in cache_args]
    compiled_caches = [c.clone() for c in cache_args]
    out_e = fn(*args[:1], *eager_caches, *args[1:])
    out_c = compiled(*args[:1], *compiled_caches, *args[1:])
    for a, b in zip(out_c if isinstance(out_c, tuple) else (out_c,), out_e if isinstance(out_e, tuple) else (out_e,)):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    for a, b in zip(compiled_caches, eager_caches):
        assert torch.equal(a, b), "the caches after the compiled step differ from eager"
    return out_e, eager_caches


# ----------------------------------------------------------------------------------------------------------
# CPU
# ----------------------------------------------------------------------------------------------------------


def test_compile_decode_step_cpu(ref_extension):
    """The decode step of the GPU test, on CPU: no graph break, the caches written in place, no recompilation for
    the next step (new cache_seqlens values)."""
    torch._dynamo.reset()
    counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(_decode_step, fullgraph=True, backend=counter)
    q, k_cache, v_cache, k, v, cos, sin = _decode_inputs(d=64, cap=64)
    for step in range(2):
        seqlens = torch.tensor([17 + step, 40 + step], dtype=I32)
        out, (kc, vc) = _compare_steps(_decode_step, compiled, (k_cache, v_cache), q, k, v, seqlens, cos, sin)
        ref, _, ref_k, ref_v = kvcache_ref(q, k_cache, v_cache, k, v, cos, sin, seqlens, causal=True)
        assert torch.equal(kc, ref_k) and torch.equal(vc, ref_v)
        torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)
    assert counter.frame_count == 1
    assert [c[0] for c in ref_extension.calls] == ["fwd_kvcache"] * 4


KVCACHE_VARIANTS = {
    # unaligned head dim: padded copies of the caches for the op, written back into the caller's
    "d59-int-seqlens-window": dict(d=59, kw=dict(cache_seqlens=9, window_size=(6, 0), rotary=False)),
    "index-tensors-alibi-lse": dict(d=64, kw=dict(batch_idx=True, leftpad=True, alibi=True, softcap=20.0,
                                                  num_splits=2, return_softmax_lse=True, rotary_interleaved=False)),
    "paged": dict(d=32, kw=dict(paged=True)),
    "no-append": dict(d=64, kw=dict(append=False, rotary=False)),
}


def _variant_call(d, append=True, rotary=True, batch_idx=False, leftpad=False, alibi=False, paged=False, **kw):
    """(fn, cache tensors, other args) of one flash_attn_with_kvcache variant: b 2, 2 new tokens, 4 / 2 heads."""
    b, h, hk, cap, new = 2, 4, 2, 32, 2
    q = _rand(b, new, h, d, seed=10)
    rows = b + 1 if batch_idx else b
    k_cache, v_cache = _rand(rows, cap, hk, d, seed=11), _rand(rows, cap, hk, d, seed=12)
    k, v = (_rand(b, new, hk, d, seed=13), _rand(b, new, hk, d, seed=14)) if append else (None, None)
    angle = _rand(cap, 8, seed=15, dtype=torch.float32)
    cos, sin = (torch.cos(angle).to(q.dtype), torch.sin(angle).to(q.dtype)) if rotary else (None, None)
    extra = dict(kw)
    extra.setdefault("cache_seqlens", torch.tensor([5, 20], dtype=I32))
    if batch_idx:
        extra["cache_batch_idx"] = torch.tensor([2, 0], dtype=I32)
    if leftpad:
        extra["cache_leftpad"] = torch.tensor([1, 3], dtype=I32)
    if alibi:
        extra["alibi_slopes"] = torch.tensor([0.5, 0.25, 0.125, 0.0625])
    if paged:  # 16-slot pages, two per sequence, in a shuffled pool of 5
        k_cache, v_cache = _rand(5, 16, hk, d, seed=16), _rand(5, 16, hk, d, seed=17)
        extra["block_table"] = torch.tensor([[3, 0], [4, 1]], dtype=I32)

    def fn(q, k_cache, v_cache, k, v, cos, sin):
        return flash_attn_with_kvcache(q, k_cache, v_cache, k, v, rotary_cos=cos, rotary_sin=sin, causal=True,
                                       **extra)

    return fn, (k_cache, v_cache), (q, k, v, cos, sin)


@pytest.mark.parametrize("variant", list(KVCACHE_VARIANTS))
def test_compile_kvcache_variants_cpu(ref_extension, variant):
    """Optional tensors and arguments of flash_attn_with_kvcache trace with fullgraph=True and match eager."""
    torch._dynamo.reset()
    spec = KVCACHE_VARIANTS[variant]
    fn, caches, args = _variant_call(spec["d"], **spec["kw"])
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    _compare_steps(fn, compiled, caches, *args)


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None, reason="inductor on CPU needs a C++ "
                    "compiler")
def test_compile_decode_step_inductor_cpu(ref_extension):
    """inductor (what the GPU test uses) reinplaces the cache mutation: the op writes the caller's caches."""
    torch._dynamo.reset()
    compiled = torch.compile(_decode_step, fullgraph=True, backend="inductor")
    q, k_cache, v_cache, k, v, cos, sin = _decode_inputs(d=32, cap=32, h=4)
    _compare_steps(_decode_step, compiled, (k_cache, v_cache), q, k, v, torch.tensor([3, 30], dtype=I32), cos, sin)


def test_kvcache_binding_arguments(ref_extension):
    """The op's body hands the binding the caller's caches themselves (written in place), q, k and v when aligned,
    cache_seqlens as given (an int broadcast to (batch,) int32), the normalised window and no out buffer."""
    q, k_cache, v_cache, k, v, cos, sin = _decode_inputs(d=64, cap=64)
    seqlens = torch.tensor([3, 9], dtype=I32)
    flash_attn_with_kvcache(q, k_cache, v_cache, k, v, cos, sin, seqlens, causal=True, window_size=(100, 3),
                            softcap=0, num_splits=3)
    name, args = ref_extension.calls[-1]
    assert name == "fwd_kvcache" and len(args) == 20
    for i, x in enumerate((q, k_cache, v_cache, k, v, seqlens, cos, sin)):
        assert args[i] is x, i
    assert args[8:13] == (None,) * 5  # cache_batch_idx, cache_leftpad, block_table, alibi_slopes, out
    assert args[13:] == (64 ** -0.5, True, -1, -1, 0.0, True, 3)  # window >= capacity and causal: plain causal
    assert type(args[17]) is float
    flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=5, window_size=(8, 8))
    args = ref_extension.calls[-1][1]
    assert args[3] is None and args[4] is None and args[6] is None
    assert args[5].dtype == I32 and args[5].tolist() == [5, 5]
    assert args[14:17] == (False, 8, 8)


def _rotary_inputs(seed=20, device="cpu", dtype=torch.bfloat16):
    x = _rand(2, 37, 4, 64, seed=seed, dtype=dtype, device=device)
    angle = _rand(50, 16, seed=seed + 1, dtype=torch.float32, device=device) * 3
    return x, torch.cos(angle).to(dtype), torch.sin(angle).to(dtype)


def _rotary_check(x, cos, sin, offsets, backend):
    """apply_rotary_emb out of place (forward and backward) and in place, compiled against eager."""
    torch._dynamo.reset()

    def fn(x, cos, sin, offsets):
        return apply_rotary_emb(x, cos, sin, seqlen_offsets=offsets) * 2

    def fn_inplace(x, cos, sin, offsets):
        y = x * 1  # in place needs a non-leaf
        return apply_rotary_emb(y, cos, sin, interleaved=True, inplace=True, seqlen_offsets=offsets)

    for f in (fn, fn_inplace):
        compiled = torch.compile(f, fullgraph=True, backend=backend)
        xe, xc = x.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
        out_e, out_c = f(xe, cos, sin, offsets), compiled(xc, cos, sin, offsets)
        assert torch.equal(out_c, out_e), f.__name__
        dout = torch.randn_like(out_e)
        (g_e,), (g_c,) = torch.autograd.grad(out_e, xe, dout), torch.autograd.grad(out_c, xc, dout)
        assert torch.equal(g_c, g_e), f.__name__
    return fn(x, cos, sin, offsets)


@pytest.mark.parametrize("offsets", ["int", "tensor"])
def test_compile_rotary_cpu(ref_extension, offsets):
    x, cos, sin = _rotary_inputs()
    off = 5 if offsets == "int" else torch.tensor([0, 20], dtype=I32)
    out = _rotary_check(x, cos, sin, off, "aot_eager")
    pos = torch.arange(37).expand(2, 37) + (off if offsets == "int" else off[:, None])
    for b in range(2):  # positions past the table (50) stay as they are
        inside = (pos[b] < 50)[:, None, None]
        ref = torch.where(inside, rotary_ref(x[b], cos, sin, pos[b].clamp(max=49), False), x[b].float())
        torch.testing.assert_close(out[b].float(), 2 * ref, atol=2e-2, rtol=2e-2)


def _rotary_no_grad_checks(device, backend):
    """In place without autograd (apply_rotary_emb, and views of a packed qkv / kv) and varlen: compiled against
    eager."""
    torch._dynamo.reset()
    x, cos, sin = _rotary_inputs(seed=30, device=device)
    qkv = _rand(2, 37, 3, 4, 64, seed=32, device=device)
    cu = torch.tensor([0, 30, 74], dtype=I32, device=device)
    cases = [
        (lambda x, cos, sin: apply_rotary_emb(x.clone(), cos, sin, inplace=True, seqlen_offsets=7), (x, cos, sin)),
        (lambda qkv, cos, sin: apply_rotary_emb_qkv_(qkv.clone(), cos, sin, seqlen_offsets=3), (qkv, cos, sin)),
        (lambda kv, cos, sin: apply_rotary_emb_kv_(kv.clone(), cos, sin, interleaved=True), (qkv[:, :, 1:], cos, sin)),
        (lambda x, cos, sin: apply_rotary_emb(x, cos, sin, cu_seqlens=cu, max_seqlen=40), (x.reshape(74, 4, 64), cos,
                                                                                             sin)),
    ]
    for i, (fn, args) in enumerate(cases):
        assert torch.equal(torch.compile(fn, fullgraph=True, backend=backend)(*args), fn(*args)), i


def test_compile_rotary_no_grad_cpu(ref_extension):
    _rotary_no_grad_checks("cpu", "aot_eager")


# ----------------------------------------------------------------------------------------------------------
# GPU (the kernels; default inductor backend)
# ----------------------------------------------------------------------------------------------------------


@requires_gpu
@skip_in_dryrun  # flash_attn_with_kvcache has no reference launcher
@pytest.mark.usefixtures("kernel_backend")
def test_gpu_compile_kvcache_decode_step():
    """A decode step (batch 2, one query, 8 / 2 heads, d 128, capacity 256, rotary, causal) compiled with
    fullgraph=True: the same output (bf16 tolerance) and the same caches as eager, the reference's caches, and one
    graph for two steps."""
    dtype, d = torch.bfloat16, 128
    require_kernel(dtype, d)
    q, k_cache, v_cache, k, v, cos, sin = _decode_inputs(d=d, cap=256, device=DEVICE)
    torch._dynamo.reset()
    counter = torch._dynamo.testing.CompileCounterWithBackend("inductor")
    compiled = torch.compile(_decode_step, fullgraph=True, backend=counter)
    for step in range(2):  # the next step: one more cached token, same graph
        seqlens = torch.tensor([17 + step, 100 + step], dtype=I32, device=DEVICE)
        caches_e = [c.clone() for c in (k_cache, v_cache)]
        caches_c = [c.clone() for c in (k_cache, v_cache)]
        out_e = _decode_step(q, *caches_e, k, v, seqlens, cos, sin)
        out_c = compiled(q, *caches_c, k, v, seqlens, cos, sin)
        torch.testing.assert_close(out_c, out_e, atol=2e-2, rtol=2e-2)
        for name, c, e in zip(("k_cache", "v_cache"), caches_c, caches_e):
            assert torch.equal(c, e), f"{name}: compiled and eager appends differ"
        ref, _, ref_k, ref_v = kvcache_ref(q, k_cache, v_cache, k, v, cos, sin, seqlens, causal=True)
        lowp, _, _, _ = kvcache_ref(q, k_cache, v_cache, k, v, cos, sin, seqlens, causal=True, upcast=False)
        assert torch.equal(caches_c[0], ref_k) and torch.equal(caches_c[1], ref_v)
        assert_close_to_ref("out", out_c, ref, lowp)
    assert counter.frame_count == 1


@requires_gpu
@skip_in_dryrun  # the rotary kernel has no reference launcher
def test_gpu_compile_apply_rotary_emb():
    """apply_rotary_emb compiled with fullgraph=True, out of place (with its backward), in place, on packed qkv / kv
    and varlen: the same results as eager."""
    x, cos, sin = _rotary_inputs(device=DEVICE)
    _rotary_check(x, cos, sin, 5, "inductor")
    _rotary_check(x, cos, sin, torch.tensor([0, 20], dtype=I32, device=DEVICE), "inductor")
    _rotary_no_grad_checks(DEVICE, "inductor")
