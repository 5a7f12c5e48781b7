"""CPU test: the dropout keep bits agree between every forward and backward tiling.

Compiles tests/cpp/dropout_mapping.cu as host code (nvcc + CUTLASS headers, no GPU) and runs it: for every tile
configuration in csrc/flash/sm80/*_tile_config.h, Dropout::keep_bits, which shares Philox calls between a
thread's MMA atoms, must give each score the bit of the per-score definition in csrc/flash/dropout.h.
"""
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _nvcc():
    home = os.environ.get("CUDA_HOME")
    candidates = [Path(home) / "bin" / "nvcc"] if home else []
    candidates += [Path(p) for p in [shutil.which("nvcc")] if p] + [Path("/usr/local/cuda/bin/nvcc")]
    return next((str(c) for c in candidates if c.is_file()), None)


def _cutlass_include():
    submodule = ROOT / "third_party" / "cutlass" / "include"
    if (submodule / "cutlass" / "cutlass.h").is_file():
        return str(submodule)
    spec = importlib.util.find_spec("cutlass_library")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        inc = Path(loc) / "source" / "include"
        if (inc / "cutlass" / "cutlass.h").is_file():
            return str(inc)
    return None


def test_dropout_bits_match_across_tilings(tmp_path):
    nvcc, cutlass = _nvcc(), _cutlass_include()
    if nvcc is None or cutlass is None:
        pytest.skip("needs nvcc and the CUTLASS headers (host code only, no GPU)")
    exe = tmp_path / "dropout_mapping"
    build = subprocess.run(
        [nvcc, "-std=c++20", "--expt-relaxed-constexpr", "-I", str(ROOT / "csrc"), "-isystem", cutlass,
         str(ROOT / "tests" / "cpp" / "dropout_mapping.cu"), "-o", str(exe)],
        capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count(": ok") == 12, run.stdout
