"""torch.library custom ops wrapping the CUDA extension, with fake (meta) implementations.

Two sets, both seeing head dims already padded to a multiple of 8:

* flash-attn 2.8's private ops ``flash_attn::_flash_attn_forward``, ``_flash_attn_varlen_forward``,
  ``_flash_attn_backward``, ``_flash_attn_varlen_backward``: entry points other libraries call directly, so their
  body validates the call (flash_attn._checks, once) and then launches;
* the ops the public functions call once they have validated: ``flash_attn::fwd``, ``varlen_fwd``, ``bwd``,
  ``varlen_bwd`` (the private ops' schemas and fakes), ``fwd_kvcache``, ``apply_rotary`` and ``apply_rotary_``.
  Their bodies only launch; the C++ binding keeps its structural checks as the last guard.

torch.compile sees every op as an opaque call: the fakes give the outputs' shapes, the bodies run the kernels.
Importing this module never requires the extension.
"""

import functools
import inspect
import os
from typing import Optional, Tuple

import torch

from flash_attn import _checks

try:
    import flash_attn_2_cuda as flash_attn_gpu  # the compiled extension (setup.py)

    _EXT_IMPORT_ERROR: Optional[BaseException] = None
except ImportError as e:  # source tree / not built: the package must still import
    flash_attn_gpu = None
    _EXT_IMPORT_ERROR = e

# Set FLASH_ATTN_DEBUG_POISON=1 to hand the kernel a NaN-filled output buffer (tests use it to catch
# elements the kernel forgets to write).
POISON_ENV = "FLASH_ATTN_DEBUG_POISON"


def _require_extension():
    if flash_attn_gpu is None:
        raise RuntimeError(
            "flash_attn CUDA extension (flash_attn_2_cuda) is not built or failed to import: "
            f"{_EXT_IMPORT_ERROR}. Install flash_attn from source (pip install --no-build-isolation .)"
        )
    return flash_attn_gpu


def _poisoned_out(q: torch.Tensor) -> Optional[torch.Tensor]:
    if os.environ.get(POISON_ENV, "0") not in ("", "0"):
        return torch.full_like(q, float("nan"))
    return None


def _round128(x):
    return (x + 127) // 128 * 128


def _s_dmask_shape(batch, nheads, seqlen_q, seqlen_k, dropout_p, return_softmax):
    """S_dmask's shape as the binding makes it: (b, h, round128(sq), round128(sk)) for return_softmax with
    dropout, else the empty (0,)."""
    if return_softmax and dropout_p > 0:
        return (batch, nheads, _round128(seqlen_q), _round128(seqlen_k))
    return (0,)


def _out_like(q):
    """A fake's out, laid out as the binding allocates it: empty_like of the q it gets (vector_aligned(q))."""
    return torch.empty_like(q if _checks.is_vector_aligned(q) else q.contiguous())


def _empty_result(q, lse_shape, s_dmask_shape=(0,)):
    """Outputs for calls with no key (or no query) anywhere: out 0, lse +inf; no launch needed."""
    out = torch.zeros_like(q)
    lse = torch.full(lse_shape, float("inf"), dtype=torch.float32, device=q.device)
    s_dmask = torch.zeros(s_dmask_shape, dtype=q.dtype, device=q.device)
    return out, lse, s_dmask, torch.zeros(2, dtype=torch.int64, device=q.device)


def _poison_grads(*grads):
    if os.environ.get(POISON_ENV, "0") not in ("", "0"):
        for g in grads:
            if g is not None:
                g.fill_(float("nan"))


def _zero_grads(*grads):
    for g in grads:
        if g is not None:
            g.zero_()


# ----------------------------------------------------------------------------------------------------------
# Launchers: validated arguments in, the extension's results out, after checking that the kernels for q's dtype,
# head dim and GPU were built. Tests swap them for references (conftest).
# ----------------------------------------------------------------------------------------------------------


def _launch_fwd(q, k, v, dropout_p, softmax_scale, causal, window_size_left, window_size_right, softcap,
                alibi_slopes, return_softmax):
    _checks.check_build(q.dtype, q.shape[-1], q.device)
    b, sq, h, _ = q.shape
    if sq == 0 or k.shape[1] == 0:
        return _empty_result(q, (b, h, sq), _s_dmask_shape(b, h, sq, k.shape[1], dropout_p, return_softmax))
    ext = _require_extension()
    q, k, v = (_checks.vector_aligned(x) for x in (q, k, v))  # the kernels move 16 bytes at a time
    out, lse, s_dmask, rng_state = ext.fwd(
        q, k, v, _poisoned_out(q), alibi_slopes, dropout_p, softmax_scale, causal,
        window_size_left, window_size_right, softcap, return_softmax, None,
    )
    return out, lse, s_dmask, rng_state


