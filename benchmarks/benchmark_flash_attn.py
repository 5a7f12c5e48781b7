#!/usr/bin/env python3
"""Benchmark flash_attn beside PyTorch's scaled_dot_product_attention backends.

Every backend runs in the same process on the same tensors: ours (flash_attn.flash_attn_func)
takes q, k, v as (batch, seqlen, heads, head_dim); SDPA takes transposed views of the same data,
(batch, heads, seqlen, head_dim), under sdpa_kernel(FLASH_ATTENTION / CUDNN_ATTENTION /
EFFICIENT_ATTENTION). Timing: CUDA events around batches of 10 calls, warm-up first, then the backends of a case
take turns batch by batch and each reports its median (so clock changes fall on all alike); with --cuda-graph the
calls are captured in a CUDA graph and replayed (kernel time alone: eager calls whose kernels are shorter than the
host's per-call cost read low and noisy).
FLOPs: forward 4*b*h*sq*sk*d (halved when causal); backward 2.5x forward.

Standard grid (shared README): bf16, hidden 2048 (h = 2048/d), d in {64, 128, 256},
batch*seqlen = 16k, seqlen in {512, 1k, 2k, 4k, 8k, 16k}, causal and not.

    python3 benchmarks/benchmark_flash_attn.py               # the standard grid
    python3 benchmarks/benchmark_flash_attn.py --quick       # d 64/128, seqlen 1k/4k/16k
    python3 benchmarks/benchmark_flash_attn.py --dims 128 --seqlens 2048,8192 --causal true
    python3 benchmarks/benchmark_flash_attn.py --quick --output bench.md --csv bench.csv

A backend that fails for a case (unsupported shape, not built, ...) shows '-' and the first
error of each backend is printed under the table.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import math
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass, field

import torch

try:  # ours is optional: the SDPA baselines still run without it
    import flash_attn
    from flash_attn import flash_attn_func

    FLASH_ATTN_IMPORT_ERROR = None
except Exception as e:  # pragma: no cover - depends on the build
    flash_attn = None
    flash_attn_func = None
    FLASH_ATTN_IMPORT_ERROR = f"{type(e).__name__}: {e}"

from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.functional import scaled_dot_product_attention

BACKENDS = {
    # name: (column title, SDPA backend or None for ours)
    "ours": ("ours", None),
    "ours-sm80": ("ours-sm80", None),  # ours with FLASH_ATTN_FORCE_SM80=1: the sm80 kernels on any GPU
    # ours with the sm90 forward's variant switches (csrc/flash/sm90/fwd_launch.h) set: plain or overlapped
    # consumers, one tile per CTA or persistent
    "ours-plain": ("ours-plain", None),
    "ours-overlap": ("ours-overlap", None),
    "ours-persistent": ("ours-persistent", None),
    "ours-overlap-persistent": ("ours-overlap-persistent", None),
    "ours-direct-store": ("ours-direct-store", None),  # the epilogue's direct stores instead of its TMA store
    "ours-lazy-rescale": ("ours-lazy-rescale", None),  # FLASH_ATTN_SM90_FWD_LAZY_RESCALE=1
    "ours-compact-varlen": ("ours-compact-varlen", None),  # FLASH_ATTN_SM90_FWD_COMPACT_VARLEN=1 (with --varlen)
    "ours-tall": ("ours-tall", None),  # FLASH_ATTN_SM90_FWD_TALL=1: the taller query tile (d <= 64)
    "ours-pack-gqa": ("ours-pack-gqa", None),  # FLASH_ATTN_SM90_FWD_PACK_GQA=1: GQA query heads packed into tiles
    "ours-no-pack": ("ours-no-pack", None),  # FLASH_ATTN_SM90_FWD_PACK_GQA=0
    "ours-ops": ("ours-ops", None),  # FLASH_ATTN_EAGER_DIRECT=0: torch's custom-op dispatch on every call
    # FLASH_ATTN_SM90_FWD_Q_DOUBLE_BUFFER=0: persistent CTAs load each block's Q after the last block's S GEMMs
    "ours-one-q-buffer": ("ours-one-q-buffer", None),
    # FLASH_ATTN_SM90_FWD_CROSS_TILE=0: persistent consumers' warpgroups meet at every tile's end
    "ours-no-cross-tile": ("ours-no-cross-tile", None),
    # FLASH_ATTN_SM90_FWD_EXP_TURNS=0: plain consumers' warpgroups exponentiate whenever ready, not in turns
    "ours-no-exp-turns": ("ours-no-exp-turns", None),
    "flash": ("SDPA-flash", SDPBackend.FLASH_ATTENTION),
    "cudnn": ("cuDNN", SDPBackend.CUDNN_ATTENTION),
    "efficient": ("efficient", SDPBackend.EFFICIENT_ATTENTION),
}
# Environment of the ours-* columns while they run (the binding and the sm90 launcher read these on every call).
# The four consumer / scheduler variants each set both switches (one tile per CTA unless "-persistent") and run the
# 128-row query tile (d 64's default is the taller one).
_OVERLAP = {"FLASH_ATTN_SM90_FWD_OVERLAP": "1", "FLASH_ATTN_SM90_FWD_TALL": "0"}
_PLAIN = {"FLASH_ATTN_SM90_FWD_OVERLAP": "0", "FLASH_ATTN_SM90_FWD_TALL": "0"}
_PERSISTENT, _ONE_TILE = {"FLASH_ATTN_SM90_FWD_PERSISTENT": "1"}, {"FLASH_ATTN_SM90_FWD_PERSISTENT": "0"}
BACKEND_ENV = {"ours-sm80": {"FLASH_ATTN_FORCE_SM80": "1"}, "ours-plain": {**_PLAIN, **_ONE_TILE},
               "ours-overlap": {**_OVERLAP, **_ONE_TILE},
               "ours-persistent": {**_PLAIN, **_PERSISTENT}, "ours-overlap-persistent": {**_OVERLAP, **_PERSISTENT},
               "ours-direct-store": {"FLASH_ATTN_SM90_FWD_TMA_STORE": "0"},
               "ours-lazy-rescale": {"FLASH_ATTN_SM90_FWD_LAZY_RESCALE": "1"},
               "ours-compact-varlen": {"FLASH_ATTN_SM90_FWD_COMPACT_VARLEN": "1"},
               "ours-tall": {"FLASH_ATTN_SM90_FWD_TALL": "1"},
               "ours-pack-gqa": {"FLASH_ATTN_SM90_FWD_PACK_GQA": "1"},
               "ours-no-pack": {"FLASH_ATTN_SM90_FWD_PACK_GQA": "0"},
               "ours-ops": {"FLASH_ATTN_EAGER_DIRECT": "0"},
               "ours-one-q-buffer": {"FLASH_ATTN_SM90_FWD_Q_DOUBLE_BUFFER": "0"},
               "ours-no-cross-tile": {"FLASH_ATTN_SM90_FWD_CROSS_TILE": "0"},
               "ours-no-exp-turns": {"FLASH_ATTN_SM90_FWD_EXP_TURNS": "0"}}
DIRECTIONS = {"fwd": 1.0, "bwd": 2.5, "fwd_bwd": 3.5}  # FLOPs relative to the forward
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

FULL_DIMS = (64, 128, 256)
FULL_SEQLENS = (512, 1024, 2048, 4096, 8192, 16384)
QUICK_DIMS = (64, 128)
QUICK_SEQLENS = (1024, 4096, 16384)


def visible_pairs(seqlen: int, causal: bool, window=(-1, -1)) -> float:
    """(query, key) pairs a sliding window (2.x semantics, -1 unbounded; causal forces right = 0) leaves visible,
    for seqlen_q = seqlen_k."""
    left, right = window
    if causal:
        right = 0
    i = torch.arange(seqlen, dtype=torch.int64)
    lo = (i - left).clamp(min=0) if left >= 0 else torch.zeros_like(i)
    hi = (i + right).clamp(max=seqlen - 1) if right >= 0 else torch.full_like(i, seqlen - 1)
    return float((hi - lo + 1).clamp(min=0).sum())


@dataclass
class Case:
    dim: int
    seqlen: int
    causal: bool
    batch: int
    heads: int
    window: tuple = (-1, -1)  # ours only
    heads_k: int = 0  # K/V heads (GQA / MQA); 0: heads
    lengths: tuple = ()  # varlen: ours runs these sequences, packed (batch * seqlen tokens in all); SDPA dense

    def flops(self, direction: str, backend: str = "ours") -> float:
        """Standard count (full, or half when causal); for ours with a window, the visible pairs only; for ours
        with varlen, the pairs of its sequences."""
        if backend.startswith("ours") and self.lengths:
            pairs = sum(n * n / (2 if self.causal else 1) for n in self.lengths) / self.batch
        elif backend.startswith("ours") and tuple(self.window) != (-1, -1):
            pairs = visible_pairs(self.seqlen, self.causal, self.window)
        else:
            pairs = self.seqlen * self.seqlen / (2 if self.causal else 1)
        return 4.0 * self.batch * self.heads * pairs * self.dim * DIRECTIONS[direction]


@dataclass
class Result:
    case: Case
    ms: dict = field(default_factory=dict)  # backend -> median milliseconds (None if it failed)

    def tflops(self, backend: str, direction: str) -> float | None:
        ms = self.ms.get(backend)
        if ms is None or ms <= 0:
            return None
        return self.case.flops(direction, backend) / (ms * 1e-3) / 1e12


def parse_int_list(text: str) -> list[int]:
    out = []
    for tok in text.replace(";", ",").split(","):
        tok = tok.strip().lower()
        if not tok:
            continue
        mult = 1
        if tok.endswith("k"):
            tok, mult = tok[:-1], 1024
        out.append(int(tok) * mult)
    return out


def make_forward(backend: str, q, k, v, causal: bool, ours_kwargs: dict | None = None, lengths=()):
    """A zero-argument callable running the forward of `backend`; returns out as (b, s, h, d).
    ours_kwargs (deterministic, window_size, softcap, alibi_slopes, dropout_p) apply to ours; SDPA has no such
    switches and runs plain attention. lengths: ours runs flash_attn_varlen_func on the same tokens cut into
    sequences of these lengths (out (total, h, d))."""
    if backend.startswith("ours"):
        if flash_attn_func is None:
            raise RuntimeError(f"flash_attn import failed: {FLASH_ATTN_IMPORT_ERROR}")
        kwargs = ours_kwargs or {}
        if lengths:
            cu = torch.tensor([0] + list(itertools.accumulate(lengths)), device=q.device, dtype=torch.int32)
            packed = [t.reshape(-1, t.shape[2], t.shape[3]) for t in (q, k, v)]
            return lambda: flash_attn.flash_attn_varlen_func(*packed, cu, cu, max(lengths), max(lengths),
                                                             causal=causal, **kwargs)
        return lambda: flash_attn_func(q, k, v, causal=causal, **kwargs)
    sdpa_backend = BACKENDS[backend][1]
    gqa = {"enable_gqa": True} if k.shape[2] != q.shape[2] else {}

    def run():
        # Same storage, (b, s, h, d) -> (b, h, s, d) views; the output goes back to (b, s, h, d).
        with sdpa_kernel(sdpa_backend):
            out = scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                               is_causal=causal, **gqa)
        return out.transpose(1, 2)

    return run


def make_fn(backend: str, q, k, v, dout, causal: bool, direction: str, ours_kwargs: dict | None = None,
            lengths=()):
    """A zero-argument callable running one step of `direction` for `backend`: fwd returns out, the others
    (dq, dk, dv). q, k, v require grad for bwd / fwd_bwd."""
    env = BACKEND_ENV.get(backend, {})
    with environment(env):
        forward = make_forward(backend, q, k, v, causal, ours_kwargs, lengths)
        grad_out = dout.reshape(-1, dout.shape[2], dout.shape[3]) if lengths and backend.startswith("ours") else dout
        if direction == "fwd":
            fn = forward
        elif direction == "fwd_bwd":
            fn = lambda: torch.autograd.grad(forward(), (q, k, v), grad_out)  # noqa: E731
        else:
            out = forward()  # bwd alone: one forward graph, replayed
            fn = lambda: torch.autograd.grad(out, (q, k, v), grad_out, retain_graph=True)  # noqa: E731
    if not env:
        return fn

    def fn_in_env():
        with environment(env):
            return fn()

    return fn_in_env


@contextlib.contextmanager
def environment(env: dict):
    """The variables of env set inside the block, restored after it."""
    prev = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in prev.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def time_ms(fn, warmup: int, reps: int) -> float:
    """Median milliseconds of `fn` over `reps` runs, timed with CUDA events (no sync in between)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for i in range(reps):
        starts[i].record()
        fn()
        ends[i].record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends))


