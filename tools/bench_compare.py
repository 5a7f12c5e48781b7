#!/usr/bin/env python3
"""Before/after table from the markdown tables tools/bench_before_after.sh writes.

    python3 tools/bench_compare.py OUT_DIR [--bar 0.98] [--after-column ours-sm80]

For each table kind (fwd, fwd_bwd: TFLOP/s of "ours"; decode: GB/s of "ours") it reads every
<kind>_before*.md and <kind>_after*.md in OUT_DIR, keeps each cell's best value over the repeats (run-to-run
clock noise only ever lowers a number), and prints one line per cell: before, after, after/before, and "SLOWER"
where the ratio is under the bar. --after-column takes the after tables' fwd/fwd_bwd number from another of our
columns (ours-sm80: the sm80 kernels of the after tree against the before tree's ours). Exit status 0 always: it
reports, the reader judges.
"""
import argparse
import glob
import os
import re

# Columns that identify a cell, and the column holding our number, per table kind.
KINDS = {
    "fwd": (("d", "seqlen", "causal"), "ours"),
    "fwd_bwd": (("d", "seqlen", "causal"), "ours"),
    "decode": (("batch", "cache", "layout"), "ours GB/s"),
}


def read_cells(path, key_cols, value_col):
    """{key tuple: float} from the first markdown table in `path` that has all the named columns."""
    cells, header = {}, None
    with open(path) as f:
        for line in f:
            if not line.startswith("|"):
                header = None  # a table ends at its first non-table line
                continue
            cols = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                if all(k in cols for k in key_cols) and value_col in cols:
                    header = cols
                continue
            if set("".join(cols)) <= set("-: "):
                continue
            row = dict(zip(header, cols))
            try:
                cells[tuple(row[k] for k in key_cols)] = float(row[value_col])
            except (KeyError, ValueError):
                continue
    return cells


def best_over(paths, key_cols, value_col):
    best = {}
    for p in paths:
        for k, v in read_cells(p, key_cols, value_col).items():
            best[k] = max(best.get(k, 0.0), v)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--bar", type=float, default=0.98, help="flag cells with after/before below this")
    ap.add_argument("--after-column", default="ours", help="fwd/fwd_bwd column of the after tables (default ours)")
    args = ap.parse_args()
    for kind, (key_cols, value_col) in KINDS.items():
        def runs(name):
            pattern = os.path.join(args.out_dir, f"{kind}_{name}*.md")
            return sorted(p for p in glob.glob(pattern) if re.fullmatch(rf"{kind}_{name}(_r\d+)?\.md", os.path.basename(p)))
        before_paths, after_paths = runs("before"), runs("after")
        if not before_paths or not after_paths:
            continue
        before = best_over(before_paths, key_cols, value_col)
        after_col = args.after_column if kind in ("fwd", "fwd_bwd") else value_col
        after = best_over(after_paths, key_cols, after_col)
        print(f"\n{kind}: {value_col} before, {after_col} after, best of {len(before_paths)} before / "
              f"{len(after_paths)} after runs")
        print("| " + " | ".join(key_cols) + " | before | after | after/before |")
        print("|" + "---|" * (len(key_cols) + 3))
        slower = 0
        for key in before:
            if key not in after:
                continue
            ratio = after[key] / before[key] if before[key] else float("nan")
            flag = " SLOWER" if ratio < args.bar else ""
            slower += bool(flag)
            print("| " + " | ".join(key) + f" | {before[key]:g} | {after[key]:g} | {ratio:.3f}{flag} |")
        print(f"{kind}: {slower} of {len(before)} cells under {args.bar}")


if __name__ == "__main__":
    main()
