"""CPU test: which forward calls the sm90 kernel serves (csrc/flash/host/dispatch.h), checked on the host.

Compiles tests/cpp/sm90_dispatch.cu (nvcc, host code, no GPU) and runs it: dense and varlen calls, softcap, ALiBi
and windows go to sm90; paged K/V, appended keys, dropout, small head dims, misaligned or empty tensors and
oversized grids stay on sm80, and so do the KV-cache inputs unless FLASH_ATTN_SM90_FWD_KVCACHE=1.
"""
from host_build import build_and_run


def test_sm90_forward_dispatch_rules(tmp_path):
    out = build_and_run("sm90_dispatch.cu", tmp_path, defines=["FLASH_ATTN_ARCH_SM90"])
    assert out.strip().endswith("sm90 dispatch: ok"), out