class BatchTimer:
    """Times batches of `replays` back-to-back calls of `fn` (one CUDA event pair a batch, milliseconds per call).
    cuda_graph: the calls are replays of one CUDA graph capturing fn's launches, i.e. the kernels alone without
    the host's per-call cost (which bounds eager calls whose kernels are short: benchmark_call_overhead.py
    measures it)."""

    def __init__(self, fn, warmup: int, cuda_graph: bool, replays: int = 10):
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        self.graph = None
        if cuda_graph:
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                fn()
            self.graph.replay()
            torch.cuda.synchronize()
        self.call = self.graph.replay if self.graph is not None else fn
        self.replays = replays

    def sample(self) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(self.replays):
            self.call()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / self.replays


def time_interleaved(timers: dict, reps: int, warm_ms: float = 50.0, failures: dict | None = None) -> dict:
    """Median milliseconds per call of each timer. Each first runs batches for at least warm_ms, then the timers
    take turns, one batch each per round, `reps` rounds, so that clock changes during a case fall on all backends
    alike (timed one after the other, the first backend of a run read up to 20% low at 512-1k keys). A timer whose
    batch raises is dropped: its exception goes to failures[name]."""
    samples = {name: [] for name in timers}
    live = dict(timers)

    def sample(name, timer):
        try:
            return timer.sample()
        except Exception as e:  # tolerate a backend that fails while timed
            live.pop(name, None)
            if failures is not None:
                failures[name] = e
            return None

    for name, timer in timers.items():
        spent = 0.0
        while name in live and spent < warm_ms:
            ms = sample(name, timer)
            spent += 0.0 if ms is None else ms * timer.replays
    for _ in range(reps):
        for name, timer in list(live.items()):
            ms = sample(name, timer)
            if ms is not None:
                samples[name].append(ms)
    return {name: statistics.median(samples[name]) if name in live else None for name in timers}