def _launch_varlen_fwd(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p,
                       softmax_scale, causal, window_size_left, window_size_right, softcap, alibi_slopes,
                       return_softmax, block_table, leftpad_k, seqused_k, zero_tensors, num_splits=0):
    _checks.check_build(q.dtype, q.shape[-1], q.device)
    total_q, h, _ = q.shape
    # max_seqlen == 0 still launches: the lengths come from cu_seqlens, which a stale bound may understate.
    if total_q == 0 or k.shape[0] == 0:
        batch = cu_seqlens_q.shape[0] - 1
        s_dmask_shape = _s_dmask_shape(batch, h, max_seqlen_q, max_seqlen_k, dropout_p, return_softmax)
        return _empty_result(q, (h, total_q), s_dmask_shape)
    ext = _require_extension()
    q, k, v = (_checks.vector_aligned(x) for x in (q, k, v))  # the kernels move 16 bytes at a time
    out, lse, s_dmask, rng_state = ext.varlen_fwd(
        q, k, v, _poisoned_out(q), cu_seqlens_q, cu_seqlens_k, seqused_k, leftpad_k, block_table,
        alibi_slopes, max_seqlen_q, max_seqlen_k, dropout_p, softmax_scale, zero_tensors, causal,
        window_size_left, window_size_right, softcap, return_softmax, None, num_splits,
    )
    return out, lse, s_dmask, rng_state


def _launch_bwd(dout, q, k, v, out, softmax_lse, dq, dk, dv, dropout_p, softmax_scale, causal, window_size_left,
                window_size_right, softcap, alibi_slopes, deterministic, rng_state):
    _checks.check_build(q.dtype, q.shape[-1], q.device)
    b, sq, h, _ = q.shape
    if sq == 0 or k.shape[1] == 0:  # nothing attends: zero gradients, no launch
        _zero_grads(dq, dk, dv)
        return torch.zeros((b, h, _round128(sq)), dtype=torch.float32, device=q.device)
    _poison_grads(dq, dk, dv)
    ext = _require_extension()
    dout, q, k, v, out = (_checks.vector_aligned(x) for x in (dout, q, k, v, out))  # 16-byte moves
    _, _, _, softmax_d = ext.bwd(
        dout, q, k, v, out, softmax_lse, dq, dk, dv, alibi_slopes, dropout_p, softmax_scale, causal,
        window_size_left, window_size_right, softcap, deterministic, None, rng_state,
    )
    return softmax_d


def _launch_varlen_bwd(dout, q, k, v, out, softmax_lse, dq, dk, dv, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                       max_seqlen_k, dropout_p, softmax_scale, causal, window_size_left, window_size_right, softcap,
                       alibi_slopes, deterministic, rng_state, zero_tensors):
    _checks.check_build(q.dtype, q.shape[-1], q.device)
    total_q, h, _ = q.shape
    if total_q == 0 or k.shape[0] == 0:
        _zero_grads(dq, dk, dv)
        return torch.zeros((h, total_q + 128 * (cu_seqlens_q.shape[0] - 1)), dtype=torch.float32, device=q.device)
    _poison_grads(dq, dk, dv)
    ext = _require_extension()
    dout, q, k, v, out = (_checks.vector_aligned(x) for x in (dout, q, k, v, out))  # 16-byte moves
    _, _, _, softmax_d = ext.varlen_bwd(
        dout, q, k, v, out, softmax_lse, dq, dk, dv, cu_seqlens_q, cu_seqlens_k, alibi_slopes, max_seqlen_q,
        max_seqlen_k, dropout_p, softmax_scale, zero_tensors, causal, window_size_left, window_size_right, softcap,
        deterministic, None, rng_state,
    )
    return softmax_d


