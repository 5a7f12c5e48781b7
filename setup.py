"""Build script for flash_attn (the package and its CUDA extension `flash_attn_2_cuda`).

Install (torch must already be installed; see README.md):

    pip install --no-build-isolation -v .

Environment variables (all optional):

    FLASH_ATTN_CUDA_ARCHS   GPU archs to compile for, e.g. "80;90" (default). The sm80 kernels get SASS for
                            each from the lowest one's PTX (one front-end pass per file), and PTX for the lowest
                            (newer GPUs JIT-compile it); "90" alone also enables sm90-only instructions in them.
                            With 90, the sm90 kernels are built too (sm_90a SASS only).
    FLASH_ATTN_HEADDIMS     head-dim buckets to compile, subset of "32;64;96;128;192;256" (default: all).
    FLASH_ATTN_DTYPES       dtypes to compile, subset of "fp16;bf16" (default: both).
    MAX_JOBS                parallel compile jobs (default: core count, bounded by ~4 GB of memory per job).
    NVCC_THREADS            if set, passed to nvcc as --threads N (compiles the archs of one file in parallel).
    CUDA_HOME               CUDA toolkit root (default: found from nvcc on PATH, else /usr/local/cuda).
    FLASH_ATTN_BUILD_PROGRESS  0: no per-file progress lines (default 1: nvcc runs under tools/nvcc_progress.py,
                            which prints "[12/62] flash_fwd_hdim128_bf16_sm80.cu 98 s" as each .cu file finishes).

Lists may be separated by ';', ',' or spaces. Kernels that are not built raise a RuntimeError at call
time that names the variable to set (the choice is recorded in flash_attn/_build_config.py).

Kernel list and per-architecture flags. flash_attn/_kernel_config.py (read here without importing the package,
which needs torch) lists the head dims, dtypes and kernel architectures; tools/generate_kernels.py writes one
folder of instantiations per kernel architecture, csrc/instantiations/<sm80|sm90>/. All sources go into the one
extension flash_attn_2_cuda, but each folder gets its own -gencode flags (_kernel_config.gencode):
  sm80 (and csrc/*.cu, csrc/*.cpp): SASS for every selected arch from the lowest arch's PTX, plus that PTX;
  sm90 (only when 90 is selected): -gencode arch=compute_90a,code=sm_90a and nothing else.
torch's BuildExtension gives every .cu file of an extension the same nvcc flags, so build_ext.build_extension
routes the compile through compile_per_kernel_arch(): one call of torch's ninja compile per kernel architecture
(the sm80 group exactly as before, in build_temp; the sm90 group with its own -gencode, in build_temp/sm90), each
running MAX_JOBS jobs, then one link of all objects. Every file is compiled once. With 90 selected, every source
(flash_api.cpp included) is compiled with -DFLASH_ATTN_ARCH_SM90, so the binding knows the sm90 kernels exist.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py as _build_py

ROOT = Path(__file__).resolve().parent
PACKAGE = "flash_attn"
EXT_NAME = "flash_attn_2_cuda"
INSTANTIATIONS_DIR = Path("csrc") / "instantiations"
# Always built: the torch binding and the small kernels beside attention (kv-cache append, rotary).
COMMON_SOURCES = ["csrc/flash_api.cpp", "csrc/kvcache_append.cu", "csrc/rotary.cu"]
BUILD_CONFIG_PATH = ROOT / PACKAGE / "_build_config.py"
PROGRESS_LAUNCHER = ROOT / "tools" / "nvcc_progress.py"


def _load_kernel_config():
    """flash_attn/_kernel_config.py as a module; importing the flash_attn package would import torch."""
    spec = importlib.util.spec_from_file_location("flash_attn_kernel_config", ROOT / PACKAGE / "_kernel_config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


KC = _load_kernel_config()  # the one source of the kernel list (also read by tools/generate_kernels.py)
ALL_HEADDIMS = KC.HEADDIM_BUCKETS
ALL_DTYPES = KC.DTYPES
DEFAULT_ARCHS = KC.DEFAULT_ARCHS
MIN_ARCH = KC.MIN_ARCH  # the kernels use sm80 instructions (mma.sync bf16, cp.async)
CUTLASS_WHEEL = "nvidia-cutlass==4.2.0.0"
INSTANTIATION_RE = re.compile(KC.INSTANTIATION_NAME_PATTERN)


def log(msg: str) -> None:
    print(f"[flash_attn setup] {msg}", file=sys.stderr, flush=True)


class ConfigError(SystemExit):
    """Raised for a bad environment variable: stops setup.py with a readable message."""

    def __init__(self, msg: str) -> None:
        super().__init__(f"\nflash_attn setup.py: error: {msg}\n")


# --------------------------------------------------------------------------------------------------
# Version
# --------------------------------------------------------------------------------------------------
def read_version() -> str:
    init = (ROOT / PACKAGE / "__init__.py").read_text()
    m = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", init, re.M)
    if m is None:
        raise ConfigError(f"could not find __version__ in {PACKAGE}/__init__.py")
    return m.group(1)


# --------------------------------------------------------------------------------------------------
# Build narrowing
# --------------------------------------------------------------------------------------------------
def _split_list(value: str) -> list[str]:
    return [tok for tok in re.split(r"[;,\s]+", value.strip()) if tok]


def parse_archs(value: str | None) -> list[int]:
    var = "FLASH_ATTN_CUDA_ARCHS"
    if value is None or not value.strip():
        return list(DEFAULT_ARCHS)
    archs = []
    for tok in _split_list(value):
        t = tok.lower().removeprefix("sm_").removeprefix("sm")
        if re.fullmatch(r"\d+\.\d", t):  # accept "8.0" / "9.0" (TORCH_CUDA_ARCH_LIST style)
            t = t.replace(".", "")
        if not re.fullmatch(r"\d{2,3}", t):
            raise ConfigError(
                f'{var}="{value}": "{tok}" is not a CUDA arch number; expected e.g. {var}="80;90" '
                f"(compute capability x10: 80 = A100, 90 = H100)"
            )
        arch = int(t)
        if arch < MIN_ARCH:
            raise ConfigError(
                f'{var}="{value}": arch {arch} is not supported; the kernels need sm{MIN_ARCH} or newer '
                f'(e.g. {var}="80;90")'
            )
        if arch not in archs:
            archs.append(arch)
    return sorted(archs)


def parse_headdims(value: str | None) -> list[int]:
    var = "FLASH_ATTN_HEADDIMS"
    if value is None or not value.strip():
        return list(ALL_HEADDIMS)
    allowed = ";".join(map(str, ALL_HEADDIMS))
    dims = []
    for tok in _split_list(value):
        if not tok.isdigit() or int(tok) not in ALL_HEADDIMS:
            raise ConfigError(
                f'{var}="{value}": "{tok}" is not a head-dim bucket; allowed values: "{allowed}" '
                f"(a head dim d is served by the smallest bucket >= d rounded up to a multiple of 8)"
            )
        if int(tok) not in dims:
            dims.append(int(tok))
    return sorted(dims)


def parse_dtypes(value: str | None) -> list[str]:
    var = "FLASH_ATTN_DTYPES"
    if value is None or not value.strip():
        return list(ALL_DTYPES)
    aliases = {"fp16": "fp16", "half": "fp16", "float16": "fp16", "bf16": "bf16", "bfloat16": "bf16"}
    dtypes = []
    for tok in _split_list(value):
        dt = aliases.get(tok.lower())
        if dt is None:
            raise ConfigError(f'{var}="{value}": "{tok}" is not a dtype; allowed values: "fp16;bf16"')
        if dt not in dtypes:
            dtypes.append(dt)
    return [d for d in ALL_DTYPES if d in dtypes]  # canonical order: fp16, bf16


def parse_max_jobs(value: str | None) -> int:
    if value is not None and value.strip():
        if not value.strip().isdigit() or int(value) < 1:
            raise ConfigError(f'MAX_JOBS="{value}": expected a positive integer')
        return int(value)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    mem_gib = _available_memory_gib()
    by_mem = max(1, int(mem_gib // 4)) if mem_gib else cores
    return max(1, min(cores, by_mem))


def _available_memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / (1024 * 1024)
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    except (ValueError, OSError, AttributeError):
        return None


def select_sources(headdims: list[int], dtypes: list[str], archs: list[int]) -> list[str]:
    """The instantiation files to compile for this narrowing (relative paths, sorted by kernel arch, then name).

    sm80 kernels run on every arch >= 80; the sm90 folder is compiled only when 90 is built."""
    stray = sorted((ROOT / INSTANTIATIONS_DIR).glob("*.cu"))  # e.g. left at the flat layout of older checkouts
    if stray:
        raise ConfigError(f"unexpected file {stray[0].relative_to(ROOT)}: instantiations live in "
                          f"{INSTANTIATIONS_DIR}/<kernel arch>/ (run python3 tools/generate_kernels.py)")
    selected = []
    for kernel_arch in KC.kernel_archs_built(archs):
        folder = INSTANTIATIONS_DIR / kernel_arch
        for path in sorted((ROOT / folder).glob("*.cu")):
            m = INSTANTIATION_RE.match(path.name)
            if m is None or m.group("kernel_arch") != kernel_arch:
                raise ConfigError(
                    f"unexpected file {folder / path.name}: not a generated {kernel_arch} instantiation name "
                    f"(run python3 tools/generate_kernels.py)"
                )
            if int(m.group("hdim")) in headdims and m.group("dtype") in dtypes:
                selected.append((folder / path.name).as_posix())
    return selected


def kernel_arch_of(source: str) -> str:
    """The kernel architecture a source is compiled for: its csrc/instantiations/<kernel arch>/ folder. The binding
    and the small common kernels (csrc/*.cu) run on every arch, like the sm80 kernels, and get their flags."""
    path = Path(source) if Path(source).is_absolute() else ROOT / source
    if path.parent.parent == ROOT / INSTANTIATIONS_DIR and path.parent.name in KC.KERNEL_ARCHS:
        return path.parent.name
    return "sm80"


def nvcc_flags_for(kernel_arch: str, nvcc: list[str], archs: list[int]) -> list[str]:
    """nvcc flags for one kernel architecture's files: the extension's flags (which carry the sm80 -gencode list,
    see compile_flags) with the -gencode pairs replaced by that architecture's."""
    if kernel_arch == "sm80":
        return nvcc
    kept = [f for i, f in enumerate(nvcc) if f != "-gencode" and (i == 0 or nvcc[i - 1] != "-gencode")]
    return kept + KC.gencode(kernel_arch, archs)


def compile_per_kernel_arch(compile_fn, sources, output_dir, extra_postargs, archs, **kwargs) -> list[str]:
    """distutils' compiler.compile(), split by kernel architecture: one call of compile_fn (torch's ninja compile,
    which gives all the files of one call the same nvcc flags) per architecture. The sm80 group is compiled exactly
    as without the split; each other group gets its own -gencode and its own build.ninja in output_dir/<arch>
    (torch writes build.ninja to the output directory; sharing one would let ninja forget the other group's log)."""
    groups: dict[str, list[str]] = {}
    for src in sources:
        groups.setdefault(kernel_arch_of(src), []).append(src)
    objects = []
    for kernel_arch, srcs in groups.items():
        postargs = extra_postargs
        if kernel_arch != "sm80":
            postargs = {**extra_postargs, "nvcc": nvcc_flags_for(kernel_arch, extra_postargs["nvcc"], archs)}
        out = output_dir if kernel_arch == "sm80" else os.path.join(output_dir, kernel_arch)
        objects += compile_fn(srcs, output_dir=out, extra_postargs=postargs, **kwargs)
    return objects


# --------------------------------------------------------------------------------------------------
# CUDA toolkit and CUTLASS
# --------------------------------------------------------------------------------------------------
def ensure_cuda_home() -> None:
    """Set CUDA_HOME before torch.utils.cpp_extension reads it.

    torch derives CUDA_HOME from `which nvcc`, which is wrong when nvcc on PATH is a wrapper script
    (e.g. /usr/local/bin/nvcc -> CUDA_HOME=/usr/local). Prefer a directory that really holds the toolkit.
    """
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    candidates = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(Path(os.path.realpath(nvcc)).parent.parent)
    candidates.append(Path("/usr/local/cuda"))
    for cand in candidates:
        if (cand / "bin" / "nvcc").exists() and (cand / "include" / "cuda_runtime.h").exists():
            os.environ["CUDA_HOME"] = str(cand)
            log(f"CUDA_HOME not set; using {cand}")
            return


MIN_NVCC = (12, 3)  # C++20 device code and the sm90 toolchain


def check_nvcc(cuda_home: str, torch_cuda: str | None) -> str:
    """The toolkit's release ("12.8"): at least MIN_NVCC, and the major version torch was built with."""
    nvcc = Path(cuda_home) / "bin" / "nvcc"
    try:
        out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise ConfigError(f"could not run {nvcc} --version ({e}); install the CUDA toolkit or set CUDA_HOME")
    m = re.search(r"release (\d+)\.(\d+)", out)
    if m is None:
        raise ConfigError(f"could not read the CUDA release from `{nvcc} --version`:\n{out}")
    release = (int(m.group(1)), int(m.group(2)))
    found = f"{release[0]}.{release[1]}"
    if release < MIN_NVCC:
        raise ConfigError(
            f"nvcc {found} ({nvcc}) is too old: flash_attn needs CUDA {MIN_NVCC[0]}.{MIN_NVCC[1]} or newer. Install "
            "a newer toolkit and point CUDA_HOME at it (e.g. CUDA_HOME=/usr/local/cuda-12.8)"
        )
    if torch_cuda and int(torch_cuda.split(".")[0]) != release[0]:
        raise ConfigError(
            f"nvcc {found} ({nvcc}) does not match the CUDA {torch_cuda} that torch was built with: install a "
            f"torch built for CUDA {release[0]}.x or a CUDA {torch_cuda.split('.')[0]}.x toolkit"
        )
    return found


def find_cutlass_include() -> tuple[str, str]:
    """Return (include dir, description of where it came from)."""
    submodule = ROOT / "third_party" / "cutlass" / "include"
    if (submodule / "cutlass" / "cutlass.h").is_file():
        return str(submodule), "git submodule third_party/cutlass"
    spec = importlib.util.find_spec("cutlass_library")  # nvidia-cutlass wheel; located, not imported
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            inc = Path(loc) / "source" / "include"
            if (inc / "cutlass" / "cutlass.h").is_file():
                try:
                    from importlib.metadata import version

                    wheel_version = version("nvidia-cutlass")
                except Exception:
                    wheel_version = "unknown version"
                if wheel_version != CUTLASS_WHEEL.split("==")[1]:
                    log(f"WARNING: nvidia-cutlass {wheel_version} found; this project is tested with {CUTLASS_WHEEL}")
                return str(inc), f"nvidia-cutlass wheel ({wheel_version})"
    raise ConfigError(
        "CUTLASS headers not found. Either check out the submodule "
        "(git submodule update --init third_party/cutlass) or install the wheel: "
        f"pip install {CUTLASS_WHEEL}"
    )


# --------------------------------------------------------------------------------------------------
# Build configuration record (flash_attn/_build_config.py)
# --------------------------------------------------------------------------------------------------
def render_build_config(cfg: dict) -> str:
    def strs(values):
        return "[" + ", ".join(json.dumps(v) for v in values) + "]"

    return (
        "# Generated by setup.py at build time; do not edit (not tracked by git).\n"
        "# Records which kernels the compiled extension flash_attn_2_cuda contains.\n"
        f"CUDA_ARCHS = {cfg['archs']!r}\n"
        f"PTX_ARCHS = {cfg['ptx_archs']!r}\n"
        f"KERNEL_ARCHS = {strs(cfg['kernel_archs'])}\n"
        f"HEADDIMS = {cfg['headdims']!r}\n"
        f"DTYPES = {strs(cfg['dtypes'])}\n"
        f"CUTLASS_INCLUDE = {json.dumps(cfg['cutlass_include'])}\n"
        f"TORCH_VERSION = {json.dumps(cfg.get('torch_version', ''))}\n"
        f"TORCH_CUDA = {json.dumps(cfg.get('torch_cuda', ''))}\n"
        f"NVCC_VERSION = {json.dumps(cfg.get('nvcc_version', ''))}\n"
    )


def write_build_config(cfg: dict, target: Path = BUILD_CONFIG_PATH) -> None:
    text = render_build_config(cfg)
    if not target.exists() or target.read_text() != text:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    log(f"wrote {target}")


# --------------------------------------------------------------------------------------------------
# Everything the build needs, computed once
# --------------------------------------------------------------------------------------------------
def build_configuration() -> dict:
    archs = parse_archs(os.environ.get("FLASH_ATTN_CUDA_ARCHS"))
    headdims = parse_headdims(os.environ.get("FLASH_ATTN_HEADDIMS"))
    dtypes = parse_dtypes(os.environ.get("FLASH_ATTN_DTYPES"))
    max_jobs = parse_max_jobs(os.environ.get("MAX_JOBS"))
    nvcc_threads = os.environ.get("NVCC_THREADS", "").strip()
    if nvcc_threads and (not nvcc_threads.isdigit() or int(nvcc_threads) < 1):
        raise ConfigError(f'NVCC_THREADS="{nvcc_threads}": expected a positive integer')
    return {
        "archs": archs,
        "ptx_archs": [KC.sm80_ptx_arch(archs)],
        "kernel_archs": KC.kernel_archs_built(archs),
        "headdims": headdims,
        "dtypes": dtypes,
        "max_jobs": max_jobs,
        "nvcc_threads": int(nvcc_threads) if nvcc_threads else None,
        "sources": select_sources(headdims, dtypes, archs),
    }


def compile_flags(cfg: dict) -> dict:
    """The extension's flags. nvcc's carry the sm80 kernels' -gencode list (also used for csrc/*.cu); other kernel
    architectures swap it for their own (nvcc_flags_for)."""
    defines = [f"-DFLASH_ATTN_HDIM_{d}" for d in cfg["headdims"]]
    defines += [f"-DFLASH_ATTN_DTYPE_{dt.upper()}" for dt in cfg["dtypes"]]
    if "sm90" in KC.kernel_archs_built(cfg["archs"]):
        defines.append("-DFLASH_ATTN_ARCH_SM90")  # the binding may call the sm90 kernels
    gencode = KC.gencode("sm80", cfg["archs"])
    nvcc = [
        "-O3",
        "-std=c++20",
        "--use_fast_math",
        "-lineinfo",
        "--expt-relaxed-constexpr",
        "--expt-extended-lambda",
        "-DNDEBUG",
        "-U__CUDA_NO_HALF_OPERATORS__",
        "-U__CUDA_NO_HALF_CONVERSIONS__",
        "-U__CUDA_NO_BFLOAT16_OPERATORS__",
        "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
        "-U__CUDA_NO_BFLOAT162_OPERATORS__",
        "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
        *defines,
        *gencode,
    ]
    if cfg["nvcc_threads"]:
        nvcc += ["--threads", str(cfg["nvcc_threads"])]
    cxx = ["-O3", "-std=c++20", *defines]
    return {"cxx": cxx, "nvcc": nvcc}


def print_summary(cfg: dict) -> None:
    log(f"version {VERSION}")
    if "torch_version" in cfg:
        log(f"torch {cfg['torch_version']} (CUDA {cfg['torch_cuda'] or 'none'}), nvcc {cfg.get('nvcc_version', '?')}")
    log(f"CUDA archs: {';'.join(map(str, cfg['archs']))} (SASS), PTX: {';'.join(map(str, cfg['ptx_archs']))}"
        "   [FLASH_ATTN_CUDA_ARCHS]")
    for kernel_arch in cfg["kernel_archs"]:
        log(f"  {kernel_arch} kernels: {' '.join(KC.gencode(kernel_arch, cfg['archs']))}")
    log(f"head dims:  {';'.join(map(str, cfg['headdims']))}   [FLASH_ATTN_HEADDIMS]")
    log(f"dtypes:     {';'.join(cfg['dtypes'])}   [FLASH_ATTN_DTYPES]")
    log(f"MAX_JOBS:   {cfg['max_jobs']}" + (f", NVCC_THREADS: {cfg['nvcc_threads']}" if cfg["nvcc_threads"] else ""))
    log(f"CUTLASS:    {cfg['cutlass_include']}  (from {cfg['cutlass_source']})")
    log(f"kernels selected ({len(cfg['sources'])}):")
    for src in cfg["sources"]:
        log(f"  {src}")


# --------------------------------------------------------------------------------------------------
# Per-file progress lines (tools/nvcc_progress.py in front of nvcc)
# --------------------------------------------------------------------------------------------------
PROGRESS_ENV = ("PYTORCH_NVCC", "FLASH_ATTN_PROGRESS_STATE", "FLASH_ATTN_PROGRESS_TOTAL", "FLASH_ATTN_PROGRESS_START")


def enable_progress(build_temp: str, total: int):
    """Route torch's ninja nvcc command through tools/nvcc_progress.py, which prints one line per finished .cu file.

    Returns (counter file, saved environment) or None when it is off or unavailable; anything unexpected only costs
    the progress lines, never the build. Uses torch's PYTORCH_NVCC (the `nvcc = ...` line of build.ninja); a torch
    without it simply ignores the variable. A PYTORCH_NVCC the user set (e.g. ccache) stays the compiler, behind
    the launcher; otherwise the launcher runs what torch would: ccache/sccache if installed, then nvcc.
    """
    if os.environ.get("FLASH_ATTN_BUILD_PROGRESS", "1").strip() in ("0", "", "false", "no", "off"):
        return None
    try:
        if not PROGRESS_LAUNCHER.is_file():
            return None
        from torch.utils import cpp_extension

        saved = {k: os.environ.get(k) for k in PROGRESS_ENV}
        user = os.environ.get("PYTORCH_NVCC", "").strip()
        if user:
            compiler = shlex.split(user)
            if PROGRESS_LAUNCHER.name in user:  # already wrapped (nested setup.py call)
                return None
        else:
            compiler = [os.path.join(cpp_extension.CUDA_HOME, "bin", "nvcc")]
            wrap = getattr(cpp_extension, "_wrap_compiler", None)  # adds ccache / sccache, as torch does
            if wrap is not None:
                compiler = list(wrap(compiler))
        state = Path(build_temp).resolve() / "flash_attn_progress"
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text("0\n")
        # The command is part of what ninja compares to decide a rebuild, so it must not depend on how setup.py was
        # started: `python` vs `python3`, or pip vs setup.py, would otherwise recompile every kernel. The launcher
        # needs only the standard library: the resolved interpreter (a venv's base python) runs it the same.
        python = os.path.realpath(sys.executable)
        os.environ["PYTORCH_NVCC"] = shlex.join([python, str(PROGRESS_LAUNCHER), *compiler])
        os.environ["FLASH_ATTN_PROGRESS_STATE"] = str(state)
        os.environ["FLASH_ATTN_PROGRESS_TOTAL"] = str(total)
        os.environ["FLASH_ATTN_PROGRESS_START"] = repr(time.time())
        return state, saved
    except Exception as e:  # noqa: BLE001
        log(f"(no per-file progress lines: {e})")
        return None


def finish_progress(progress) -> int | None:
    """Restore the environment; return how many .cu files were compiled (None if unknown)."""
    if progress is None:
        return None
    state, saved = progress
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        ninja_file = state.parent / "build.ninja"  # torch writes it to build_temp
        if PROGRESS_LAUNCHER.name not in ninja_file.read_text():
            return None  # this torch does not read PYTORCH_NVCC: no progress lines, no count
        return int(state.read_text().strip())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------------------
# setuptools plumbing
# --------------------------------------------------------------------------------------------------
def _resolve_build_inputs() -> None:
    """Called by the build commands only (not by egg_info / --version): finds CUDA and CUTLASS."""
    if "cutlass_include" in CFG:
        return
    try:  # recorded for `python -m flash_attn`; build_ext itself reports a missing torch or toolkit
        import torch
        from torch.utils.cpp_extension import CUDA_HOME

        CFG["torch_version"], CFG["torch_cuda"] = torch.__version__, torch.version.cuda or ""
        if CUDA_HOME is not None:
            CFG["nvcc_version"] = check_nvcc(CUDA_HOME, torch.version.cuda)
    except ImportError:
        pass
    CFG["cutlass_include"], CFG["cutlass_source"] = find_cutlass_include()
    if not CFG["sources"]:
        raise ConfigError("no kernel instantiation files selected; run python3 tools/generate_kernels.py")
    print_summary(CFG)
    write_build_config(CFG)


class build_py(_build_py):
    """Writes flash_attn/_build_config.py before the package files are copied."""

    def run(self):
        _resolve_build_inputs()
        super().run()

    def get_source_files(self):
        # What sdist / egg_info list as sources: never a _build_config.py left by an earlier build in this tree
        # (a source distribution records no build). Filtered here rather than by MANIFEST.in's `exclude`, which
        # warns whenever the file is absent.
        generated = BUILD_CONFIG_PATH.relative_to(ROOT).as_posix()
        return [f for f in super().get_source_files() if Path(f).as_posix() != generated]


def make_ext_modules_and_cmdclass():
    ensure_cuda_home()
    try:
        import torch  # noqa: F401
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CUDAExtension
    except ImportError as e:
        raise ConfigError(
            f"building flash_attn needs PyTorch installed first ({e}). Install torch, then build "
            "without build isolation: pip install --no-build-isolation ."
        )

    class build_ext(BuildExtension):
        """Finds CUTLASS, records the build config, then compiles with ninja."""

        def run(self):
            if CUDA_HOME is None:
                raise ConfigError("CUDA toolkit not found: install nvcc or set CUDA_HOME (e.g. /usr/local/cuda)")
            started = time.time()
            _resolve_build_inputs()
            for ext in self.extensions:
                # -isystem: CUTLASS's own warnings (e.g. CUDA 13 vector-type deprecations) stay quiet.
                for flags in ext.extra_compile_args.values():
                    flags += ["-isystem", CFG["cutlass_include"]]
            os.environ["MAX_JOBS"] = str(CFG["max_jobs"])  # BuildExtension hands this to ninja
            cu_files = sum(1 for src in (*COMMON_SOURCES, *CFG["sources"]) if src.endswith(".cu"))
            progress = enable_progress(self.build_temp, cu_files)
            try:
                super().run()
            finally:
                compiled = finish_progress(progress)
            minutes, seconds = divmod(int(time.time() - started), 60)
            if compiled is not None and compiled < cu_files:
                note = f"; {compiled} of {cu_files} .cu files compiled, the others were up to date"
            else:
                note = ""
            log(f"built the extension ({len(CFG['sources'])} kernel files, {len(COMMON_SOURCES)} others) in "
                f"{minutes} min {seconds} s (torch {torch.__version__}, nvcc {CFG.get('nvcc_version', '?')}){note}")

        def build_extension(self, ext):
            # BuildExtension.build_extensions has made self.compiler.compile torch's ninja compile by now.
            compile_all = self.compiler.compile

            def compile_split(sources, output_dir=None, extra_postargs=None, **kwargs):
                return compile_per_kernel_arch(compile_all, sources, output_dir, extra_postargs, CFG["archs"],
                                               **kwargs)

            self.compiler.compile = compile_split
            try:
                super().build_extension(ext)
            finally:
                self.compiler.compile = compile_all

    if CUDA_HOME is None:
        # Metadata-only commands (egg_info, --version, sdist) must work without a toolkit;
        # build_ext above raises the error.
        from setuptools import Extension

        ext = Extension(EXT_NAME, sources=[*COMMON_SOURCES, *CFG["sources"]])
    else:
        ext = CUDAExtension(
            name=EXT_NAME,
            sources=[*COMMON_SOURCES, *CFG["sources"]],
            include_dirs=[str(ROOT / "csrc")],
            extra_compile_args=compile_flags(CFG),
        )
    return [ext], {"build_ext": build_ext.with_options(use_ninja=True), "build_py": build_py}


if __name__ == "__main__":  # pip / setuptools run this file as __main__; tests load it only for its functions
    VERSION = read_version()
    CFG = build_configuration()  # validates the env vars up front, even for metadata-only commands
    EXT_MODULES, CMDCLASS = make_ext_modules_and_cmdclass()

    setup(
        name="flash_attn",
        version=VERSION,
        description="Flash Attention (2.x API): fast, memory-efficient exact attention, CUDA kernels written with CuTe",
        long_description=(ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else "",
        long_description_content_type="text/markdown",
        license="BSD-3-Clause",
        packages=find_packages(include=["flash_attn", "flash_attn.*"]),
        ext_modules=EXT_MODULES,
        cmdclass=CMDCLASS,
        python_requires=">=3.9",
        install_requires=["torch", "einops"],
        zip_safe=False,
    )
