"""CPU test: which forward calls the sm90 kernel serves (csrc/flash/host/dispatch.h), checked on the host.

Compiles tests/cpp/sm90_dispatch.cu (nvcc, host code, no GPU) and runs it: dense and varlen calls, softcap, ALiBi,
windows and the KV-cache inputs go to sm90, paged caches in pages of any multiple of 16, head dims below 64
where the d 64 kernel is built; appended keys, dropout, misaligned or empty tensors and oversized grids stay on sm80;
the tile table's default variant (consumers, persistent CTAs, tall tile) per head dim and call, and which GQA calls
the sm90 forward runs in packed tiles (short queries).
"""
import pytest

from host_build import build_and_run


@pytest.mark.parametrize("hdim64_built", [True, False])
def test_sm90_forward_dispatch_rules(tmp_path, hdim64_built):
    defines = ["FLASH_ATTN_ARCH_SM90"] + (["FLASH_ATTN_HDIM_64"] if hdim64_built else [])
    out = build_and_run("sm90_dispatch.cu", tmp_path, defines=defines)
    assert out.strip().endswith("sm90 dispatch: ok"), out