def _launch_fwd_kvcache(q, k_cache, v_cache, k, v, cache_seqlens, rotary_cos, rotary_sin, cache_batch_idx,
                        cache_leftpad, block_table, alibi_slopes, softmax_scale, causal, window_size_left,
                        window_size_right, softcap, rotary_interleaved, num_splits):
    _checks.check_build(q.dtype, q.shape[-1], q.device)
    ext = _require_extension()
    q, k, v = (None if x is None else _checks.vector_aligned(x) for x in (q, k, v))  # the caches are never copied
    rotary_cos, rotary_sin = (None if x is None else x.contiguous() for x in (rotary_cos, rotary_sin))
    out, lse = ext.fwd_kvcache(
        q, k_cache, v_cache, k, v, cache_seqlens, rotary_cos, rotary_sin, cache_batch_idx, cache_leftpad,
        block_table, alibi_slopes, _poisoned_out(q), softmax_scale, causal, window_size_left, window_size_right,
        softcap, rotary_interleaved, num_splits,
    )
    return out, lse


def _launch_rotary(x, cos, sin, out, seqlen_offsets, seqlen_offset, cu_seqlens, max_seqlen, interleaved, conjugate):
    """out <- x rotated (out may be x, contiguous in its last dim)."""
    cos, sin = (t if t.stride(-1) == 1 else t.contiguous() for t in (cos, sin))
    if sin.stride(0) != cos.stride(0):  # the kernel reads both tables with one row stride
        cos, sin = cos.contiguous(), sin.contiguous()
    if seqlen_offsets is not None:
        seqlen_offsets = seqlen_offsets.contiguous()
    _require_extension().apply_rotary(x, cos, sin, out, seqlen_offsets, seqlen_offset, cu_seqlens, max_seqlen,
                                      interleaved, conjugate)


# ----------------------------------------------------------------------------------------------------------
# flash-attn 2.8's private ops (API.md §8): validate, then launch. No device_types restriction: a CPU call reaches
# the body and gets a clear device error.
# ----------------------------------------------------------------------------------------------------------


@torch.library.custom_op("flash_attn::_flash_attn_forward", mutates_args=())
def _flash_attn_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    dropout_p: float,
    softmax_scale: float,
    causal: bool,
    window_size_left: int,
    window_size_right: int,
    softcap: float,
    alibi_slopes: Optional[torch.Tensor],
    return_softmax: bool,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    cfg = _checks.validate_fwd_args(q, k, v, dropout_p, softmax_scale, causal, (window_size_left, window_size_right),
                                    softcap, alibi_slopes, require_padded=True)
    return _launch_fwd(q, k, v, dropout_p, cfg.softmax_scale, cfg.causal, cfg.window_size_left,
                       cfg.window_size_right, softcap, alibi_slopes, return_softmax)


@_flash_attn_forward.register_fake
def _flash_attn_forward_fake(q, k, v, dropout_p, softmax_scale, causal, window_size_left, window_size_right,
                             softcap, alibi_slopes, return_softmax):
    b, sq, h, _ = q.shape
    out = _out_like(q)
    lse = q.new_empty((b, h, sq), dtype=torch.float32)
    s_dmask = q.new_empty(_s_dmask_shape(b, h, sq, k.shape[1], dropout_p, return_softmax))
    rng_state = q.new_empty((2,), dtype=torch.int64)
    return out, lse, s_dmask, rng_state


@torch.library.custom_op("flash_attn::_flash_attn_varlen_forward", mutates_args=())
def _flash_attn_varlen_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor,
    max_seqlen_q: int,
    max_seqlen_k: int,
    dropout_p: float,
    softmax_scale: float,
    causal: bool,
    window_size_left: int = -1,
    window_size_right: int = -1,
    softcap: float = 0.0,
    alibi_slopes: Optional[torch.Tensor] = None,
    return_softmax: bool = False,
    block_table: Optional[torch.Tensor] = None,
    leftpad_k: Optional[torch.Tensor] = None,
    seqused_k: Optional[torch.Tensor] = None,
    zero_tensors: bool = False,
    num_splits: int = 0,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    cfg, max_seqlen_q, max_seqlen_k = _checks.validate_varlen_fwd_args(
        q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p, softmax_scale, causal,
        (window_size_left, window_size_right), softcap, alibi_slopes, block_table, require_padded=True,
        seqused_k=seqused_k, leftpad_k=leftpad_k, num_splits=num_splits)
    return _launch_varlen_fwd(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p,
                              cfg.softmax_scale, cfg.causal, cfg.window_size_left, cfg.window_size_right, softcap,
                              alibi_slopes, return_softmax, block_table, leftpad_k, seqused_k, zero_tensors,
                              num_splits)


