"""One backward step for Nsight Compute: python3 tools/ncu_bwd.py [d] [seqlen] [causal 0/1] [deterministic 0/1]."""
import sys

import torch

from flash_attn import flash_attn_func

d = int(sys.argv[1]) if len(sys.argv) > 1 else 128
s = int(sys.argv[2]) if len(sys.argv) > 2 else 8192
causal = bool(int(sys.argv[3])) if len(sys.argv) > 3 else False
deterministic = bool(int(sys.argv[4])) if len(sys.argv) > 4 else False
b, h = max(1, 16384 // s), 2048 // d
q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
out = flash_attn_func(q, k, v, causal=causal, deterministic=deterministic)
dout = torch.randn_like(out)
for _ in range(2):
    torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)
torch.cuda.synchronize()
