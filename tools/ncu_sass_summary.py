"""Summarises Nsight Compute's per-instruction source page, ours against cuDNN's kernel, for the notes:

    ncu --set full --import-source yes --kernel-name regex:"fwd_kernel|cudnn" --launch-skip 1 --launch-count 2 \
        -o rep python3 tools/ncu_fwd.py 64 512 0 1
    ncu -i rep.ncu-rep --page source --csv --print-source sass > sass.csv
    python3 tools/ncu_sass_summary.py sass.csv                      # per kernel: stalls, opcodes, hot lines
    python3 tools/ncu_sass_summary.py sass.csv --kernel 0 --lines 1930:2010   # one kernel's SASS with its stalls

Per kernel: instructions executed (warp level) and stall samples, the stall reasons' shares, the opcodes by
instructions executed and by samples, which opcodes the `wait` stalls (fixed-latency dependencies) fall on, and the
code regions by execution count (a loop body executes once per key block, tile code once per tile).
"""
import argparse
import collections
import csv
import re

SAMPLES = "Warp Stall Sampling (All Samples)"
EXECUTED = "Instructions Executed"


def load(path):
    """The kernels of a `--page source --csv` export: [{name, header, rows}]."""
    kernels = []
    for row in csv.reader(open(path)):
        if not row:
            continue
        if row[0] == "Kernel Name":
            kernels.append({"name": row[1], "rows": []})
        elif row[0] == "Address":
            kernels[-1]["header"] = {name: i for i, name in enumerate(row)}
        elif kernels:
            kernels[-1]["rows"].append(row)
    return kernels


def value(kernel, row, column):
    try:
        return float(row[kernel["header"][column]] or 0)
    except (KeyError, ValueError, IndexError):
        return 0.0


def opcode(kernel, row):
    match = re.match(r"\s*(@!?U?P\w+\s+)?([A-Z0-9_]+)", row[kernel["header"]["Source"]])
    return match.group(2) if match else "?"


def stall_columns(kernel):
    return [c for c in kernel["header"] if c.startswith("stall_") and "Not Issued" not in c]


def summary(kernel, top):
    rows = kernel["rows"]
    samples = sum(value(kernel, r, SAMPLES) for r in rows) or 1.0
    executed = sum(value(kernel, r, EXECUTED) for r in rows) or 1.0
    print(f"== {kernel['name'][:150]}")
    print(f"   instructions executed {executed:.4g}, stall samples {samples:.0f}")
    stalls = {c: sum(value(kernel, r, c) for r in rows) for c in stall_columns(kernel)}
    print("   stalls: " + ", ".join(f"{c[6:]} {100 * v / samples:.1f}%"
                                   for c, v in sorted(stalls.items(), key=lambda x: -x[1])[:top]))
    by_exec, by_samples, waits = collections.Counter(), collections.Counter(), collections.Counter()
    for r in rows:
        op = opcode(kernel, r)
        by_exec[op] += value(kernel, r, EXECUTED)
        by_samples[op] += value(kernel, r, SAMPLES)
        waits[op] += value(kernel, r, "stall_wait")
    print("   opcodes by executed: " + ", ".join(f"{o} {100 * v / executed:.1f}%" for o, v in by_exec.most_common(top)))
    print("   opcodes by samples: " + ", ".join(f"{o} {100 * v / samples:.1f}%" for o, v in by_samples.most_common(top)))
    print("   `wait` samples by opcode: " + ", ".join(f"{o} {v:.0f}" for o, v in waits.most_common(top)))
    # Contiguous runs of instructions that execute equally often: the loop body, the per-tile code, the producer.
    runs, start = [], 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or value(kernel, rows[i], EXECUTED) != value(kernel, rows[start], EXECUTED):
            count = value(kernel, rows[start], EXECUTED)
            run_samples = sum(value(kernel, r, SAMPLES) for r in rows[start:i])
            if count > 0 and (i - start >= 20 or run_samples / samples > 0.02):
                runs.append((start, i - 1, int(count), run_samples))
            start = i
    print("   regions (lines, executions per instruction, share of samples):")
    for first, last, count, run_samples in runs:
        print(f"     {first:5d}-{last:5d}  x{count:<9d} {100 * run_samples / samples:5.1f}%")


def listing(kernel, first, last):
    rows = kernel["rows"]
    samples = sum(value(kernel, r, SAMPLES) for r in rows) or 1.0
    columns = stall_columns(kernel)
    for i in range(first, min(last, len(rows))):
        r = rows[i]
        reasons = sorted(((value(kernel, r, c), c[6:]) for c in columns), reverse=True)[:2]
        print(f"{i:5d} {100 * value(kernel, r, SAMPLES) / samples:5.2f}% x{int(value(kernel, r, EXECUTED)):<9d} "
              f"{r[kernel['header']['Source']][:64]:64s} " + " ".join(f"{n}:{v:.0f}" for v, n in reasons if v))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", help="ncu -i REPORT --page source --csv --print-source sass")
    parser.add_argument("--kernel", type=int, help="only this kernel (0: the first in the export)")
    parser.add_argument("--lines", help="FIRST:LAST: list these SASS lines with their stall reasons")
    parser.add_argument("--top", type=int, default=12, help="entries per ranking")
    args = parser.parse_args()
    kernels = load(args.csv)
    chosen = kernels if args.kernel is None else [kernels[args.kernel]]
    for kernel in chosen:
        if args.lines:
            first, last = (int(x) for x in args.lines.split(":"))
            listing(kernel, first, last)
        else:
            summary(kernel, args.top)


if __name__ == "__main__":
    main()
