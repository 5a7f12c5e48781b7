"""Dropped fraction of flash_attn's dropout over many seeds, per shape (dense and varlen), with 2.x's estimator:
S_dmask < 0 over the valid (query, key) pairs. Prints, per shape, the mean over seeds, its standard error, the
expected 1 - (floor((1 - p) * 255) + 1) / 256, the binomial sigma of one call, the worst call's z-score, and the
fraction of calls outside 2.x's tolerance (|fraction - p| <= 0.01). A biased mapping shows as a mean off by many
standard errors; reused random bytes as a spread (std of the calls) above the binomial sigma.

    python3 tools/dropout_stats.py [--seeds 200] [--p 0.17]
"""

import argparse
import math

import torch

from flash_attn import flash_attn_func, flash_attn_varlen_func


def dropped_fraction_dense(b, sq, sk, h, d, p, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(b, sq, h, d, device="cuda", generator=g, dtype=torch.bfloat16)
    k = torch.randn(b, sk, h, d, device="cuda", generator=g, dtype=torch.bfloat16)
    v = torch.randn(b, sk, h, d, device="cuda", generator=g, dtype=torch.bfloat16)
    torch.manual_seed(seed)
    _, _, s = flash_attn_func(q, k, v, dropout_p=p, return_attn_probs=True)
    return (s[:, :, :sq, :sk] < 0).float().mean().item(), b * h * sq * sk


def dropped_fraction_varlen(b, sq, sk, h, d, p, seed):
    gen = torch.Generator().manual_seed(seed)
    lq = [max(1, sq - int(x)) for x in torch.randint(0, 21, (b,), generator=gen)]
    lk = [max(1, sk - int(x)) for x in torch.randint(0, 21, (b,), generator=gen)]
    cu_q = torch.tensor([0] + list(torch.tensor(lq).cumsum(0)), dtype=torch.int32, device="cuda")
    cu_k = torch.tensor([0] + list(torch.tensor(lk).cumsum(0)), dtype=torch.int32, device="cuda")
    g = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(sum(lq), h, d, device="cuda", generator=g, dtype=torch.bfloat16)
    k = torch.randn(sum(lk), h, d, device="cuda", generator=g, dtype=torch.bfloat16)
    v = torch.randn(sum(lk), h, d, device="cuda", generator=g, dtype=torch.bfloat16)
    torch.manual_seed(seed)
    _, _, s = flash_attn_varlen_func(q, k, v, cu_q, cu_k, max(lq), max(lk), dropout_p=p, return_attn_probs=True)
    dropped = n = 0
    for i in range(b):
        block = s[i, :, :lq[i], :lk[i]]
        dropped += (block < 0).sum().item()
        n += block.numel()
    return dropped / n, n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--p", type=float, default=0.17)
    ap.add_argument("--d", type=int, default=128)
    args = ap.parse_args()
    p = args.p
    expected = 1 - (math.floor((1 - p) * 255) + 1) / 256
    print(f"p = {p}: expected dropped fraction {expected:.5f} (8-bit threshold)")
    print("| layout | sq | sk | b x h | mean | std err | call sigma | std of calls | worst z | outside 2.x tol |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for layout, fn in (("dense", dropped_fraction_dense), ("varlen", dropped_fraction_varlen)):
        for sq, sk in ((1, 147), (17, 239), (113, 1023), (1, 1023), (113, 147), (17, 147)):
            b, h = 9, 6
            fracs, ns = zip(*(fn(b, sq, sk, h, args.d, p, seed) for seed in range(args.seeds)))
            t = torch.tensor(fracs, dtype=torch.float64)
            n = sum(ns) / len(ns)
            sigma = math.sqrt(expected * (1 - expected) / n)
            mean, std = t.mean().item(), t.std().item()
            worst = ((t - expected).abs().max() / sigma).item()
            outside = ((t - p).abs() > 0.01).double().mean().item()
            print(f"| {layout} | {sq} | {sk} | {b} x {h} | {mean:.5f} | {std / math.sqrt(len(t)):.5f} | {sigma:.5f} | "
                  f"{std:.5f} | {worst:.2f} | {outside:.3f} |")


if __name__ == "__main__":
    main()
