"""One backward step for Nsight Compute, ours and optionally SDPA-flash's on the same inputs:

    python3 tools/ncu_bwd.py [d] [seqlen] [causal 0/1] [deterministic 0/1] [sdpa 0/1]
    ncu --kernel-name regex:"bwd_kernel|flash_bwd_dq_dk_dv" --launch-count 2 --section SpeedOfLight \
        python3 tools/ncu_bwd.py 64 2048 0 0 1
"""
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.functional import scaled_dot_product_attention

from flash_attn import flash_attn_func

args = [int(a) for a in sys.argv[1:]] + [None] * 5
d = args[0] or 128
s = args[1] or 8192
causal = bool(args[2])
deterministic = bool(args[3])
with_sdpa = bool(args[4])
b, h = max(1, 16384 // s), 2048 // d
q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
out = flash_attn_func(q, k, v, causal=causal, deterministic=deterministic)
dout = torch.randn_like(out)
torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)
if with_sdpa:
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        ref = scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal)
    torch.autograd.grad(ref, (q, k, v), dout.transpose(1, 2), retain_graph=True)
torch.cuda.synchronize()
