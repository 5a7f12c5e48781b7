#!/usr/bin/env bash
# Tile-size experiment on the GPU machine: builds one head-dim bucket once per tile-config variant (the
# config header is edited in place and restored afterwards) and benchmarks each, so variants are compared
# in one run.
#   HDIM=64 VARIANTS="128,128,4 128,64,4" bash tools/tile_experiment.sh                  # forward: M,N,warps
#   DIRECTION=bwd HDIM=64 VARIANTS="128,128,8,4,4,4,2" bash tools/tile_experiment.sh    # backward: M,N,warps,
#                                                           warps_m_SdP,warps_n_dKV,warps_m_dQ,stages
#   ARCH=sm90 HDIM=64 VARIANTS="128,128,2 128,128,4" BENCH_ARGS="--seqlens 512,1k,4k --cuda-graph" \
#       bash tools/tile_experiment.sh                   # the sm90 forward: block_m,block_n,K/V stages of the bucket
#                                                       # (csrc/flash/sm90/fwd_tile_config.h), beside cuDNN
set -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
HDIM=${HDIM:-64}
DIRECTION=${DIRECTION:-fwd}
ARCH=${ARCH:-sm80}
if [[ "$ARCH" == sm90 ]]; then CFG=csrc/flash/sm90/fwd_tile_config.h; else CFG=csrc/flash/sm80/${DIRECTION}_tile_config.h; fi
cp "$CFG" /tmp/tile_config.h.orig
if [[ ! -d /tmp/site/cutlass_library ]]; then python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl; fi
export PYTHONPATH=/tmp/site:$PYTHONPATH
for v in $VARIANTS; do
  if [[ "$ARCH" == sm90 ]]; then
    IFS=, read -r bm bn st <<< "$v"
    sed -i -E "s/(if \(head_dim <= $HDIM\) \{ return \{)[0-9]+, [0-9]+, [0-9]+,/\1$bm, $bn, $st,/" "$CFG"
    grep "head_dim <= $HDIM)" "$CFG"
  elif [[ "$DIRECTION" == fwd ]]; then
    IFS=, read -r bm bn nw <<< "$v"
    sed -i -E "s/(struct FwdTileConfig<$HDIM, kHasWindow> *\{ static constexpr int kBlockM = )[0-9]+, kBlockN = [0-9]+, kNWarps = [0-9]+/\1$bm, kBlockN = $bn, kNWarps = $nw/" "$CFG"
    grep "FwdTileConfig<$HDIM," "$CFG"
  else
    IFS=, read -r bm bn nw sdp dkv dq st <<< "$v"
    sed -i -E "s/(struct BwdTileConfig<$HDIM> *\{ static constexpr int ).*/\1kBlockM = $bm, kBlockN = $bn, kNWarps = $nw, kWarpsM_SdP = $sdp, kWarpsN_dKV = $dkv, kWarpsM_dQ = $dq, kStages = $st; };/" "$CFG"
    grep "BwdTileConfig<$HDIM>" "$CFG"
  fi
  MAX_JOBS=16 FLASH_ATTN_CUDA_ARCHS=90 FLASH_ATTN_HEADDIMS=$HDIM FLASH_ATTN_DTYPES=bf16 \
    python3 setup.py build_ext --inplace > "$OUT/build_$v.log" 2>&1 || { echo "build $v failed"; tail -30 "$OUT/build_$v.log"; continue; }
  if [[ "$ARCH" == sm90 ]]; then backends=ours,cudnn; else backends=ours,flash; fi
  python3 benchmarks/benchmark_flash_attn.py --direction "$DIRECTION" --dims $HDIM --backends $backends ${BENCH_ARGS:-} \
    --output "$OUT/bench_$v.md" > "$OUT/bench_$v.log" 2>&1
  echo "== variant $v"; cat "$OUT/bench_$v.md"
done
cp /tmp/tile_config.h.orig "$CFG"
