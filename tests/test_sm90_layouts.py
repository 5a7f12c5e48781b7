"""CPU test: the sm90 forward's K/V shared-memory layouts keep each row's 16-byte chunks contiguous and aligned in
every head-dim bucket (FwdMainloop::zero_v_tail clears a V tile's tail 16 bytes at a time).

Compiles tests/cpp/sm90_smem_layouts.cu as host code (nvcc + CUTLASS headers, no GPU) and runs it.
"""
from host_build import build_and_run


def test_kv_rows_keep_16_byte_chunks(tmp_path):
    out = build_and_run("sm90_smem_layouts.cu", tmp_path)
    assert out.strip().endswith("layouts: ok"), out
