"""CPU test: the dropout keep bits agree between every forward and backward tiling.

Compiles tests/cpp/dropout_mapping.cu as host code (nvcc + CUTLASS headers, no GPU) and runs it: for every tile
configuration in csrc/flash/sm80/*_tile_config.h, Dropout::keep_bits, which shares Philox calls between a
thread's MMA atoms, must give each score the bit of the per-score definition in csrc/flash/dropout.h.
"""
from host_build import build_and_run


def test_dropout_bits_match_across_tilings(tmp_path):
    out = build_and_run("dropout_mapping.cu", tmp_path)
    assert out.count(": ok") == 12, out
