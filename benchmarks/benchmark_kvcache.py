#!/usr/bin/env python3
"""Benchmark flash_attn_with_kvcache: decode bandwidth and prefill through the cache.

Decode (seqlen_q = 1, one new token appended per step): batch 1/8/64, cache 8k/32k/128k, 32 query heads and 8 KV
heads, d 128, bf16; contiguous caches and paged ones (pages of 256 and 16, shuffled). Each step is captured in a
CUDA graph and replayed (no launch gaps, no host checks), timed with CUDA events (median). Reported: bandwidth =
bytes of K and V read per second, beside a device-to-device copy measured in the same run ((read + written)
bytes per second) and, for contiguous caches, SDPA's flash and cuDNN backends on the same data (enable_gqa).

Short queries (--short-queries 16,32: speculative decoding, chunked prefill): seqlen_q queries per sequence over a
full cache, GQA packed into the sm90 forward's tiles (FLASH_ATTN_SM90_FWD_PACK_GQA=1) against one tile row per
query head (=0).

Prefill: seqlen_q = 2k appended into an empty cache of 2k, causal, against flash_attn_func on the same shapes; and
2k queries over a full 8k cache, paged (pages of 256, shuffled) against contiguous (issue 18's paged-prefill bar).

    python3 benchmarks/benchmark_kvcache.py [--batches 1,8,64] [--caches 8k,32k,128k] [--output table.md]
"""

from __future__ import annotations

import argparse
import os

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.functional import scaled_dot_product_attention

from benchmark_flash_attn import time_ms as _time_ms  # this folder: CUDA events, warm-up, median
from flash_attn import flash_attn_func, flash_attn_with_kvcache

HEADS, KV_HEADS, HEAD_DIM, DTYPE = 32, 8, 128, torch.bfloat16
MAX_BYTES = 24 << 30  # skip cases whose caches would not fit comfortably


def parse_sizes(text: str):
    return [int(x[:-1]) * 1024 if x.endswith("k") else int(x) for x in text.split(",")]


def time_ms(fn) -> float:
    return _time_ms(fn, warmup=5, reps=50)


def graphed(fn):
    """fn captured in a CUDA graph (after one eager warm-up call); returns the replay."""
    fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def copy_bandwidth(nbytes: int) -> float:
    """GB/s of a device-to-device copy of nbytes (read + written)."""
    src = torch.empty(nbytes // 2, dtype=torch.bfloat16, device="cuda")
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src))
    return 2 * nbytes / (ms * 1e-3) / 1e9


