"""GPU-test helpers: device selection and skipping when CUDA / the extension / a kernel is missing.

FLASH_ATTN_TEST_DRYRUN=1 runs the GPU test modules on CPU against the float32 reference launcher (see
conftest.ref_launcher): it checks the tests themselves, not the kernels. Use it with -k to keep it short.
"""

import itertools
import os

import pytest
import torch

from flash_attn import _checks, _ops

DRYRUN = os.environ.get("FLASH_ATTN_TEST_DRYRUN", "0") not in ("", "0")
DEVICE = "cpu" if DRYRUN else "cuda"
DTYPE_NAME = {torch.float16: "fp16", torch.bfloat16: "bf16"}


def randn(shape, dtype, seed):
    """Seeded standard-normal tensor on DEVICE, drawn in float32 and cast to dtype."""
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    return torch.randn(shape, generator=g, device=DEVICE, dtype=torch.float32).to(dtype)


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
