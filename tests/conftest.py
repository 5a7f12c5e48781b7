import os
import sys

import pytest

try:  # not installed (plain source checkout): import the package from the repository root
    import flash_attn  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tests/reference.py, tests/helpers.py


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running GPU case; deselected unless selected with -m slow")


def pytest_collection_modifyitems(config, items):
    """Deselect `slow` tests unless the -m expression mentions slow."""
    if "slow" in (config.getoption("markexpr", "") or ""):
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("slow") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def ref_launcher(monkeypatch):
    """Route the custom ops to the float32 reference on any device (and skip the CUDA device check), so the
    whole Python path can run on CPU."""
    from flash_attn import _checks, _ops
    from reference import ReferenceLauncher

    launcher = ReferenceLauncher()
    monkeypatch.setattr(_ops, "_launch_fwd", launcher.fwd)
    monkeypatch.setattr(_ops, "_launch_varlen_fwd", launcher.varlen_fwd)
    monkeypatch.setattr(_checks, "check_devices", lambda *args, **kwargs: None)
    return launcher


@pytest.fixture
def ref_launcher_bwd(ref_launcher, monkeypatch):
    """ref_launcher plus reference backward ops (exercises the autograd plumbing: padding, packed grads)."""
    from flash_attn import _ops

    monkeypatch.setattr(_ops, "_launch_bwd", ref_launcher.bwd)
    monkeypatch.setattr(_ops, "_launch_varlen_bwd", ref_launcher.varlen_bwd)
    return ref_launcher


@pytest.fixture
def kernel_backend(request, monkeypatch):
    """For the GPU test modules: kernel outputs start NaN-poisoned and the float32 reference runs without TF32.
    Under FLASH_ATTN_TEST_DRYRUN the reference launcher (forward and backward) stands in for the kernels."""
    import torch
    from flash_attn import _ops
    from helpers import DRYRUN

    if DRYRUN:
        request.getfixturevalue("ref_launcher_bwd")
        yield
        return
    monkeypatch.setenv(_ops.POISON_ENV, "1")
    prev = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(prev)
