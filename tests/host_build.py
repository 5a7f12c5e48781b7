"""Building and running the host-code C++ checks of tests/cpp/ (nvcc + CUTLASS headers, no GPU)."""
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def nvcc():
    home = os.environ.get("CUDA_HOME")
    candidates = [Path(home) / "bin" / "nvcc"] if home else []
    candidates += [Path(p) for p in [shutil.which("nvcc")] if p] + [Path("/usr/local/cuda/bin/nvcc")]
    return next((str(c) for c in candidates if c.is_file()), None)


def cutlass_include():
    submodule = ROOT / "third_party" / "cutlass" / "include"
    if (submodule / "cutlass" / "cutlass.h").is_file():
        return str(submodule)
    spec = importlib.util.find_spec("cutlass_library")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        inc = Path(loc) / "source" / "include"
        if (inc / "cutlass" / "cutlass.h").is_file():
            return str(inc)
    return None


def build_and_run(source: str, tmp_path, defines=()) -> str:
    """Compiles tests/cpp/<source> as host code (with -D of each of defines) and runs it; returns its stdout.
    Skips without nvcc or CUTLASS."""
    compiler, cutlass = nvcc(), cutlass_include()
    if compiler is None or cutlass is None:
        pytest.skip("needs nvcc and the CUTLASS headers (host code only, no GPU)")
    exe = tmp_path / Path(source).stem
    build = subprocess.run(
        [compiler, "-std=c++20", "--expt-relaxed-constexpr", "-I", str(ROOT / "csrc"), "-isystem", cutlass,
         *(f"-D{d}" for d in defines), str(ROOT / "tests" / "cpp" / source), "-o", str(exe)],
        capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout
