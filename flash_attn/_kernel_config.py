"""The one source of the kernel list: head-dim buckets, dtypes, target archs and kernel architectures.

Read by setup.py and tools/generate_kernels.py without importing the flash_attn package (which imports torch),
so this file uses the standard library only and no package-relative imports. tools/generate_kernels.py turns it
into csrc/instantiations/<kernel arch>/*.cu and csrc/flash/host/kernel_table.h (the C++ side of these lists);
`python3 tools/generate_kernels.py --check` fails when those are out of date.
"""

HEADDIM_BUCKETS = (32, 64, 96, 128, 192, 256)  # a head dim d runs on the smallest bucket >= d
DTYPES = ("fp16", "bf16")
# The sm90 forward is built for the buckets from this one on; smaller head dims run this bucket's sm90 kernel, its
# extra columns zero-filled by TMA (generated into csrc/flash/host/kernel_table.h as kSm90FwdMinHeadDim).
SM90_MIN_HEADDIM = 64

# CUDA archs a build may target (FLASH_ATTN_CUDA_ARCHS): every kernel needs sm80 instructions.
MIN_ARCH = 80
DEFAULT_ARCHS = (80, 90)

# Kernel architectures: the instruction set a kernel is written for, one folder of csrc/instantiations/ each.
#   sm80: mma.sync / ldmatrix / cp.async kernels; run on every arch >= 80, so always built.
#   sm90: Hopper wgmma / TMA kernels; sm_90a SASS only (the "a" features run on sm90 alone), so built only when
#         90 is among the archs.
KERNEL_ARCHS = ("sm80", "sm90")

# Generated instantiation file names; the suffix repeats the kernel architecture of the file's folder.
INSTANTIATION_NAME_PATTERN = (
    r"^flash_(?P<direction>fwd|bwd|fwd_split)_hdim(?P<hdim>\d+)_(?P<dtype>fp16|bf16)(?P<window>_window)?"
    r"_(?P<kernel_arch>sm\d+)\.cu$"
)


def kernel_archs_built(archs):
    """The kernel architectures a build for these CUDA archs compiles."""
    return [ka for ka in KERNEL_ARCHS if ka == "sm80" or (ka == "sm90" and 90 in archs)]


def sm80_ptx_arch(archs):
    """The PTX level the sm80 kernels' SASS is compiled from: the lowest selected arch.

    nvcc runs its front end once per PTX level and ptxas once per GPU arch, and the front end is most of a
    file's compile time: compiling sm_90 from compute_90 beside sm_80 from compute_80 cost ~70% more per file
    (measured on a backward file: 124 s vs 74 s). The only sm90-only instruction the sm80 kernels use (the
    backward's four-float dQ reductions) measured within ~1% of the coalesced scalar ones (H200, d 128, s 8k
    backward: 322 vs 318 TFLOP/s), so it is left to builds whose lowest arch is 90 ("90" alone), which get it
    without a second pass.
    """
    return min(archs)


def gencode(kernel_arch, archs):
    """nvcc -gencode flags for the files of one kernel architecture, given the selected CUDA archs."""
    if kernel_arch == "sm80":
        ptx = sm80_ptx_arch(archs)
        flags = []
        for arch in archs:  # SASS for each arch, all from one PTX level (one front-end pass)
            flags += ["-gencode", f"arch=compute_{ptx},code=sm_{arch}"]
        return flags + ["-gencode", f"arch=compute_{ptx},code=compute_{ptx}"]  # PTX: newer GPUs JIT it
    if kernel_arch == "sm90":
        # wgmma / setmaxnreg need the arch-specific target; its SASS runs on sm90 only and there is no PTX
        # (compute_90a PTX could not be JIT-compiled for any other GPU either).
        return ["-gencode", "arch=compute_90a,code=sm_90a"]
    raise ValueError(f"unknown kernel architecture {kernel_arch!r}; expected one of {KERNEL_ARCHS}")
