#!/usr/bin/env python3
"""Plot benchmark_flash_attn.py results: TFLOP/s per seqlen, one panel per (head dim, causal), one line per backend.

    python3 benchmarks/benchmark_flash_attn.py --direction fwd --csv fwd.csv
    python3 benchmarks/plot_benchmarks.py fwd.csv fwd_bwd.csv --title "H200, bf16" --out-dir benchmarks/plots

Writes <out-dir>/<direction>.png per direction found in the CSV files. Needs matplotlib (an optional dependency:
pip install matplotlib); the CSV files can be copied off the GPU machine and plotted anywhere.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

LABELS = {"ours": "flash_attn (ours)", "ours-sm80": "flash_attn, sm80 kernels", "flash": "SDPA flash",
          "cudnn": "SDPA cuDNN", "efficient": "SDPA efficient"}
STYLES = {"ours": dict(color="tab:red", marker="o", linewidth=2.2), "ours-sm80": dict(color="tab:orange", marker="D"),
          "flash": dict(color="tab:blue", marker="s"), "cudnn": dict(color="tab:green", marker="^"),
          "efficient": dict(color="tab:gray", marker="v")}
DIRECTION_TITLES = {"fwd": "forward", "bwd": "backward", "fwd_bwd": "forward + backward"}


def read_rows(paths):
    """{direction: {(d, causal): {backend: [(seqlen, tflops)]}}} from benchmark_flash_attn.py CSV files."""
    data = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for path in paths:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                backends = [k[: -len("_tflops")] for k in row if k.endswith("_tflops")]
                for b in backends:
                    value = row[f"{b}_tflops"]
                    if value in ("", "-"):
                        continue
                    key = (int(row["d"]), row["causal"] == "1")
                    data[row["direction"]][key][b].append((int(row["seqlen"]), float(value)))
    return data


def plot(data, title: str, out_dir: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("plot_benchmarks.py needs matplotlib (pip install matplotlib)")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for direction, panels in data.items():
        dims = sorted({d for d, _ in panels})
        fig, axes = plt.subplots(2, len(dims), figsize=(4.2 * len(dims), 7.0), squeeze=False)
        for col, d in enumerate(dims):
            for row, causal in enumerate((False, True)):
                ax = axes[row][col]
                for backend, points in sorted(panels.get((d, causal), {}).items(), key=lambda kv: kv[0] != "ours"):
                    points.sort()
                    ax.plot([s for s, _ in points], [t for _, t in points], label=LABELS.get(backend, backend),
                            **STYLES.get(backend, {}))
                ax.set_xscale("log", base=2)
                seqlens = sorted({s for pts in panels.get((d, causal), {}).values() for s, _ in pts})
                ax.set_xticks(seqlens, [f"{s // 1024}k" if s >= 1024 else str(s) for s in seqlens])
                ax.set_ylim(bottom=0)
                ax.set_title(f"d {d}, {'causal' if causal else 'not causal'}")
                ax.set_xlabel("seqlen")
                ax.grid(True, alpha=0.3)
                if col == 0:
                    ax.set_ylabel("TFLOP/s")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.suptitle(f"{DIRECTION_TITLES.get(direction, direction)}: {title}", y=0.99)
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.955), ncol=len(labels), frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 0.92))
        path = out_dir / f"{direction}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv", nargs="+", help="CSV files written by benchmark_flash_attn.py --csv")
    ap.add_argument("--title", default="", help="suffix of each figure's title (device, dtype, versions)")
    ap.add_argument("--out-dir", type=Path, default=Path("benchmarks/plots"))
    args = ap.parse_args(argv)
    data = read_rows(args.csv)
    if not data:
        print("plot_benchmarks.py: no rows in the CSV files", file=sys.stderr)
        return 1
    for path in plot(data, args.title, args.out_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