@_flash_attn_varlen_forward.register_fake
def _flash_attn_varlen_forward_fake(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p,
                                    softmax_scale, causal, window_size_left=-1, window_size_right=-1, softcap=0.0,
                                    alibi_slopes=None, return_softmax=False, block_table=None, leftpad_k=None,
                                    seqused_k=None, zero_tensors=False, num_splits=0):
    _checks.check_num_splits(num_splits, block_table is not None)  # the same error while tracing as in eager
    total_q, h, _ = q.shape
    out = _out_like(q)
    lse = q.new_empty((h, total_q), dtype=torch.float32)
    batch = cu_seqlens_q.shape[0] - 1
    s_dmask = q.new_empty(_s_dmask_shape(batch, h, max_seqlen_q, max_seqlen_k, dropout_p, return_softmax))
    rng_state = q.new_empty((2,), dtype=torch.int64)
    return out, lse, s_dmask, rng_state


# Backward ops (same schema as flash-attn 2.8): write dq/dk/dv in place, return softmax_d = rowsum(dout * out),
# dense (b, h, round128(sq)), varlen (h, total_q + 128 * b).


@torch.library.custom_op("flash_attn::_flash_attn_backward", mutates_args=("dq", "dk", "dv"))
def _flash_attn_backward(
    dout: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    softmax_lse: torch.Tensor,
    dq: Optional[torch.Tensor],
    dk: Optional[torch.Tensor],
    dv: Optional[torch.Tensor],
    dropout_p: float,
    softmax_scale: float,
    causal: bool,
    window_size_left: int,
    window_size_right: int,
    softcap: float,
    alibi_slopes: Optional[torch.Tensor],
    deterministic: bool,
    rng_state: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    cfg = _checks.validate_bwd_args(dout, q, k, v, out, softmax_lse, dq, dk, dv, dropout_p, softmax_scale, causal,
                                    window_size_left, window_size_right, softcap, alibi_slopes)
    return _launch_bwd(dout, q, k, v, out, softmax_lse, dq, dk, dv, dropout_p, cfg.softmax_scale, cfg.causal,
                       cfg.window_size_left, cfg.window_size_right, softcap, alibi_slopes, deterministic, rng_state)


@_flash_attn_backward.register_fake
def _flash_attn_backward_fake(dout, q, k, v, out, softmax_lse, dq, dk, dv, dropout_p, softmax_scale, causal,
                              window_size_left, window_size_right, softcap, alibi_slopes, deterministic,
                              rng_state=None):
    b, sq, h, _ = q.shape
    return q.new_empty((b, h, _round128(sq)), dtype=torch.float32)


@torch.library.custom_op("flash_attn::_flash_attn_varlen_backward", mutates_args=("dq", "dk", "dv"))
def _flash_attn_varlen_backward(
    dout: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    softmax_lse: torch.Tensor,
    dq: Optional[torch.Tensor],
    dk: Optional[torch.Tensor],
    dv: Optional[torch.Tensor],
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor,
    max_seqlen_q: int,
    max_seqlen_k: int,
    dropout_p: float,
    softmax_scale: float,
    causal: bool,
    window_size_left: int,
    window_size_right: int,
    softcap: float,
    alibi_slopes: Optional[torch.Tensor],
    deterministic: bool,
    rng_state: Optional[torch.Tensor] = None,
    zero_tensors: bool = False,
) -> torch.Tensor:
    cfg, max_seqlen_q, max_seqlen_k = _checks.validate_varlen_bwd_args(
        dout, q, k, v, out, softmax_lse, dq, dk, dv, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
        dropout_p, softmax_scale, causal, window_size_left, window_size_right, softcap, alibi_slopes)
    return _launch_varlen_bwd(dout, q, k, v, out, softmax_lse, dq, dk, dv, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                              max_seqlen_k, dropout_p, cfg.softmax_scale, cfg.causal, cfg.window_size_left,
                              cfg.window_size_right, softcap, alibi_slopes, deterministic, rng_state, zero_tensors)


@_flash_attn_varlen_backward.register_fake
def _flash_attn_varlen_backward_fake(dout, q, k, v, out, softmax_lse, dq, dk, dv, cu_seqlens_q, cu_seqlens_k,
                                     max_seqlen_q, max_seqlen_k, dropout_p, softmax_scale, causal, window_size_left,
                                     window_size_right, softcap, alibi_slopes, deterministic, rng_state=None,
                                     zero_tensors=False):
    total_q, h, _ = q.shape
    batch = cu_seqlens_q.shape[0] - 1
    return q.new_empty((h, total_q + 128 * batch), dtype=torch.float32)


# ----------------------------------------------------------------------------------------------------------
# The ops the public functions call (flash_attn_interface, flash_attn.ops.triton.rotary): arguments already
# validated and normalised there, so the bodies only launch.
# ----------------------------------------------------------------------------------------------------------


def _unchecked(name, private, launch, fake, mutates_args=()):
    """An op with `private`'s schema, mutations and fake whose body calls the launcher named `launch` (looked up per
    call: tests swap it) with every argument, without validating. The body is also the op's `_eager_body`
    (op_or_body)."""
    signature = inspect.signature(private._init_fn)
    params = list(signature.parameters.values())
    # Positional calls (the usual ones) take the trailing defaults from here, without binding (~5 us a call).
    defaults = tuple(p.default for p in params)
    required = sum(p.default is inspect.Parameter.empty for p in params)

    @functools.wraps(private._init_fn)
    def body(*args, **kwargs):
        if not kwargs and required <= len(args) <= len(params):
            return globals()[launch](*args, *defaults[len(args):])
        bound = signature.bind(*args, **kwargs)  # the dispatcher and callers leave trailing defaults out
        bound.apply_defaults()
        return globals()[launch](*bound.args)

    op = torch.library.custom_op(name, body, mutates_args=mutates_args)
    op.register_fake(fake)
    op._eager_body = body
    return op


fwd = _unchecked("flash_attn::fwd", _flash_attn_forward, "_launch_fwd", _flash_attn_forward_fake)
varlen_fwd = _unchecked("flash_attn::varlen_fwd", _flash_attn_varlen_forward, "_launch_varlen_fwd",
                        _flash_attn_varlen_forward_fake)
bwd = _unchecked("flash_attn::bwd", _flash_attn_backward, "_launch_bwd", _flash_attn_backward_fake,
                 ("dq", "dk", "dv"))
varlen_bwd = _unchecked("flash_attn::varlen_bwd", _flash_attn_varlen_backward, "_launch_varlen_bwd",
                        _flash_attn_varlen_backward_fake, ("dq", "dk", "dv"))

# An eager call through the ops above costs about 40 us of host time in torch's custom-op dispatch, a third of
# flash_attn_func's ~0.12 ms (benchmarks/NOTES.md, fourth session of 2026-12-06), which bounds short calls.
# So the public functions call the ops' bodies directly where nothing could see the difference (eager_direct):
# 72 instead of 101 us per forward, 310 instead of 403 per forward + backward (H200, benchmark_call_overhead.py;
# the GPU suite passes both ways). The same condition lets calls that need no gradient skip the autograd Function
# (flash_attn_interface._apply). FLASH_ATTN_EAGER_DIRECT=0 keeps the ops and the Function for every call.
EAGER_DIRECT_ENV = "FLASH_ATTN_EAGER_DIRECT"
try:  # looked up once here, not on every call
    from torch.utils._python_dispatch import is_in_torch_dispatch_mode as _in_dispatch_mode
except ImportError:  # a torch without it: always the op
    _in_dispatch_mode = None


def eager_direct(*tensors) -> bool:
    """Whether a public function may call an op's body instead of the op: the switch is not 0, nothing traces or
    intercepts ops (torch.compile or export, a dispatch mode such as fake tensors, proxies or FlopCounterMode, a
    torch-function mode such as `with torch.device(...)`, a functorch transform, the autograd profiler), and every
    tensor given (None aside) is a plain CUDA tensor (no subclass, meta or CPU tensor). Private torch predicates
    that this torch lacks count as "maybe": the op."""
    if _in_dispatch_mode is None or os.environ.get(EAGER_DIRECT_ENV, "1") == "0":
        return False
    try:
        if (torch.compiler.is_compiling() or _in_dispatch_mode() or torch._C._is_torch_function_mode_enabled()
                or torch.autograd._profiler_enabled() or torch._C._functorch.maybe_current_level() is not None):
            return False
    except AttributeError:
        return False
    return all(t is None or (type(t) is torch.Tensor and t.is_cuda) for t in tensors)


def op_or_body(op, *tensors):
    """`op` (one of fwd, varlen_fwd, bwd, varlen_bwd, fwd_kvcache), or its body, which calls the launcher as the op
    would (defaults filled in), where eager_direct(*tensors) allows."""
    return op._eager_body if eager_direct(*tensors) else op


# flash_attn_with_kvcache: appends k/v into the caches in place (when given), then attends. cache_seqlens and the
# other index tensors are only read.
@torch.library.custom_op("flash_attn::fwd_kvcache", mutates_args=("k_cache", "v_cache"))
def fwd_kvcache(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    k: Optional[torch.Tensor],
    v: Optional[torch.Tensor],
    cache_seqlens: Optional[torch.Tensor],
    rotary_cos: Optional[torch.Tensor],
    rotary_sin: Optional[torch.Tensor],
    cache_batch_idx: Optional[torch.Tensor],
    cache_leftpad: Optional[torch.Tensor],
    block_table: Optional[torch.Tensor],
    alibi_slopes: Optional[torch.Tensor],
    softmax_scale: float,
    causal: bool,
    window_size_left: int,
    window_size_right: int,
    softcap: float,
    rotary_interleaved: bool,
    num_splits: int,
) -> Tuple[torch.Tensor, torch.Tensor]:
    return _launch_fwd_kvcache(q, k_cache, v_cache, k, v, cache_seqlens, rotary_cos, rotary_sin, cache_batch_idx,
                               cache_leftpad, block_table, alibi_slopes, softmax_scale, causal, window_size_left,
                               window_size_right, softcap, rotary_interleaved, num_splits)


@fwd_kvcache.register_fake
def _fwd_kvcache_fake(q, k_cache, v_cache, k, v, cache_seqlens, rotary_cos, rotary_sin, cache_batch_idx,
                      cache_leftpad, block_table, alibi_slopes, softmax_scale, causal, window_size_left,
                      window_size_right, softcap, rotary_interleaved, num_splits):
    b, sq, h, _ = q.shape
    return _out_like(q), q.new_empty((b, h, sq), dtype=torch.float32)


def _fwd_kvcache_eager(q, k_cache, v_cache, *args):
    """fwd_kvcache's body for eager_direct calls (op_or_body): what the op's in-place schema does besides the launch,
    bumping the caches' version counters (autograd checks them against saved tensors), then the launch."""
    torch.autograd.graph.increment_version(k_cache)
    torch.autograd.graph.increment_version(v_cache)
    return _launch_fwd_kvcache(q, k_cache, v_cache, *args)


fwd_kvcache._eager_body = _fwd_kvcache_eager


# Rotary embeddings (flash_attn.ops.triton.rotary.apply_rotary): out of place into a new contiguous tensor, or in
# place (x, a tensor or a view, contiguous in its last dim). seqlen_offsets (batch,) or the int seqlen_offset.
@torch.library.custom_op("flash_attn::apply_rotary", mutates_args=())
def apply_rotary(
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    seqlen_offsets: Optional[torch.Tensor],
    seqlen_offset: int,
    cu_seqlens: Optional[torch.Tensor],
    max_seqlen: int,
    interleaved: bool,
    conjugate: bool,
) -> torch.Tensor:
    x = x if x.stride(-1) == 1 else x.contiguous()
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    _launch_rotary(x, cos, sin, out, seqlen_offsets, seqlen_offset, cu_seqlens, max_seqlen, interleaved, conjugate)
    return out


@apply_rotary.register_fake
def _apply_rotary_fake(x, cos, sin, seqlen_offsets, seqlen_offset, cu_seqlens, max_seqlen, interleaved, conjugate):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.custom_op("flash_attn::apply_rotary_", mutates_args=("x",))
def apply_rotary_(
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    seqlen_offsets: Optional[torch.Tensor],
    seqlen_offset: int,
    cu_seqlens: Optional[torch.Tensor],
    max_seqlen: int,
    interleaved: bool,
    conjugate: bool,
) -> None:
    _launch_rotary(x, cos, sin, x, seqlen_offsets, seqlen_offset, cu_seqlens, max_seqlen, interleaved, conjugate)


@apply_rotary_.register_fake
def _apply_rotary_inplace_fake(x, cos, sin, seqlen_offsets, seqlen_offset, cu_seqlens, max_seqlen, interleaved,
                               conjugate):
    return None
