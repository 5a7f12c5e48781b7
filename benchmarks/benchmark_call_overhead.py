#!/usr/bin/env python3
"""Host time per call: what a call costs the CPU before its kernels run, beside SDPA.

Tiny shapes (the kernels take a few microseconds), so the host is the bound: each row times `--calls` calls in a
row with time.perf_counter (no synchronisation in between), median of `--reps` repetitions, in microseconds per
call. flash_attn's rows run by default (plain eager calls skip the ops' dispatch) and with FLASH_ATTN_EAGER_DIRECT=0
(every call through torch's custom ops), forward alone under torch.no_grad and forward + backward.

    python3 benchmarks/benchmark_call_overhead.py
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from flash_attn import flash_attn_func, flash_attn_varlen_func, flash_attn_with_kvcache

DIRECT_ENV = "FLASH_ATTN_EAGER_DIRECT"


def host_us(fn, calls: int, reps: int) -> float:
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls * 1e6)
        torch.cuda.synchronize()
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmark_call_overhead.py: no CUDA device available", file=sys.stderr)
        return 2

    b, s, h, d = 1, 128, 8, 128
    q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    dout = torch.randn_like(q)
    cu = torch.tensor([0, s], dtype=torch.int32, device="cuda")
    qv, kv, vv, doutv = (t.detach().reshape(s, h, d) for t in (q, k, v, dout))
    qv, kv, vv = (t.clone().requires_grad_() for t in (qv, kv, vv))
    k_cache, v_cache = (torch.randn(b, 1024, h, d, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    q1 = torch.randn(b, 1, h, d, device="cuda", dtype=torch.bfloat16)
    seqlens = torch.full((b,), 1000, dtype=torch.int32, device="cuda")

    def fwd_bwd(fn, inputs, grad):
        return lambda: torch.autograd.grad(fn(), inputs, grad)

    def no_grad(fn):
        def run():
            with torch.no_grad():
                return fn()
        return run

    dense = lambda: flash_attn_func(q, k, v, causal=True)  # noqa: E731
    varlen = lambda: flash_attn_varlen_func(qv, kv, vv, cu, cu, s, s, causal=True)  # noqa: E731
    decode = lambda: flash_attn_with_kvcache(q1, k_cache, v_cache, cache_seqlens=seqlens, causal=True)  # noqa: E731
    qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))
    sdpa = lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=True)  # noqa: E731
    rows = [
        ("flash_attn_func, forward (no_grad)", no_grad(dense), True),
        ("flash_attn_func, forward + backward", fwd_bwd(dense, (q, k, v), dout), True),
        ("flash_attn_varlen_func, forward (no_grad)", no_grad(varlen), True),
        ("flash_attn_varlen_func, forward + backward", fwd_bwd(varlen, (qv, kv, vv), doutv), True),
        ("flash_attn_with_kvcache, decode step", decode, False),
    ]
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}; host microseconds per call "
          f"(b {b}, s {s}, h {h}, d {d}, bf16, causal)\n")
    print(f"| call | ours | ours, {DIRECT_ENV}=0 | SDPA (flash / cuDNN) |")
    print("|---|---|---|---|")
    for name, fn, has_direct in rows:
        os.environ.pop(DIRECT_ENV, None)
        default = host_us(fn, args.calls, args.reps)
        through_ops = "-"
        if has_direct:
            os.environ[DIRECT_ENV] = "0"
            through_ops = f"{host_us(fn, args.calls, args.reps):.1f}"
            os.environ.pop(DIRECT_ENV, None)
        sdpa_cols = "-"
        if "forward (no_grad)" in name and name.startswith("flash_attn_func"):
            cols = []
            for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION):
                with sdpa_kernel(backend):
                    cols.append(f"{host_us(no_grad(sdpa), args.calls, args.reps):.1f}")
            sdpa_cols = " / ".join(cols)
        print(f"| {name} | {default:.1f} | {through_ops} | {sdpa_cols} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
