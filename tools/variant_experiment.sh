#!/usr/bin/env bash
# Compare source variants of the kernels in one GPU run: every variant is a full source tree under
# .variants/<name>/ (ignored by git, carried to the GPU machine), prepared here with
#   tools/variant_experiment.sh prepare <name> <git-ref>      # git archive of a commit or branch
# On the GPU machine all variants build at once (the 16 cores shared between them), then each runs the same
# benchmark commands one after another, so the numbers come from one machine in one session.
#
#   VARIANTS="main rev" HDIMS="64;128" BENCHES=$'fwd_bwd|--dims 64,128 --seqlens 2k,8k\nbwd|--dims 128' \
#     bash tools/variant_experiment.sh
#
# BENCHES: one "<direction>|<extra benchmark arguments>" per line.
set -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$PWD

if [[ "${1:-}" == prepare ]]; then
  name=$2; ref=$3
  rm -rf ".variants/$name" && mkdir -p ".variants/$name"
  git archive "$ref" | tar -x -C ".variants/$name"
  echo "prepared .variants/$name from $(git rev-parse --short "$ref")"
  exit 0
fi

OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
if [[ ! -d /tmp/site/cutlass_library ]]; then python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl; fi
export PYTHONPATH=/tmp/site
read -r -a names <<< "$VARIANTS"
jobs=$(( 16 / ${#names[@]} )); (( jobs < 1 )) && jobs=1
T0=$(date +%s)
for v in "${names[@]}"; do
  ( cd ".variants/$v" && MAX_JOBS=$jobs FLASH_ATTN_CUDA_ARCHS=90 FLASH_ATTN_HEADDIMS="${HDIMS:-64;128}" \
      FLASH_ATTN_DTYPES=bf16 python3 setup.py build_ext --inplace > "$OUT/build_$v.log" 2>&1 \
      && echo "built $v in $(( $(date +%s) - T0 ))s" || echo "BUILD FAILED: $v (see build_$v.log)" ) &
done
wait

mapfile -t benches <<< "$BENCHES"
summary="$OUT/variants.md"; : > "$summary"
for b in "${benches[@]}"; do
  [[ -z "$b" ]] && continue
  direction=${b%%|*}; args=${b#*|}
  for v in "${names[@]}"; do
    tag="${v}_$(echo "$direction $args" | tr -c 'a-zA-Z0-9' '_' | cut -c1-40)"
    ( cd "$ROOT/.variants/$v/benchmarks" && PYTHONPATH="$ROOT/.variants/$v:/tmp/site" \
        python3 benchmark_flash_attn.py --direction "$direction" $args --output "$OUT/$tag.md" > "$OUT/$tag.log" 2>&1 )
    { echo "### $v: --direction $direction $args"; cat "$OUT/$tag.md" 2>/dev/null || tail -5 "$OUT/$tag.log"; echo; } \
      >> "$summary"
  done
done
cat "$summary"
echo "total $(( $(date +%s) - T0 ))s"