def warm_up_gpu(seconds: float = 1.0) -> None:
    """Run matmuls for about `seconds` so clocks have ramped up before the first timed case (otherwise
    the first case reads low)."""
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(20):
            a @ a
        torch.cuda.synchronize()


def build_cases(args) -> list[Case]:
    dims = parse_int_list(args.dims) if args.dims else (QUICK_DIMS if args.quick else FULL_DIMS)
    seqlens = parse_int_list(args.seqlens) if args.seqlens else (QUICK_SEQLENS if args.quick else FULL_SEQLENS)
    causals = {"both": (False, True), "true": (True,), "false": (False,)}[args.causal]
    cases = []
    for d in dims:
        if args.hidden % d:
            raise SystemExit(f"--hidden {args.hidden} is not a multiple of head dim {d}")
        for s in seqlens:
            batch = max(1, args.tokens // s)
            heads = args.hidden // d
            if args.kv_heads and heads % args.kv_heads:
                raise SystemExit(f"--kv-heads {args.kv_heads} does not divide the {heads} heads of d {d}")
            lengths = varlen_lengths(batch * s, s) if args.varlen else ()
            for c in causals:
                cases.append(Case(dim=d, seqlen=s, causal=c, batch=batch, heads=heads, window=tuple(args.window),
                                  heads_k=args.kv_heads or heads, lengths=lengths))
    return cases


def varlen_lengths(tokens: int, mean: int) -> tuple:
    """Random sequence lengths (fixed seed) uniform in [mean / 2, 3 mean / 2], the last one cut so that they add
    up to tokens."""
    rng = random.Random(tokens * 31 + mean)
    lengths = []
    while sum(lengths) < tokens:
        lengths.append(min(rng.randint(max(1, mean // 2), max(1, 3 * mean // 2)), tokens - sum(lengths)))
    return tuple(lengths)


def alibi_slopes(heads: int) -> torch.Tensor:
    """The usual geometric ALiBi slopes 2^(-8 (i + 1) / heads), fp32 on the GPU."""
    return torch.tensor([2.0 ** (-8.0 * (i + 1) / heads) for i in range(heads)], device="cuda", dtype=torch.float32)


def ours_kwargs(case: Case, args) -> dict:
    """flash_attn_func keyword arguments of the variant under test (plain attention without options)."""
    kwargs = {"deterministic": args.deterministic, "window_size": tuple(args.window), "softcap": args.softcap,
              "dropout_p": args.dropout}
    if args.alibi:
        kwargs["alibi_slopes"] = alibi_slopes(case.heads)
    return kwargs


def run_case(case: Case, backends, args, errors: dict) -> Result:
    dtype = DTYPES[args.dtype]
    g = torch.Generator(device="cuda").manual_seed(0)
    shape = (case.batch, case.seqlen, case.heads, case.dim)
    shape_kv = (case.batch, case.seqlen, case.heads_k or case.heads, case.dim)
    grad = args.direction != "fwd"
    q, k, v = (torch.randn(sh, device="cuda", dtype=dtype, generator=g).requires_grad_(grad)
               for sh in (shape, shape_kv, shape_kv))
    dout = torch.randn(shape, device="cuda", dtype=dtype, generator=g)
    res = Result(case)
    fns, timers, failures = {}, {}, {}
    for b in backends:
        try:
            fns[b] = make_fn(b, q, k, v, dout, case.causal, args.direction, ours_kwargs(case, args), case.lengths)
            timers[b] = BatchTimer(fns[b], args.warmup, args.cuda_graph)
        except Exception as e:  # tolerate a backend that cannot run this case
            fns.pop(b, None)
            failures[b] = e
    res.ms.update(time_interleaved(timers, args.reps, failures=failures))
    del timers
    for b, e in failures.items():
        res.ms[b] = None
        fns.pop(b, None)
        lines = str(e).strip().splitlines()
        msg = f"{type(e).__name__}: {lines[0][:300]}" if lines else type(e).__name__
        errors.setdefault(b, f"d={case.dim} s={case.seqlen} causal={case.causal}: {msg}")
    if args.verify:
        ref = None
        for b, fn in fns.items():
            out = fn()
            out = (out if args.direction == "fwd" else out[0]).float().reshape(q.shape)  # out, or dq
            if ref is None:
                ref = out
            else:
                res.ms[f"{b}_maxdiff"] = (out - ref).abs().max().item()
    del fns
    del q, k, v, dout
    return res


def variant_note(args) -> str:
    """What ours runs beyond plain attention (SDPA always runs plain attention)."""
    notes = []
    if args.deterministic:
        notes.append("deterministic")
    if tuple(args.window) != (-1, -1):
        notes.append(f"ours with window_size={tuple(args.window)}")
    if args.softcap:
        notes.append(f"ours with softcap={args.softcap:g}")
    if args.alibi:
        notes.append("ours with ALiBi")
    if args.dropout:
        notes.append(f"ours with dropout_p={args.dropout:g}")
    if args.kv_heads:
        notes.append(f"{args.kv_heads} K/V heads")
    if args.varlen:
        notes.append("ours varlen: random lengths of mean seqlen, same tokens; SDPA dense")
    return f" ({', '.join(notes)})" if notes else ""


def fmt(x: float | None, digits: int = 0) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b is not None and b > 0 else None


def table_rows(results: list[Result], backends, direction: str, verify: bool):
    header = ["d", "seqlen", "batch", "heads", "causal"] + [BACKENDS[b][0] for b in backends]
    has = set(backends)
    if "ours" in has and "flash" in has:
        header.append("ours/flash")
    if "ours" in has and "cudnn" in has:
        header.append("ours/cuDNN")
    if verify:
        header += [f"maxdiff {BACKENDS[b][0]} vs {BACKENDS[backends[0]][0]}" for b in backends[1:]]
    rows = []
    for r in results:
        c = r.case
        t = {b: r.tflops(b, direction) for b in backends}
        row = [str(c.dim), str(c.seqlen), str(c.batch), str(c.heads), "yes" if c.causal else "no"]
        row += [fmt(t[b]) for b in backends]
        if "ours" in has and "flash" in has:
            row.append(fmt(ratio(t["ours"], t["flash"]), 2))
        if "ours" in has and "cudnn" in has:
            row.append(fmt(ratio(t["ours"], t["cudnn"]), 2))
        if verify:
            row += [fmt(r.ms.get(f"{b}_maxdiff"), 4) for b in backends[1:]]
        rows.append(row)
    return header, rows


def markdown(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short subset: d 64/128, seqlen 1k/4k/16k")
    ap.add_argument("--dims", help="head dims, comma-separated (default: 64,128,256)")
    ap.add_argument("--seqlens", help="seqlens, comma-separated, 'k' suffix allowed (default: 512..16k)")
    ap.add_argument("--causal", choices=("both", "true", "false"), default="both")
    ap.add_argument("--direction", choices=tuple(DIRECTIONS), default="fwd",
                    help="fwd (implemented); bwd and fwd_bwd come with the backward kernels")
    ap.add_argument("--dtype", choices=tuple(DTYPES), default="bf16")
    ap.add_argument("--hidden", type=int, default=2048, help="heads = hidden / d (default 2048)")
    ap.add_argument("--tokens", type=int, default=16384, help="batch = tokens / seqlen (default 16k)")
    ap.add_argument("--backends", default="ours,flash,cudnn,efficient",
                    help="comma-separated subset of: " + ",".join(BACKENDS))
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--reps", type=int, default=30, help="timed batches per backend and case, median reported (>= 10)")
    ap.add_argument("--deterministic", action="store_true", help="ours with deterministic=True (backward)")
    ap.add_argument("--window", type=lambda t: tuple(int(x) for x in t.split(",")), default=(-1, -1),
                    help="ours with window_size=(left, right), e.g. 512,0 (ours' FLOPs count the visible pairs only)")
    ap.add_argument("--softcap", type=float, default=0.0, help="ours with this softcap")
    ap.add_argument("--alibi", action="store_true", help="ours with ALiBi (geometric slopes per head)")
    ap.add_argument("--dropout", type=float, default=0.0, help="ours with this dropout_p")
    ap.add_argument("--kv-heads", type=int, default=0, help="K/V heads (GQA / MQA; default: as many as query heads)")
    ap.add_argument("--varlen", action="store_true",
                    help="ours through flash_attn_varlen_func on random lengths of mean seqlen (same token count); "
                         "SDPA columns stay dense")
    ap.add_argument("--cuda-graph", action="store_true",
                    help="time each backend's calls captured in a CUDA graph (kernel time without the host's per-call "
                         "cost; forward only)")
    ap.add_argument("--verify", action="store_true", help="also print max |out - first backend's out|")
    ap.add_argument("--output", help="also write the markdown table to this path")
    ap.add_argument("--csv", help="also write the results as CSV to this path")
    args = ap.parse_args(argv)

    if args.reps < 10:
        ap.error("--reps must be >= 10")
    if args.cuda_graph and args.direction != "fwd":
        ap.error("--cuda-graph times the forward only (--direction fwd)")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        ap.error(f"unknown backend(s) {unknown}; choose from {list(BACKENDS)}")
    if not torch.cuda.is_available():
        print("benchmark_flash_attn.py: no CUDA device available", file=sys.stderr)
        return 2

    cases = build_cases(args)
    ver = getattr(flash_attn, "__version__", "not importable") if flash_attn is not None else "not importable"
    print(f"# device: {torch.cuda.get_device_name()}, torch {torch.__version__}, flash_attn {ver}, "
          f"{args.dtype}, {args.direction}{variant_note(args)}, hidden {args.hidden}, tokens {args.tokens}, "
          f"median of {args.reps} interleaved batches of 10 (warm-up {args.warmup} calls + 50 ms)"
          f"{', CUDA graphs' if args.cuda_graph else ''}; TFLOP/s",
          flush=True)
    if FLASH_ATTN_IMPORT_ERROR:
        print(f"# flash_attn import failed: {FLASH_ATTN_IMPORT_ERROR}", flush=True)

    warm_up_gpu()
    errors: dict = {}
    results = []
    for case in cases:
        r = run_case(case, backends, args, errors)
        results.append(r)
        t = "  ".join(f"{BACKENDS[b][0]}={fmt(r.tflops(b, args.direction))}" for b in backends)
        print(f"d={case.dim:<3} s={case.seqlen:<6} b={case.batch:<3} h={case.heads:<3} "
              f"causal={int(case.causal)}  {t}", file=sys.stderr, flush=True)

    header, rows = table_rows(results, backends, args.direction, args.verify)
    table = markdown(header, rows)
    print()
    print(table)
    if errors:
        print()
        for b, msg in errors.items():
            print(f"- {BACKENDS[b][0]} failed (first case): {msg}")
    if args.output:
        with open(args.output, "w") as f:
            f.write(f"{args.dtype} {args.direction}{variant_note(args)}, TFLOP/s on {torch.cuda.get_device_name()} "
                    f"(torch {torch.__version__}, flash_attn {ver})\n\n{table}\n")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["direction", "dtype", "d", "seqlen", "batch", "heads", "causal"]
                       + [f"{b}_ms" for b in backends] + [f"{b}_tflops" for b in backends])
            for r in results:
                c = r.case
                w.writerow([args.direction, args.dtype, c.dim, c.seqlen, c.batch, c.heads, int(c.causal)]
                           + [fmt(r.ms.get(b), 4) for b in backends]
                           + [fmt(r.tflops(b, args.direction), 1) for b in backends])
    return 0


if __name__ == "__main__":
    sys.exit(main())
