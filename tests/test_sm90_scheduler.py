"""CPU test: the sm90 persistent tile scheduler covers every tile once and balances causal work; the compact varlen
grid's longest-first order tiles the real blocks without gap or overlap; a CTA's query blocks take the Q buffers
in turn, waiting on the right barrier phases.

Compiles tests/cpp/sm90_tile_scheduler.cu as host code (nvcc, no GPU) and runs it over tile counts and CTA counts,
and over random block counts of up to 32 sequences.
"""
from host_build import build_and_run


def test_persistent_scheduler_covers_and_balances(tmp_path):
    out = build_and_run("sm90_tile_scheduler.cu", tmp_path)
    assert out.strip().endswith(": ok"), out
