#!/usr/bin/env bash
# Same-run speed comparison of two source trees on one GPU: BASE (a checkout of the earlier commit, e.g.
#   git archive <rev> | tar -x -C .base   and carry ".base") against this tree, both built in place for the
# benchmark's kernels only (bf16; FLASH_ATTN_HEADDIMS, default "64;128;256"), then the standard grid (fwd and
# fwd_bwd) and the decode table for each, interleaved per direction. Logs and tables go to $OUT.
#
#   BASE=.base bash tools/bench_before_after.sh
#   BUILD=0 BENCH_ARGS="--dims 128 --seqlens 8k" bash tools/bench_before_after.sh   # trees already built
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
if [[ "${BUILD:-1}" != 0 ]]; then
    for tree in "$BASE" .; do
        echo "== [$(( $(date +%s) - T0 ))s] build $tree"
        (cd "$tree" && PYTHONPATH=/tmp/site python3 setup.py build_ext --inplace > "$OUT/build_$(basename "$(realpath "$tree")").log" 2>&1) \
            || { echo "build of $tree failed"; tail -30 "$OUT/build_$(basename "$(realpath "$tree")").log"; exit 1; }
    done
fi
for direction in fwd fwd_bwd; do
    for tree in "$BASE" .; do
        name=$([[ "$tree" == . ]] && echo after || echo before)
        backends=ours; [[ "$name" == after ]] && backends=ours,flash,cudnn
        echo "== [$(( $(date +%s) - T0 ))s] $direction $name"
        (cd benchmarks && PYTHONPATH="$(realpath "../$tree"):/tmp/site" python3 benchmark_flash_attn.py \
            --direction "$direction" --backends "$backends" ${BENCH_ARGS:-} \
            --output "$OUT/${direction}_$name.md" > "$OUT/${direction}_$name.log" 2>&1) || tail -20 "$OUT/${direction}_$name.log"
    done
done
if [[ "${DECODE:-1}" != 0 ]]; then
    for tree in "$BASE" .; do
        name=$([[ "$tree" == . ]] && echo after || echo before)
        echo "== [$(( $(date +%s) - T0 ))s] decode $name"
        (cd benchmarks && PYTHONPATH="$(realpath "../$tree"):/tmp/site" python3 benchmark_kvcache.py ${DECODE_ARGS:-} \
            --output "$OUT/decode_$name.md" > "$OUT/decode_$name.log" 2>&1) || tail -20 "$OUT/decode_$name.log"
    done
fi
echo "== [$(( $(date +%s) - T0 ))s] done"
for f in "$OUT"/fwd_before.md "$OUT"/fwd_after.md "$OUT"/fwd_bwd_before.md "$OUT"/fwd_bwd_after.md "$OUT"/decode_before.md "$OUT"/decode_after.md; do
    [[ -f "$f" ]] && { echo "--- $(basename "$f")"; cat "$f"; }
done
