"""CPU test: the softmax's row reductions in independent chains (csrc/flash/core/reduce.h, reduce_row) give the
serial max exactly and the serial sum to within rounding, for every column count.

Compiles tests/cpp/reduce_row.cu as host code (nvcc, no GPU) and runs it.
"""
from host_build import build_and_run


def test_reduce_row_matches_the_serial_reduction(tmp_path):
    out = build_and_run("reduce_row.cu", tmp_path)
    assert out.strip().endswith(": ok"), out