def decode_case(batch: int, cache: int, page: int | None):
    """(ours ms, SDPA {backend: ms}) for one decode step at full cache (cache - 1 cached tokens + 1 new)."""
    q = torch.randn(batch, 1, HEADS, HEAD_DIM, device="cuda", dtype=DTYPE)
    k_new = torch.randn(batch, 1, KV_HEADS, HEAD_DIM, device="cuda", dtype=DTYPE)
    v_new = torch.randn_like(k_new)
    seqlens = torch.full((batch,), cache - 1, dtype=torch.int32, device="cuda")
    if page is None:
        k_cache = torch.randn(batch, cache, KV_HEADS, HEAD_DIM, device="cuda", dtype=DTYPE)
        v_cache = torch.randn_like(k_cache)
        table = None
    else:
        pages = batch * cache // page
        k_cache = torch.randn(pages, page, KV_HEADS, HEAD_DIM, device="cuda", dtype=DTYPE)
        v_cache = torch.randn_like(k_cache)
        table = torch.randperm(pages, device="cuda").to(torch.int32).reshape(batch, cache // page)

    def step():
        flash_attn_with_kvcache(q, k_cache, v_cache, k_new, v_new, cache_seqlens=seqlens, block_table=table,
                                causal=True)

    ours = time_ms(graphed(step))
    sdpa = {}
    if page is None:
        qt, kt, vt = q.transpose(1, 2), k_cache.transpose(1, 2), v_cache.transpose(1, 2)
        for name, backend in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
            try:
                with sdpa_kernel(backend):
                    fn = lambda: scaled_dot_product_attention(qt, kt, vt, enable_gqa=True)  # noqa: E731
                    sdpa[name] = time_ms(fn)
            except Exception:  # backend does not take this shape (e.g. GQA)
                sdpa[name] = None
    return ours, sdpa


def prefill_case(batch: int, seqlen: int):
    """(kvcache ms, flash_attn_func ms): seqlen tokens into an empty cache of seqlen, causal."""
    q = torch.randn(batch, seqlen, HEADS, HEAD_DIM, device="cuda", dtype=DTYPE)
    k = torch.randn(batch, seqlen, KV_HEADS, HEAD_DIM, device="cuda", dtype=DTYPE)
    v = torch.randn_like(k)
    k_cache, v_cache = torch.empty_like(k), torch.empty_like(v)
    seqlens = torch.zeros(batch, dtype=torch.int32, device="cuda")
    cache = time_ms(graphed(lambda: flash_attn_with_kvcache(q, k_cache, v_cache, k, v, cache_seqlens=seqlens,
                                                             causal=True)))
    plain = time_ms(lambda: flash_attn_func(q, k, v, causal=True))
    return cache, plain


def paged_prefill_case(batch: int, seqlen_q: int, cache: int, page: int):
    """(contiguous ms, paged ms): seqlen_q queries attending, causally (bottom-right), to a full cache of `cache`
    tokens, the same keys held contiguously and in shuffled pages of `page` slots."""
    q = torch.randn(batch, seqlen_q, HEADS, HEAD_DIM, device="cuda", dtype=DTYPE)
    k_cache = torch.randn(batch, cache, KV_HEADS, HEAD_DIM, device="cuda", dtype=DTYPE)
    v_cache = torch.randn_like(k_cache)
    seqlens = torch.full((batch,), cache, dtype=torch.int32, device="cuda")
    pages = batch * cache // page
    table = torch.randperm(pages, device="cuda").to(torch.int32).reshape(batch, cache // page)
    k_pages = torch.empty(pages, page, KV_HEADS, HEAD_DIM, device="cuda", dtype=DTYPE)
    v_pages = torch.empty_like(k_pages)
    k_pages[table.flatten().long()] = k_cache.reshape(pages, page, KV_HEADS, HEAD_DIM)
    v_pages[table.flatten().long()] = v_cache.reshape(pages, page, KV_HEADS, HEAD_DIM)
    contiguous = time_ms(graphed(lambda: flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=seqlens,
                                                                  causal=True)))
    paged = time_ms(graphed(lambda: flash_attn_with_kvcache(q, k_pages, v_pages, cache_seqlens=seqlens,
                                                             block_table=table, causal=True)))
    return contiguous, paged


PACK_ENV = "FLASH_ATTN_SM90_FWD_PACK_GQA"


def short_query_case(batch: int, seqlen_q: int, cache: int):
    """{pack switch: ms}: seqlen_q queries attending causally (bottom-right) to a full contiguous cache of `cache`
    tokens, with the sm90 forward's GQA packing on and off."""
    q = torch.randn(batch, seqlen_q, HEADS, HEAD_DIM, device="cuda", dtype=DTYPE)
    k_cache = torch.randn(batch, cache, KV_HEADS, HEAD_DIM, device="cuda", dtype=DTYPE)
    v_cache = torch.randn_like(k_cache)
    seqlens = torch.full((batch,), cache, dtype=torch.int32, device="cuda")
    times = {}
    saved = os.environ.get(PACK_ENV)
    try:
        for switch in ("1", "0"):
            os.environ[PACK_ENV] = switch  # read by the launcher on every call, so set before each timed call
            times[switch] = time_ms(lambda: flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=seqlens,
                                                                     causal=True))
    finally:
        if saved is None:
            os.environ.pop(PACK_ENV, None)
        else:
            os.environ[PACK_ENV] = saved
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--caches", default="8k,32k,128k")
    ap.add_argument("--pages", default="none,256,16", help="page sizes; 'none' = contiguous caches")
    ap.add_argument("--prefill-pages", default="256",
                    help="page sizes of the paged-prefill table (2k queries over an 8k cache); '' to skip")
    ap.add_argument("--short-queries", default="",
                    help="seqlen_q values of the short-query table (GQA packing on / off, batch 8, 8k cache; above 16, "
                         "below which the split-KV kernel serves the call); '' to skip (default)")
    ap.add_argument("--output", help="also write the tables (markdown) here")
    args = ap.parse_args()
    gpu = torch.cuda.get_device_name()
    lines = [f"Decode, bf16, {HEADS} query / {KV_HEADS} KV heads, d {HEAD_DIM}, on {gpu} (torch {torch.__version__}):"
             " GB/s of K/V read", ""]
    copy_gbs = copy_bandwidth(1 << 30)
    lines.append(f"device-to-device copy (1 GiB, read + written): {copy_gbs:.0f} GB/s")
    lines += ["", "| batch | cache | layout | ours ms | ours GB/s | vs copy | SDPA-flash GB/s | cuDNN GB/s |",
              "|---|---|---|---|---|---|---|---|"]
    for batch in parse_sizes(args.batches):
        for cache in parse_sizes(args.caches):
            nbytes = 2 * batch * cache * KV_HEADS * HEAD_DIM * 2
            if nbytes > MAX_BYTES:
                continue
            for layout in args.pages.split(","):
                page = None if layout == "none" else int(layout)
                ours, sdpa = decode_case(batch, cache, page)
                gbs = nbytes / (ours * 1e-3) / 1e9
                base = {k: ("-" if v is None else f"{nbytes / (v * 1e-3) / 1e9:.0f}") for k, v in sdpa.items()}
                name = "contiguous" if page is None else f"paged {page}"
                lines.append(f"| {batch} | {cache // 1024}k | {name} | {ours:.3f} | {gbs:.0f} | {gbs / copy_gbs:.2f} | "
                             f"{base.get('flash', '')} | {base.get('cudnn', '')} |")
                print(lines[-1], flush=True)
                torch.cuda.empty_cache()
    lines += ["", "Prefill (2k tokens into an empty cache, causal) against flash_attn_func on the same shapes:", "",
              "| batch | seqlen | kvcache ms | flash_attn_func ms | ratio |", "|---|---|---|---|---|"]
    for batch in (1, 4):
        cache_ms, plain_ms = prefill_case(batch, 2048)
        lines.append(f"| {batch} | 2048 | {cache_ms:.3f} | {plain_ms:.3f} | {plain_ms / cache_ms:.2f} |")
    if args.prefill_pages:
        lines += ["", "Paged prefill (2k queries over a full 8k cache, causal): paged against the same keys held "
                  "contiguously:", "", "| batch | page | contiguous ms | paged ms | contiguous / paged |",
                  "|---|---|---|---|---|"]
        for page in parse_sizes(args.prefill_pages):
            for batch in (1, 4):
                contiguous_ms, paged_ms = paged_prefill_case(batch, 2048, 8192, page)
                lines.append(f"| {batch} | {page} | {contiguous_ms:.3f} | {paged_ms:.3f} | "
                             f"{contiguous_ms / paged_ms:.2f} |")
                print(lines[-1], flush=True)
    if args.short_queries:
        lines += ["", f"Short queries over a full 8k cache (batch 8, causal), sm90 GQA packing on / off (TFLOP/s):", "",
                  "| seqlen_q | packed ms | plain ms | packed TFLOP/s | plain TFLOP/s | speed-up |",
                  "|---|---|---|---|---|---|"]
        for seqlen_q in parse_sizes(args.short_queries):
            times = short_query_case(8, seqlen_q, 8192)
            flops = 4 * 8 * HEADS * seqlen_q * 8192 * HEAD_DIM  # every query sees (nearly) the whole cache
            tf = {k: flops / (v * 1e-3) / 1e12 for k, v in times.items()}
            lines.append(f"| {seqlen_q} | {times['1']:.3f} | {times['0']:.3f} | {tf['1']:.0f} | {tf['0']:.0f} | "
                         f"{times['0'] / times['1']:.2f} |")
            print(lines[-1], flush=True)
    text = "\n".join(lines)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
