#!/usr/bin/env bash
# Same-run speed comparison of two source trees on one GPU: BASE (a checkout of the earlier commit, e.g.
#   git archive <rev> | tar -x -C .base   and carry ".base") against this tree, both built in place for the
# benchmark's kernels only (bf16; FLASH_ATTN_HEADDIMS, default "64;128;256"), then the standard grid (fwd and
# fwd_bwd) and the decode table for each, interleaved per direction. Logs and tables go to $OUT.
#
#   BASE=.base bash tools/bench_before_after.sh   # carry ".base" (and ".whl") in this call only
#   BUILD=0 BENCH_ARGS="--dims 128 --seqlens 8k" bash tools/bench_before_after.sh   # trees already built
#   BUILD=base REPEATS=2 bash tools/bench_before_after.sh   # this tree already built (e.g. by gpu_check.sh)
#
# REPEATS (default 1) runs every table that many times, alternating which tree goes first; tools/bench_compare.py
# then prints one before/after line per cell (best of the repeats) and flags cells more than 2% slower.
# AFTER_BACKENDS (default ours,flash,cudnn) are the after tree's benchmark columns; the before tree runs ours only.
# AFTER_COLUMN (default ours) is the after column compared with before's ours: e.g. AFTER_BACKENDS=ours,ours-sm80,...
# AFTER_COLUMN=ours-sm80 compares the sm80 kernels of both trees when the after tree's ours runs sm90 kernels.
set -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
BASE=${BASE:-.base}
export MAX_JOBS=${MAX_JOBS:-16} FLASH_ATTN_DTYPES=bf16 FLASH_ATTN_HEADDIMS=${FLASH_ATTN_HEADDIMS:-64;128;256}
export FLASH_ATTN_CUDA_ARCHS=${FLASH_ATTN_CUDA_ARCHS:-80;90}
if [[ ! -d /tmp/site/cutlass_library ]]; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
fi
T0=$(date +%s)
REPEATS=${REPEATS:-1}
trees_to_build=("$BASE" .); [[ "${BUILD:-1}" == base ]] && trees_to_build=("$BASE")
if [[ "${BUILD:-1}" != 0 ]]; then
    for tree in "${trees_to_build[@]}"; do
        echo "== [$(( $(date +%s) - T0 ))s] build $tree"
        (cd "$tree" && PYTHONPATH=/tmp/site python3 setup.py build_ext --inplace > "$OUT/build_$(basename "$(realpath "$tree")").log" 2>&1) \
            || { echo "build of $tree failed"; tail -30 "$OUT/build_$(basename "$(realpath "$tree")").log"; exit 1; }
    done
fi
# Both trees must hold a build (a carried path replaces the device's copy: carry BASE only in the call that builds it).
for tree in "$BASE" .; do
    if [[ ! -f "$tree/flash_attn/_build_config.py" ]] || ! compgen -G "$tree/flash_attn_2_cuda*.so" > /dev/null; then
        echo "bench_before_after: $tree is not built in place (no flash_attn/_build_config.py or extension);" \
             "build it first (BUILD=1), in this call: a carried $BASE replaces the copy an earlier call built" >&2
        exit 1
    fi
done
# order r: which tree runs first in repeat r (alternating, so drift over the run does not favour one tree).
order() { if (( $1 % 2 )); then echo ". $BASE"; else echo "$BASE ."; fi; }
for (( r = 0; r < REPEATS; ++r )); do
    suffix=$([[ "$REPEATS" == 1 ]] && echo "" || echo "_r$r")
    for direction in fwd fwd_bwd; do
        for tree in $(order "$r"); do
            name=$([[ "$tree" == . ]] && echo after || echo before)
            backends=ours; [[ "$name" == after ]] && backends=${AFTER_BACKENDS:-ours,flash,cudnn}
            echo "== [$(( $(date +%s) - T0 ))s] $direction $name$suffix"
            (cd benchmarks && PYTHONPATH="$(realpath "../$tree"):/tmp/site" python3 benchmark_flash_attn.py \
                --direction "$direction" --backends "$backends" ${BENCH_ARGS:-} \
                --output "$OUT/${direction}_$name$suffix.md" > "$OUT/${direction}_$name$suffix.log" 2>&1) \
                || tail -20 "$OUT/${direction}_$name$suffix.log"
        done
    done
    if [[ "${DECODE:-1}" != 0 ]]; then
        for tree in $(order "$r"); do
            name=$([[ "$tree" == . ]] && echo after || echo before)
            echo "== [$(( $(date +%s) - T0 ))s] decode $name$suffix"
            (cd benchmarks && PYTHONPATH="$(realpath "../$tree"):/tmp/site" python3 benchmark_kvcache.py ${DECODE_ARGS:-} \
                --output "$OUT/decode_$name$suffix.md" > "$OUT/decode_$name$suffix.log" 2>&1) \
                || tail -20 "$OUT/decode_$name$suffix.log"
        done
    fi
done
echo "== [$(( $(date +%s) - T0 ))s] done"
if [[ "${TABLES:-1}" != 0 ]]; then
    for f in "$OUT"/fwd_after*.md "$OUT"/fwd_bwd_after*.md "$OUT"/decode_after*.md; do
        [[ -f "$f" ]] && { echo "--- $(basename "$f")"; cat "$f"; }
    done
fi
python3 tools/bench_compare.py "$OUT" --after-column "${AFTER_COLUMN:-ours}"
