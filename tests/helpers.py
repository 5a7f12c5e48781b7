"""GPU-test helpers: device selection and skipping when CUDA / the extension / a kernel is missing.

FLASH_ATTN_TEST_DRYRUN=1 runs the GPU test modules on CPU against the float32 reference launcher (see
conftest.ref_launcher): it checks the tests themselves, not the kernels. Use it with -k to keep it short.
"""

import itertools
import os

import pytest
import torch

from flash_attn import _checks, _ops
from reference import assert_close_to_ref

DRYRUN = os.environ.get("FLASH_ATTN_TEST_DRYRUN", "0") not in ("", "0")
DEVICE = "cpu" if DRYRUN else "cuda"
DTYPE_NAME = {torch.float16: "fp16", torch.bfloat16: "bf16"}


def randn(shape, dtype, seed):
    """Seeded standard-normal tensor on DEVICE, drawn in float32 and cast to dtype."""
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    return torch.randn(shape, generator=g, device=DEVICE, dtype=torch.float32).to(dtype)


def attention_inputs(q_shape, kv_shape, dtype, seed, q_scale=None):
    """q (q_shape, times q_scale if given), k and v (kv_shape), all requiring grad, and dout (q_shape), drawn from
    seeds seed, seed + 1, seed + 2 and seed + 3."""
    q = randn(q_shape, dtype, seed)
    q = (q if q_scale is None else q * q_scale).requires_grad_()
    k = randn(kv_shape, dtype, seed + 1).requires_grad_()
    v = randn(kv_shape, dtype, seed + 2).requires_grad_()
    return q, k, v, randn(q_shape, dtype, seed + 3)


def alibi_slopes(nheads: int, batch=None) -> torch.Tensor:
    """The ALiBi paper's geometric slopes 2^(-8 (i + 1) / h), per batch entry slightly perturbed."""
    base = torch.tensor([2.0 ** (-8.0 * (i + 1) / nheads) for i in range(nheads)], device=DEVICE)
    if batch is None:
        return base
    return base[None, :] * torch.linspace(0.5, 1.5, batch, device=DEVICE)[:, None]


def cu_seqlens(seqlens):
    """int32 (len(seqlens) + 1,) prefix sums on DEVICE."""
    return torch.tensor(list(itertools.accumulate(seqlens, initial=0)), dtype=torch.int32, device=DEVICE)


def gpu_skip_reason():
    if DRYRUN:
        return None
    if not torch.cuda.is_available():
        return "CUDA is not available"
    if _ops.flash_attn_gpu is None:
        return f"flash_attn_2_cuda extension not built: {_ops._EXT_IMPORT_ERROR}"
    major, minor = torch.cuda.get_device_capability()
    if major < 8:
        return f"FlashAttention needs sm80+, this GPU is sm{major}{minor}"
    return None


_REASON = gpu_skip_reason()
requires_gpu = pytest.mark.skipif(_REASON is not None, reason=str(_REASON))
skip_in_dryrun = pytest.mark.skipif(DRYRUN, reason="needs the real kernel (FLASH_ATTN_TEST_DRYRUN=1)")


def require_kernel(dtype, head_dim):
    """Skip the current test if the kernel for (dtype, head dim) was not compiled into this build."""
    if DRYRUN:
        return
    try:
        _checks.check_build(dtype, head_dim, torch.device(DEVICE))
    except RuntimeError as e:
        pytest.skip(f"kernel not built: {e}")


def built_head_dim(preferred=(128, 64, 256, 32, 96, 192)):
    """A head dim whose kernels are built (for tests that don't care which), else skip."""
    if DRYRUN:
        return preferred[0]
    built = _checks.get_build_config().headdims
    for d in preferred:
        if d in built:
            return d
    pytest.skip("no head-dim kernels built")


def built_dtype():
    if DRYRUN:
        return torch.bfloat16
    dtypes = _checks.get_build_config().dtypes
    if "bf16" in dtypes:
        return torch.bfloat16
    if "fp16" in dtypes:
        return torch.float16
    pytest.skip("no dtype kernels built")


def reference_grads(fn, inputs, dout, upcast):
    """Gradients of fn(*inputs, upcast) (an output tensor) w.r.t. inputs: on float32 copies (upcast, the
    reference) or in the inputs' dtype (the low-precision reference that sets the tolerance)."""
    xs = [x.detach().float().requires_grad_() if upcast else x.detach().clone().requires_grad_() for x in inputs]
    out = fn(*xs, upcast)
    return torch.autograd.grad(out, xs, dout.to(out.dtype))


def assert_grads_close(names, grads, fn, inputs, dout):
    """Our gradients (the inputs' dtype and shape) against reference_grads of fn."""
    ref32, lowp = reference_grads(fn, inputs, dout, True), reference_grads(fn, inputs, dout, False)
    for name, g, r, lp, x in zip(names, grads, ref32, lowp, inputs):
        assert g.dtype == x.dtype and g.shape == x.shape, f"{name}: {g.dtype} {tuple(g.shape)}"
        assert_close_to_ref(name, g, r, lp)


def assert_attention_close(out, lse, grads, fn, inputs, dout):
    """out, lse and the gradients (dq, dk, dv) of one call against the reference fn(q, k, v, upcast) -> (out, lse)."""
    detached = [x.detach() for x in inputs]
    ref_out, ref_lse = fn(*detached, True)
    lp_out, lp_lse = fn(*detached, False)
    assert_close_to_ref("out", out, ref_out, lp_out)
    assert_close_to_ref("lse", lse, ref_lse, lp_lse)
    assert_grads_close(("dq", "dk", "dv"), grads, lambda *args: fn(*args)[0], inputs, dout)
