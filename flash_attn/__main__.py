"""`python -m flash_attn`: what this installation is and whether it runs here.

Prints the version, the torch / CUDA it was built against (and the ones loaded now), the kernels compiled in, the
current GPU, and a last line "status: ...". Exit status:

    0  "status: ready" (a call would run on the current GPU), or "status: installed, no GPU visible" (the extension
       loads and matches this torch, but torch sees no CUDA device: e.g. a build machine)
    1  a problem: the extension does not load, it was built with another torch version or CUDA major version than
       the one running, no build record, or the build cannot serve this GPU
"""

import os
import sys
from pathlib import Path

import torch

import flash_attn
from flash_attn import _checks, _ops


def _build_record():
    """The generated flash_attn._build_config module (setup.py), or None when this package was not built."""
    try:
        from flash_attn import _build_config as module
    except ImportError:
        return None
    return module


def _base_version(version: str) -> str:
    return version.split("+", 1)[0]  # "2.14.1+cu130" -> "2.14.1"


def _cuda_major(version) -> str:
    return str(version).split(".", 1)[0] if version else ""


def mismatch_problems(built_torch: str, built_cuda: str, torch_version: str, torch_cuda) -> list:
    """What differs between the torch the extension was built with and the one running (empty if unknown/same).

    The extension is compiled against one torch's C++ API, so another torch version (the local "+cu130" part aside)
    or another CUDA major version is reported; a CUDA minor difference is not (CUDA keeps minor versions compatible).
    """
    problems = []
    if built_torch and _base_version(built_torch) != _base_version(torch_version):
        problems.append(f"built with torch {built_torch}, running torch {torch_version}: reinstall flash_attn "
                        "(pip install --no-build-isolation .) against the torch you run")
    if built_cuda and _cuda_major(built_cuda) != _cuda_major(torch_cuda):
        running = f"CUDA {torch_cuda}" if torch_cuda else "a CPU-only torch (no CUDA)"
        problems.append(f"built for CUDA {built_cuda}, running torch is built for {running}: install a torch "
                        f"for CUDA {_cuda_major(built_cuda)}.x or rebuild flash_attn against this one")
    return problems


def _installed_elsewhere() -> str:
    """A note when the flash_attn imported here is not the pip-installed one (e.g. run from the source tree)."""
    here = Path(flash_attn.__file__).resolve().parent
    try:
        import importlib.metadata as md

        for dist in md.distributions():
            name = (dist.metadata["Name"] or "").lower().replace("-", "_")
            if name != "flash_attn":
                continue
            installed = Path(dist.locate_file("flash_attn")).resolve()
            # Skip an editable install (no package directory beside its metadata) and this tree's own egg-info.
            if installed != here and (installed / "__init__.py").is_file():
                return (f"note: this is not the installed flash_attn ({installed}); run from another directory to "
                        "check that one")
    except Exception:
        pass
    return ""


def main() -> int:
    cfg = _checks.get_build_config()
    module = _build_record()
    print(f"flash_attn {flash_attn.__version__} ({flash_attn.__file__})")
    note = _installed_elsewhere()
    if note:
        print(note)
    built_torch = getattr(module, "TORCH_VERSION", "") or ""
    built_cuda = getattr(module, "TORCH_CUDA", "") or ""
    nvcc = getattr(module, "NVCC_VERSION", "") or "?"
    print(f"built with: torch {built_torch or '?'} (CUDA {built_cuda or '?'}), nvcc {nvcc}")
    print(f"running with: torch {torch.__version__} (CUDA {torch.version.cuda})")
    if not cfg.found:
        print("kernels: none (no build configuration: the extension was not built; pip install .)")
    else:
        print(f"kernels: SASS for sm {', '.join(map(str, cfg.cuda_archs))}; PTX {', '.join(map(str, cfg.ptx_archs))}; "
              f"head dims {', '.join(map(str, cfg.headdims))}; dtypes {', '.join(cfg.dtypes)}")

    problems = mismatch_problems(built_torch, built_cuda, torch.__version__, torch.version.cuda)
    try:
        ext = _ops._require_extension()
        print(f"extension: flash_attn_2_cuda loads ({getattr(ext, '__file__', '?')})")
    except Exception as e:  # the message says what is wrong (missing build, ABI mismatch, ...)
        print(f"extension: does not load: {e}")
        problems.insert(0, "the extension flash_attn_2_cuda does not load")
    else:
        if not cfg.found:
            problems.append("no build record (flash_attn/_build_config.py): reinstall flash_attn")
    if problems:
        print(f"status: not usable: {'; '.join(problems)}")
        return 1

    if not torch.cuda.is_available():
        print("GPU: none visible to torch (CUDA not available)")
        print("status: installed, no GPU visible")
        return 0
    device = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(device)
    print(f"GPU {device}: {torch.cuda.get_device_name(device)}, compute capability {major}.{minor}")
    try:
        dtype = torch.bfloat16 if "bf16" in cfg.dtypes else torch.float16
        _checks.check_build(dtype, cfg.headdims[0] if cfg.headdims else 128, torch.device("cuda", device))
    except RuntimeError as e:
        print(f"status: cannot run here: {e}")
        return 1
    try:
        arch = ext.kernel_arch()
    except Exception as e:  # an extension of an older build, or no usable device
        arch = f"unknown ({e})"
    served = {"sm90": "sm90 forward (TMA/wgmma) where it applies, sm80 kernels for the rest",
              "sm80": "sm80 kernels (mma.sync/cp.async)"}.get(arch, arch)
    forced = " (FLASH_ATTN_FORCE_SM80 is set)" if os.environ.get("FLASH_ATTN_FORCE_SM80", "0") not in ("", "0") else ""
    print(f"kernels serving this GPU: {served}{forced}")
    print("status: ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
