"""One forward call for Nsight Compute, ours (the sm90 kernel on Hopper) and optionally cuDNN's on the same inputs:

    python3 tools/ncu_fwd.py [d] [seqlen] [causal 0/1] [cudnn 0/1]
    ncu --kernel-name regex:"fwd_kernel|cudnn|flash" --launch-skip 1 --launch-count 2 \
        --section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats \
        python3 tools/ncu_fwd.py 128 8192 1 1

Each forward runs twice (the first call, skipped above, pays the one-time set-up). The sm90 variant switches
(FLASH_ATTN_SM90_FWD_OVERLAP / _PERSISTENT) and FLASH_ATTN_FORCE_SM80 apply as usual.
"""
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.functional import scaled_dot_product_attention

from flash_attn import flash_attn_func

args = [int(a) for a in sys.argv[1:]] + [None] * 4
d = args[0] or 128
s = args[1] or 8192
causal = bool(args[2])
with_cudnn = bool(args[3])
b, h = max(1, 16384 // s), 2048 // d
q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
for _ in range(2):
    flash_attn_func(q, k, v, causal=causal)
if with_cudnn:
    for _ in range(2):
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal)
torch.cuda.synchronize()
