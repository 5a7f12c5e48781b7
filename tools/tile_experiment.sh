#!/usr/bin/env bash
# Tile-size experiment on the GPU machine: builds one head-dim bucket once per FwdTileConfig variant
# (edited in place, restored afterwards) and benchmarks each, so variants are compared in one run.
#   HDIM=64 VARIANTS="128,128,4 128,64,4" bash tools/tile_experiment.sh
set -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
HDIM=${HDIM:-64}
CFG=csrc/flash/sm80/fwd_tile_config.h
cp "$CFG" /tmp/fwd_tile_config.h.orig
if [[ ! -d /tmp/site/cutlass_library ]]; then python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl; fi
export PYTHONPATH=/tmp/site:$PYTHONPATH
for v in $VARIANTS; do
  IFS=, read -r bm bn nw <<< "$v"
  sed -i -E "s/(struct FwdTileConfig<$HDIM, kIsCausal> *\{ static constexpr int kBlockM = )[0-9]+, kBlockN = [0-9]+, kNWarps = [0-9]+/\1$bm, kBlockN = $bn, kNWarps = $nw/" "$CFG"
  grep "FwdTileConfig<$HDIM," "$CFG"
  MAX_JOBS=16 FLASH_ATTN_CUDA_ARCHS=90 FLASH_ATTN_HEADDIMS=$HDIM FLASH_ATTN_DTYPES=bf16 \
    python3 setup.py build_ext --inplace > "$OUT/build_$v.log" 2>&1 || { echo "build $v failed"; tail -30 "$OUT/build_$v.log"; continue; }
  python3 benchmarks/benchmark_flash_attn.py --dims $HDIM --backends ours,flash ${BENCH_ARGS:-} --output "$OUT/bench_$v.md" > "$OUT/bench_$v.log" 2>&1
  echo "== variant $v"; cat "$OUT/bench_$v.md"
done
cp /tmp/fwd_tile_config.h.orig "$CFG"
