#!/usr/bin/env bash
# Issue 5's bars in one run, on an existing in-place build (run after tools/gpu_check.sh on the same machine):
#   each variant's fwd+bwd TFLOP/s at d 128, s 8k, bf16, beside plain attention (bar: >= 0.9x plain; the window
#   counts only the visible pairs), and fwd+bwd time of window (512, 0) against full causal at s 16k (bar: >= 8x).
#
#   OUT=/tmp/out bash tools/bench_variants.sh        # writes $OUT/variants_bench.md and prints it
#   SPLIT=1 ...                                       # also forward and backward alone (non-causal, s 8k)
set -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
bench() {  # <label> <benchmark arguments...>: prints "label|causal|TFLOP/s|ms" per case (label: [direction/]name)
  local label=$1; shift
  local direction=fwd_bwd; [[ $label == */* ]] && direction=${label%%/*}
  python3 benchmarks/benchmark_flash_attn.py --direction "$direction" --dims 128 --backends ours --csv "$OUT/v.csv" "$@" \
      >> "$OUT/variants.log" 2>&1 || { echo "$label|-|failed|-"; return; }
  python3 - "$label" "$OUT/v.csv" <<'PY'
import csv, sys
for row in csv.DictReader(open(sys.argv[2])):
    ok = row["ours_tflops"] != "-"
    tf, ms = (f"{float(row['ours_tflops']):.0f}", f"{float(row['ours_ms']):.2f}") if ok else ("failed", "-")
    print(f"{sys.argv[1]}|{row['causal']}|{tf}|{ms}")
PY
}
: > "$OUT/variants.log"
{
  bench plain --seqlens 8k
  bench softcap --seqlens 8k --softcap 30
  bench alibi --seqlens 8k --alibi
  bench dropout --seqlens 8k --dropout 0.1
  bench window_1k --seqlens 8k --window 1024,1024 --causal false
  bench causal_16k --seqlens 16k --causal true
  bench window_512_16k --seqlens 16k --causal true --window 512,0
  if [[ "${SPLIT:-0}" == 1 ]]; then
    for direction in fwd bwd; do
      bench $direction/plain --seqlens 8k --causal false
      bench $direction/softcap --seqlens 8k --causal false --softcap 30
      bench $direction/alibi --seqlens 8k --causal false --alibi
      bench $direction/dropout --seqlens 8k --causal false --dropout 0.1
      bench $direction/window_1k --seqlens 8k --window 1024,1024 --causal false
    done
  fi
} | tee "$OUT/variants_raw.txt"
python3 - "$OUT/variants_raw.txt" <<'PY' | tee "$OUT/variants_bench.md"
import sys
rows = [l.strip().split("|") for l in open(sys.argv[1]) if l.count("|") == 3]
def num(x):
    try:
        return float(x)
    except ValueError:
        return None
def plain_of(label):
    return label.rsplit("/", 1)[0] + "/plain" if "/" in label else "plain"
plain = {(r[0], r[1]): num(r[2]) for r in rows if r[0].endswith("plain") and num(r[2])}
print("| variant (d 128, bf16; fwd+bwd unless named) | causal | TFLOP/s | ms | vs plain (same causal) |")
print("|---|---|---|---|---|")
ms = {}
for label, causal, tf, t in rows:
    ms[label, causal] = num(t)
    key = (plain_of(label), causal)
    rel = f"{num(tf) / plain[key]:.2f}" if num(tf) and key in plain and not label.endswith("16k") else ""
    print(f"| {label} | {'yes' if causal == '1' else 'no'} | {tf} | {t} | {rel} |")
def computed_pairs(s, left, right, block_m, block_n, by_query_block):
    """(query, key) pairs in the tiles the kernels visit for window (left, right), seqlen s (csrc/flash/block.h)."""
    tiles = 0
    if by_query_block:  # forward: key blocks of each query block
        for m in range((s + block_m - 1) // block_m):
            hi = min((s + block_n - 1) // block_n, max(0, -(-((m + 1) * block_m + right) // block_n)))
            lo = max(0, (m * block_m - left) // block_n)
            tiles += max(0, hi - lo)
    else:  # backward: query blocks of each key block
        for n in range((s + block_n - 1) // block_n):
            lo = max(0, (n * block_n - right) // block_m)
            hi = min((s + block_m - 1) // block_m, max(0, ((n + 1) * block_n - 1 + left) // block_m + 1))
            tiles += max(0, hi - lo)
    return tiles * block_m * block_n
# Window (1024, 1024) at s 8k per FLOP computed: the kernels' tiles (d 128: forward 128 x 64, backward 64 x 128)
# against the plain run's s^2 pairs, FLOPs 4 per pair forward, 10 backward.
s, full = 8192, 8192 * 8192
fwd_pairs, bwd_pairs = computed_pairs(s, 1024, 1024, 128, 64, True), computed_pairs(s, 1024, 1024, 64, 128, False)
per_computed = []
for label, work in (("window_1k", (4 * fwd_pairs + 10 * bwd_pairs) / (14 * full)), ("fwd/window_1k", fwd_pairs / full),
                    ("bwd/window_1k", bwd_pairs / full)):
    t, t_plain = ms.get((label, "0")), ms.get((plain_of(label), "0"))
    if t and t_plain:
        per_computed.append(f"{label} {work * t_plain / t:.2f}")
if per_computed:
    print("\nwindow (1024, 1024) vs plain per FLOP computed (tiles visited): " + ", ".join(per_computed))
t_causal, t_window = ms.get(("causal_16k", "1")), ms.get(("window_512_16k", "1"))
if t_causal and t_window:
    print(f"\nwindow (512, 0) vs full causal at s 16k: {t_causal / t_window:.1f}x faster (bar: >= 8x)")
PY
