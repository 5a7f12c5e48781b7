"""The private entry points other libraries call, held to flash-attn 2.8.3's contract (API.md §8).

ring-flash-attention builds keyword arguments from `inspect.getfullargspec(_flash_attn_forward._init_fn)` (the
custom op definition's function) and writes dq/dk/dv into strided head or sequence slices of larger buffers; yunchang
passes the backward's 18 arguments positionally; TransformerEngine takes out, lse and rng_state (indices 0, 1, 3) of
the forward. The flash_attn_2_cuda functions (flash_attn_interface.flash_attn_gpu) keep 2.x's positional layout,
the `gen` slot included: None only.

CPU tests (run everywhere): signatures, op schemas and registration, positional and keyword calls through the
reference launcher, num_splits validation, softcap <= 0 = off (as in 2.x). GPU tests (requires_gpu, kernel_backend):
every entry point called positionally against the float32 reference, the generator slot, backward into strided views,
and a two-chunk ring-attention loop against full attention. Tolerance rule: reference.assert_close_to_ref.
"""

import inspect
import math
import re

import pytest
import torch

import flash_attn
import flash_attn.flash_attn_interface as fai
from flash_attn import _checks, _ops
from flash_attn._checks import FlashAttnValueError
from helpers import (
    DEVICE,
    assert_grads_close,
    attention_inputs,
    built_dtype,
    built_head_dim,
    require_kernel,
    requires_gpu,
    skip_in_dryrun,
)
from helpers import cu_seqlens as _cu
from helpers import randn as _randn
from reference import (
    assert_close_to_ref,
    attention_ref,
    attention_ref_bwd,
    attention_varlen_ref,
    kvcache_ref,
)

E = inspect.Parameter.empty
DT = torch.bfloat16
I32 = torch.int32

# flash-attn 2.8.3's flash_attn_interface (API.md §8): (name, default) in order; E = no default.
SIGNATURES = {
    "_flash_attn_forward": [
        ("q", E), ("k", E), ("v", E), ("dropout_p", E), ("softmax_scale", E), ("causal", E), ("window_size_left", E),
        ("window_size_right", E), ("softcap", E), ("alibi_slopes", E), ("return_softmax", E),
    ],
    "_flash_attn_varlen_forward": [
        ("q", E), ("k", E), ("v", E), ("cu_seqlens_q", E), ("cu_seqlens_k", E), ("max_seqlen_q", E),
        ("max_seqlen_k", E), ("dropout_p", E), ("softmax_scale", E), ("causal", E), ("window_size_left", -1),
        ("window_size_right", -1), ("softcap", 0.0), ("alibi_slopes", None), ("return_softmax", False),
        ("block_table", None), ("leftpad_k", None), ("seqused_k", None), ("zero_tensors", False), ("num_splits", 0),
    ],
    "_flash_attn_backward": [
        ("dout", E), ("q", E), ("k", E), ("v", E), ("out", E), ("softmax_lse", E), ("dq", E), ("dk", E), ("dv", E),
        ("dropout_p", E), ("softmax_scale", E), ("causal", E), ("window_size_left", E), ("window_size_right", E),
        ("softcap", E), ("alibi_slopes", E), ("deterministic", E), ("rng_state", None),
    ],
    "_flash_attn_varlen_backward": [
        ("dout", E), ("q", E), ("k", E), ("v", E), ("out", E), ("softmax_lse", E), ("dq", E), ("dk", E), ("dv", E),
        ("cu_seqlens_q", E), ("cu_seqlens_k", E), ("max_seqlen_q", E), ("max_seqlen_k", E), ("dropout_p", E),
        ("softmax_scale", E), ("causal", E), ("window_size_left", E), ("window_size_right", E), ("softcap", E),
        ("alibi_slopes", E), ("deterministic", E), ("rng_state", None), ("zero_tensors", False),
    ],
}
PRIVATE = list(SIGNATURES)
EXTENSION_FUNCTIONS = ("fwd", "varlen_fwd", "bwd", "varlen_bwd", "fwd_kvcache")
GENERATOR_ERROR = re.escape("generator` argument is no longer supported")


def _ring_default_args(func):
    """ring-flash-attention's get_default_args: parameter -> default (None where there is none) of a plain function,
    or of a CustomOpDef's `_init_fn`; softcap forced to 0.0."""
    fn = func if inspect.isfunction(func) else func._init_fn
    spec = inspect.getfullargspec(fn)
    defaults = tuple(spec.defaults or ())
    args = dict(zip(spec.args, (None,) * (len(spec.args) - len(defaults)) + defaults))
    if "softcap" in args:
        args["softcap"] = 0.0
    return args


def _rand(*shape, seed=0, dtype=DT, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(dtype=dtype, device=device)


def _close(a, b):
    torch.testing.assert_close(a.float(), b.float(), atol=1e-2, rtol=1e-2)


# ----------------------------------------------------------------------------------------------------------
# CPU: signatures, schemas, registration
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PRIVATE)
def test_signature(name):
    """inspect.signature of the private function (and of the function behind the custom op) is 2.8.3's, defaults
    with their types (0.0 stays a float)."""
    fn = getattr(fai, name)
    expected = SIGNATURES[name]
    for target in (fn, fn._init_fn):
        params = list(inspect.signature(target).parameters.values())
        assert [p.name for p in params] == [n for n, _ in expected], target
        assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)
        for p, (n, default) in zip(params, expected):
            assert p.default == default and type(p.default) is type(default), (name, n, p.default)


@pytest.mark.parametrize("name", PRIVATE)
def test_getfullargspec_as_ring_flash_attention_reads_it(name):
    fn = getattr(fai, name)
    assert not inspect.isfunction(fn) and callable(fn)  # a CustomOpDef, as upstream: ring reads ._init_fn
    spec = inspect.getfullargspec(fn._init_fn)
    expected = SIGNATURES[name]
    assert spec.args == [n for n, _ in expected]
    assert spec.varargs is None and spec.varkw is None and spec.kwonlyargs == []
    assert tuple(spec.defaults or ()) == tuple(d for _, d in expected if d is not E)
    args = _ring_default_args(fn)
    assert list(args) == [n for n, _ in expected]
    assert "window_size" not in args  # ring then passes window_size_left / window_size_right
    assert inspect.getfullargspec(fn).args == spec.args  # the object itself reports the same parameters


@pytest.mark.parametrize("name", PRIVATE)
def test_op_schema(name):
    """The registered op takes the same names and defaults (keyword calls go through the schema); only the backward
    ops write, and only dq, dk, dv."""
    schema = getattr(torch.ops.flash_attn, name).default._schema
    expected = SIGNATURES[name]
    assert [a.name for a in schema.arguments] == [n for n, _ in expected]
    for a, (n, default) in zip(schema.arguments, expected):
        assert not a.kwarg_only, n
        if default is E:
            assert not a.has_default_value(), n
        else:
            assert a.has_default_value() and a.default_value == default, (n, a.default_value)
    written = {a.name for a in schema.arguments if a.alias_info is not None and a.alias_info.is_write}
    assert written == ({"dq", "dk", "dv"} if "backward" in name else set())


def test_ops_registered():
    for name in PRIVATE:
        packet = getattr(torch.ops.flash_attn, name)
        assert getattr(fai, "_wrapped" + name) is packet
        assert getattr(fai, name) is getattr(_ops, name)
        assert getattr(fai, name)._opoverload is packet.default
    assert fai.flash_attn_gpu is _ops.flash_attn_gpu
    if fai.flash_attn_gpu is not None:
        import flash_attn_2_cuda

        assert fai.flash_attn_gpu is flash_attn_2_cuda
        for fn in EXTENSION_FUNCTIONS:
            assert callable(getattr(fai.flash_attn_gpu, fn)), fn


def test_fakes_on_meta():
    """All four ops have fake (meta) implementations with 2.8's output shapes."""
    dev = "meta"
    q, k, v = (torch.empty(s, dtype=DT, device=dev) for s in ((2, 13, 4, 32), (2, 17, 2, 32), (2, 17, 2, 32)))
    out, lse, s_dmask, rng_state = fai._flash_attn_forward(q, k, v, 0.0, 0.2, True, -1, -1, 0.0, None, False)
    assert out.shape == q.shape and lse.shape == (2, 4, 13) and s_dmask.shape == (0,) and rng_state.shape == (2,)
    softmax_d = fai._flash_attn_backward(q, q, k, v, out, lse, torch.empty_like(q), torch.empty_like(k),
                                         torch.empty_like(v), 0.0, 0.2, True, -1, -1, 0.0, None, False, rng_state)
    assert softmax_d.shape == (2, 4, 128) and softmax_d.dtype == torch.float32
    qv, kv = torch.empty(14, 4, 32, dtype=DT, device=dev), torch.empty(22, 2, 32, dtype=DT, device=dev)
    cu_q, cu_k = torch.empty(4, dtype=I32, device=dev), torch.empty(4, dtype=I32, device=dev)
    out, lse, _, rng_state = fai._flash_attn_varlen_forward(qv, kv, kv, cu_q, cu_k, 9, 11, 0.0, 0.2, True, -1, -1,
                                                            0.0, None, False, None, None, None, False, 0)
    assert out.shape == qv.shape and lse.shape == (4, 14)
    softmax_d = fai._flash_attn_varlen_backward(qv, qv, kv, kv, out, lse, None, None, None, cu_q, cu_k, 9, 11, 0.0,
                                                0.2, True, -1, -1, 0.0, None, False, rng_state, False)
    assert softmax_d.shape == (4, 14 + 128 * 3)


# ----------------------------------------------------------------------------------------------------------
# CPU: positional (upstream order) and keyword (ring-flash-attention) calls through the reference launcher
# ----------------------------------------------------------------------------------------------------------


def _dense_inputs(b=2, sq=13, sk=17, h=4, hk=2, d=32, seed=0):
    return (_rand(b, sq, h, d, seed=seed), _rand(b, sk, hk, d, seed=seed + 1), _rand(b, sk, hk, d, seed=seed + 2),
            _rand(b, sq, h, d, seed=seed + 3))


SEQLENS_Q, SEQLENS_K = [5, 0, 9], [7, 4, 11]


def _varlen_inputs(h=4, hk=2, d=32, seed=10):
    tq, tk = sum(SEQLENS_Q), sum(SEQLENS_K)
    cu_q = torch.tensor([0, 5, 5, 14], dtype=I32)
    cu_k = torch.tensor([0, 7, 11, 22], dtype=I32)
    return (_rand(tq, h, d, seed=seed), _rand(tk, hk, d, seed=seed + 1), _rand(tk, hk, d, seed=seed + 2),
            _rand(tq, h, d, seed=seed + 3), cu_q, cu_k)


def _varlen_ref_bwd(q, k, v, dout, cu_q, cu_k, causal, scale):
    dq, dk, dv = torch.zeros(q.shape), torch.zeros(k.shape), torch.zeros(v.shape)
    for i in range(len(cu_q) - 1):
        q0, q1, k0, k1 = int(cu_q[i]), int(cu_q[i + 1]), int(cu_k[i]), int(cu_k[i + 1])
        g = attention_ref_bwd(q[None, q0:q1], k[None, k0:k1], v[None, k0:k1], dout[None, q0:q1], causal, scale)
        dq[q0:q1], dk[k0:k1], dv[k0:k1] = g[0][0], g[1][0], g[2][0]
    return dq, dk, dv


@pytest.mark.parametrize("causal,window", [(False, (-1, -1)), (True, (-1, -1)), (False, (3, 0))])
def test_forward_positional_and_keyword(ref_launcher, causal, window):
    q, k, v, _ = _dense_inputs()
    res = fai._flash_attn_forward(q, k, v, 0.0, 0.3, causal, window[0], window[1], 0.0, None, False)
    assert len(res) == 4
    out, lse, s_dmask, rng_state = res  # TransformerEngine uses res[0], res[1], res[3]
    ref_out, ref_lse = attention_ref(q, k, v, causal, 0.3, window=window)
    _close(out, ref_out)
    torch.testing.assert_close(lse, ref_lse, atol=1e-4, rtol=1e-4)
    assert out.dtype == q.dtype and lse.dtype == torch.float32 and lse.shape == (2, 4, 13)
    assert s_dmask.shape == (0,) and rng_state.shape == (2,) and rng_state.dtype == torch.int64
    kind, info = ref_launcher.calls[-1]
    assert kind == "fwd" and info["causal"] == causal and info["window"] == window and info["softmax_scale"] == 0.3

    params = _ring_default_args(fai._flash_attn_forward)
    params.update(q=q, k=k, v=v, dropout_p=0.0, softmax_scale=0.3, causal=causal, window_size_left=window[0],
                  window_size_right=window[1], alibi_slopes=None, return_softmax=False)
    assert torch.equal(fai._flash_attn_forward(**params)[0], out)
    assert torch.equal(torch.ops.flash_attn._flash_attn_forward(q, k, v, 0.0, 0.3, causal, window[0], window[1], 0.0,
                                                                None, False)[0], out)


def test_ring_style_call_under_compile(ref_launcher):
    q, k, v, _ = _dense_inputs()
    params = _ring_default_args(fai._flash_attn_forward)

    def block(q, k, v):
        p = dict(params, q=q, k=k, v=v, dropout_p=0.0, softmax_scale=0.3, causal=True, window_size_left=-1,
                 window_size_right=-1, alibi_slopes=None, return_softmax=False)
        out, lse, _, _ = fai._flash_attn_forward(**p)
        return out, lse

    out, lse = torch.compile(block, fullgraph=True, backend="eager")(q, k, v)
    ref_out, ref_lse = block(q, k, v)
    assert torch.equal(out, ref_out) and torch.equal(lse, ref_lse)


def test_varlen_forward_positional_and_keyword(ref_launcher):
    q, k, v, _, cu_q, cu_k = _varlen_inputs()
    res = fai._flash_attn_varlen_forward(q, k, v, cu_q, cu_k, 9, 11, 0.0, 0.3, True, -1, -1, 0.0, None, False, None,
                                         None, None, False, 0)
    out, lse, s_dmask, rng_state = res
    ref_out, ref_lse = attention_varlen_ref(q, k, v, cu_q.tolist(), cu_k.tolist(), True, 0.3)
    _close(out, ref_out)
    torch.testing.assert_close(lse, ref_lse, atol=1e-4, rtol=1e-4)
    assert lse.shape == (4, 14) and s_dmask.shape == (0,) and rng_state.shape == (2,)
    kind, info = ref_launcher.calls[-1]
    assert kind == "varlen_fwd" and info["max_seqlen"] == (9, 11) and info["causal"] is True
    # the defaults alone, and ring-flash-attention's keyword form
    assert torch.equal(fai._flash_attn_varlen_forward(q, k, v, cu_q, cu_k, 9, 11, 0.0, 0.3, True)[0], out)
    params = _ring_default_args(fai._flash_attn_varlen_forward)
    params.update(q=q, k=k, v=v, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, max_seqlen_q=9, max_seqlen_k=11, dropout_p=0.0,
                  softmax_scale=0.3, causal=True, window_size_left=-1, window_size_right=-1, alibi_slopes=None,
                  return_softmax=False)
    assert torch.equal(fai._flash_attn_varlen_forward(**params)[0], out)


def test_backward_positional_and_keyword(ref_launcher_bwd):
    """yunchang's 18 positional arguments (rng_state last); ring-flash-attention's keywords."""
    q, k, v, dout = _dense_inputs()
    out, lse, _, rng_state = fai._flash_attn_forward(q, k, v, 0.0, 0.3, True, -1, -1, 0.0, None, False)
    ref = attention_ref_bwd(q, k, v, dout, True, 0.3)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    softmax_d = fai._flash_attn_backward(dout, q, k, v, out, lse, dq, dk, dv, 0.0, 0.3, True, -1, -1, 0.0, None,
                                         False, rng_state)
    assert softmax_d.shape == (2, 4, 128) and softmax_d.dtype == torch.float32
    torch.testing.assert_close(softmax_d[:, :, :13], (dout.float() * out.float()).sum(-1).transpose(1, 2))
    for g, r in zip((dq, dk, dv), ref):
        _close(g, r)

    grads = [torch.empty_like(x) for x in (q, k, v)]
    params = _ring_default_args(fai._flash_attn_backward)
    params.update(dout=dout, q=q, k=k, v=v, out=out, softmax_lse=lse, dq=grads[0], dk=grads[1], dv=grads[2],
                  dropout_p=0.0, softmax_scale=0.3, causal=True, window_size_left=-1, window_size_right=-1,
                  alibi_slopes=None, deterministic=False)
    fai._flash_attn_backward(**params)
    for g, mine in zip(grads, (dq, dk, dv)):
        assert torch.equal(g, mine)


def test_varlen_backward_positional_and_keyword(ref_launcher_bwd):
    q, k, v, dout, cu_q, cu_k = _varlen_inputs()
    out, lse, _, rng_state = fai._flash_attn_varlen_forward(q, k, v, cu_q, cu_k, 9, 11, 0.0, 0.3, True)
    ref = _varlen_ref_bwd(q, k, v, dout, cu_q, cu_k, True, 0.3)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    softmax_d = fai._flash_attn_varlen_backward(dout, q, k, v, out, lse, dq, dk, dv, cu_q, cu_k, 9, 11, 0.0, 0.3,
                                                True, -1, -1, 0.0, None, False, rng_state, False)
    assert softmax_d.shape == (4, 14 + 128 * 3) and softmax_d.dtype == torch.float32
    for g, r in zip((dq, dk, dv), ref):
        _close(g, r)
    grads = [torch.empty_like(x) for x in (q, k, v)]
    params = _ring_default_args(fai._flash_attn_varlen_backward)
    params.update(dout=dout, q=q, k=k, v=v, out=out, softmax_lse=lse, dq=grads[0], dk=grads[1], dv=grads[2],
                  cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, max_seqlen_q=9, max_seqlen_k=11, dropout_p=0.0,
                  softmax_scale=0.3, causal=True, window_size_left=-1, window_size_right=-1, alibi_slopes=None,
                  deterministic=False)
    fai._flash_attn_varlen_backward(**params)
    for g, mine in zip(grads, (dq, dk, dv)):
        assert torch.equal(g, mine)


# Strided gradient buffers, as ring-flash-attention / llama3 pass them: (buffer shape, view index) per gradient.
# Dense: q (2, 13, 4, 32), k/v (2, 17, 2, 32); varlen: q (14, 4, 32), k/v (22, 2, 32).
STRIDED = {
    "dense-heads": [((2, 13, 9, 32), (slice(None), slice(None), slice(2, 6))),
                    ((2, 17, 5, 32), (slice(None), slice(None), slice(1, 3))),
                    ((2, 17, 5, 32), (slice(None), slice(None), slice(3, 5)))],
    "dense-seq": [((2, 30, 4, 32), (slice(None), slice(5, 18))),
                  ((2, 34, 2, 32), (slice(None), slice(17, 34))),
                  ((2, 40, 2, 32), (slice(None), slice(8, 25)))],
    "varlen-heads": [((14, 10, 32), (slice(None), slice(6, 10))),
                     ((22, 6, 32), (slice(None), slice(0, 2))),
                     ((22, 6, 32), (slice(None), slice(2, 4)))],
    "varlen-seq": [((30, 4, 32), (slice(16, 30),)),
                   ((44, 2, 32), (slice(22, 44),)),
                   ((50, 2, 32), (slice(3, 25),))],
}
SENTINEL = 7.0


def _strided_grads(layout):
    bufs = [torch.full(shape, SENTINEL, dtype=DT) for shape, _ in STRIDED[layout]]
    return bufs, [buf[idx] for buf, (_, idx) in zip(bufs, STRIDED[layout])]


def _assert_outside_untouched(bufs, layout):
    for buf, (_, idx) in zip(bufs, STRIDED[layout]):
        rest = buf.clone()
        rest[idx] = SENTINEL
        assert torch.equal(rest, torch.full_like(buf, SENTINEL)), "written outside the view"


@pytest.mark.parametrize("layout", list(STRIDED))
def test_backward_into_strided_views(ref_launcher_bwd, layout):
    """dq/dk/dv as head or sequence slices of larger buffers pass the op's checks (check_bwd_tensors) and are written
    in place, nothing outside them."""
    bufs, (dq, dk, dv) = _strided_grads(layout)
    if layout.startswith("dense"):
        q, k, v, dout = _dense_inputs()
        out, lse, _, rng = fai._flash_attn_forward(q, k, v, 0.0, 0.3, True, -1, -1, 0.0, None, False)
        fai._flash_attn_backward(dout, q, k, v, out, lse, dq, dk, dv, 0.0, 0.3, True, -1, -1, 0.0, None, False, rng)
        ref = attention_ref_bwd(q, k, v, dout, True, 0.3)
    else:
        q, k, v, dout, cu_q, cu_k = _varlen_inputs()
        out, lse, _, rng = fai._flash_attn_varlen_forward(q, k, v, cu_q, cu_k, 9, 11, 0.0, 0.3, True)
        fai._flash_attn_varlen_backward(dout, q, k, v, out, lse, dq, dk, dv, cu_q, cu_k, 9, 11, 0.0, 0.3, True, -1,
                                        -1, 0.0, None, False, rng)
        ref = _varlen_ref_bwd(q, k, v, dout, cu_q, cu_k, True, 0.3)
    for g, r in zip((dq, dk, dv), ref):
        _close(g, r)
    _assert_outside_untouched(bufs, layout)


@pytest.mark.parametrize("layout", list(STRIDED))
def test_strided_grads_pass_the_real_ops_checks(layout):
    """The real op body (no reference launcher) accepts the strided views: its tensor checks pass and the call
    stops at the device check (CPU tensors)."""
    _, (dq, dk, dv) = _strided_grads(layout)
    if layout.startswith("dense"):
        q, k, v, dout = _dense_inputs()
        lse = torch.zeros(2, 4, 13)
        _checks.check_bwd_tensors(q, k, v, dout, q, lse, dq, dk, dv, (2, 4, 13))
        args = (dout, q, k, v, q, lse, dq, dk, dv, 0.0, 0.3, True, -1, -1, 0.0, None, False, None)
        op = fai._flash_attn_backward
    else:
        q, k, v, dout, cu_q, cu_k = _varlen_inputs()
        lse = torch.zeros(4, 14)
        _checks.check_bwd_tensors(q, k, v, dout, q, lse, dq, dk, dv, (4, 14))
        args = (dout, q, k, v, q, lse, dq, dk, dv, cu_q, cu_k, 9, 11, 0.0, 0.3, True, -1, -1, 0.0, None, False, None,
                False)
        op = fai._flash_attn_varlen_backward
    with pytest.raises(FlashAttnValueError, match=r"^q must be a CUDA tensor"):
        op(*args)


# ----------------------------------------------------------------------------------------------------------
# CPU: the private varlen forward's num_splits
# ----------------------------------------------------------------------------------------------------------


def _paged_call(num_splits, device="cpu", positional=True):
    """A paged varlen forward: 3 pages of 16 slots, 2 sequences (10 and 20 keys) over 2 pages each."""
    q = torch.zeros(6, 4, 32, dtype=DT, device=device)
    k = torch.zeros(3, 16, 2, 32, dtype=DT, device=device)
    cu_q = torch.tensor([0, 2, 6], dtype=I32, device=device)
    cu_k = torch.tensor([0, 10, 30], dtype=I32, device=device)
    table = torch.tensor([[0, 1], [1, 2]], dtype=I32, device=device)
    if positional:
        return fai._flash_attn_varlen_forward(q, k, k, cu_q, cu_k, 4, 20, 0.0, 0.2, False, -1, -1, 0.0, None, False,
                                              table, None, None, False, num_splits)
    return fai._flash_attn_varlen_forward(q, k, k, cu_q, cu_k, 4, 20, 0.0, 0.2, False, block_table=table,
                                          num_splits=num_splits)


@pytest.mark.parametrize("device", ["cpu", "meta"])  # the op body and its fake (what torch.compile traces)
@pytest.mark.parametrize("positional", [True, False])
@pytest.mark.parametrize("num_splits", [2, 3, 128])
def test_num_splits_with_paged_kv_raises(device, positional, num_splits):
    with pytest.raises(RuntimeError, match=r"^num_splits > 1 is not supported with paged KV"):
        _paged_call(num_splits, device, positional)


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("paged", [True, False])
def test_num_splits_negative_raises(device, paged):
    with pytest.raises(RuntimeError, match=r"^num_splits must be >= 0"):
        if paged:
            _paged_call(-1, device)
        else:
            q, k, v, _, cu_q, cu_k = (x.to(device) for x in _varlen_inputs())
            fai._flash_attn_varlen_forward(q, k, v, cu_q, cu_k, 9, 11, 0.0, 0.3, True, num_splits=-1)


def test_num_splits_must_be_an_int():
    with pytest.raises(RuntimeError, match="num_splits"):
        _paged_call(2.0)
    with pytest.raises(RuntimeError, match="num_splits"):
        _paged_call(None)


@pytest.mark.parametrize("num_splits", [0, 1])
def test_num_splits_up_to_one_with_paged_kv(num_splits):
    """0 and 1 pass with a paged K/V: the real body goes on to the device check, the fake returns shapes."""
    with pytest.raises(FlashAttnValueError, match=r"^q must be a CUDA tensor"):
        _paged_call(num_splits)
    out, lse, _, _ = _paged_call(num_splits, "meta")
    assert out.shape == (6, 4, 32) and lse.shape == (4, 6)


@pytest.mark.parametrize("num_splits", [0, 1, 4, 200])
def test_num_splits_reaches_the_launcher(ref_launcher, num_splits):
    q, k, v, _, cu_q, cu_k = _varlen_inputs()
    out = fai._flash_attn_varlen_forward(q, k, v, cu_q, cu_k, 9, 11, 0.0, 0.3, True, -1, -1, 0.0, None, False, None,
                                         None, None, False, num_splits)[0]
    assert ref_launcher.calls[-1][1]["num_splits"] == num_splits
    _close(out, attention_varlen_ref(q, k, v, cu_q.tolist(), cu_k.tolist(), True, 0.3)[0])


def test_num_splits_error_before_the_launcher(ref_launcher):
    with pytest.raises(RuntimeError, match=r"^num_splits > 1 is not supported with paged KV"):
        _paged_call(2)
    assert ref_launcher.calls == []


# ----------------------------------------------------------------------------------------------------------
# CPU: softcap <= 0 means no softcap (2.x); NaN and infinities are errors
# ----------------------------------------------------------------------------------------------------------


def _meta(*shape, dtype=torch.float16):
    return torch.empty(*shape, dtype=dtype, device="meta")


@pytest.mark.parametrize("softcap", [-1.0, -0.5, -1e30, -1])
def test_negative_softcap_is_off_in_validation(softcap):
    q, k = _meta(2, 8, 4, 64), _meta(2, 16, 2, 64)
    off = _checks.validate_fwd_args(q, k, k, softcap=0.0, check_device=False)
    assert _checks.validate_fwd_args(q, k, k, softcap=softcap, check_device=False) == off
    assert _checks.validate_fwd_args(q, k, k, 0.1, softcap=softcap, check_device=False) == off  # with dropout too
    qv, kv, cu = _meta(20, 4, 64), _meta(30, 2, 64), torch.zeros(4, dtype=I32, device="meta")
    off = _checks.validate_varlen_fwd_args(qv, kv, kv, cu, cu, 8, 8, softcap=0.0, check_device=False)
    assert _checks.validate_varlen_fwd_args(qv, kv, kv, cu, cu, 8, 8, softcap=softcap, check_device=False) == off
    cache = _meta(2, 64, 2, 64)
    off = _checks.validate_kvcache_args(_meta(2, 1, 4, 64), cache, cache, softcap=0.0, check_device=False)
    cfg = _checks.validate_kvcache_args(_meta(2, 1, 4, 64), cache, cache, softcap=softcap, check_device=False)
    assert cfg.fwd == off.fwd


@pytest.mark.parametrize("softcap", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_softcap_raises(softcap):
    q, k = _meta(2, 8, 4, 64), _meta(2, 16, 2, 64)
    with pytest.raises(FlashAttnValueError, match=r"^softcap must be a finite number"):
        _checks.validate_fwd_args(q, k, k, softcap=softcap, check_device=False)
    qv, kv, cu = _meta(20, 4, 64), _meta(30, 2, 64), torch.zeros(4, dtype=I32, device="meta")
    with pytest.raises(FlashAttnValueError, match=r"^softcap must be a finite number"):
        _checks.validate_varlen_fwd_args(qv, kv, kv, cu, cu, 8, 8, softcap=softcap, check_device=False)
    cache = _meta(2, 64, 2, 64)
    with pytest.raises(FlashAttnValueError, match=r"^softcap must be a finite number"):
        _checks.validate_kvcache_args(_meta(2, 1, 4, 64), cache, cache, softcap=softcap, check_device=False)
    with pytest.raises(FlashAttnValueError, match=r"^softcap must be a finite number"):
        flash_attn.flash_attn_func(_rand(1, 3, 2, 32), _rand(1, 3, 2, 32), _rand(1, 3, 2, 32), softcap=softcap)


def test_negative_softcap_equals_no_softcap(ref_launcher_bwd):
    q, k, v, dout = _dense_inputs()
    q, k, v = (x.requires_grad_() for x in (q, k, v))
    out0 = flash_attn.flash_attn_func(q, k, v, causal=True, softcap=0.0)
    out1 = flash_attn.flash_attn_func(q, k, v, causal=True, softcap=-1.0)
    assert torch.equal(out1, out0)
    _close(out0, attention_ref(q.detach(), k.detach(), v.detach(), True)[0])
    for g1, g0 in zip(torch.autograd.grad(out1, (q, k, v), dout), torch.autograd.grad(out0, (q, k, v), dout)):
        assert torch.equal(g1, g0)
    qv, kv, vv, _, cu_q, cu_k = _varlen_inputs()
    out0 = flash_attn.flash_attn_varlen_func(qv, kv, vv, cu_q, cu_k, 9, 11, softcap=0.0)
    assert torch.equal(flash_attn.flash_attn_varlen_func(qv, kv, vv, cu_q, cu_k, 9, 11, softcap=-2.5), out0)


# ----------------------------------------------------------------------------------------------------------
# GPU
# ----------------------------------------------------------------------------------------------------------


def gpu(fn):
    """A GPU test: skipped without CUDA / the extension, kernel outputs NaN-poisoned (kernel_backend)."""
    return requires_gpu(pytest.mark.usefixtures("kernel_backend")(fn))


DTYPES = [torch.float16, torch.bfloat16]
B, SQ, SK, H, HK = 2, 113, 239, 6, 2  # GQA; lengths that are no multiple of any tile


def _dense_ref(causal, scale):
    def fn(q, k, v, upcast):
        return attention_ref(q, k, v, causal, scale, upcast=upcast)

    return fn


def _varlen_ref(cu_q, cu_k, causal, scale):
    cq, ck = cu_q.tolist(), cu_k.tolist()

    def fn(q, k, v, upcast):
        return attention_varlen_ref(q, k, v, cq, ck, causal, scale, upcast=upcast)

    return fn


def _assert_fwd(out, lse, fn, q, k, v):
    ref_out, ref_lse = fn(q, k, v, True)
    lp_out, lp_lse = fn(q, k, v, False)
    assert_close_to_ref("out", out, ref_out, lp_out)
    assert_close_to_ref("lse", lse, ref_lse, lp_lse)


def _dense_case(dtype, seed, d):
    q, k, v, dout = attention_inputs((B, SQ, H, d), (B, SK, HK, d), dtype, seed)
    return q.detach(), k.detach(), v.detach(), dout


VARLEN_Q, VARLEN_K = [113, 17, 239], [239, 40, 239]


def _varlen_case(dtype, seed, d):
    q, k, v, dout = attention_inputs((sum(VARLEN_Q), H, d), (sum(VARLEN_K), HK, d), dtype, seed)
    return q.detach(), k.detach(), v.detach(), dout, _cu(VARLEN_Q), _cu(VARLEN_K)


@gpu
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_dense_private_ops_positional(dtype, causal):
    d = built_head_dim()
    require_kernel(dtype, d)
    scale = 0.37
    q, k, v, dout = _dense_case(dtype, 101, d)
    out, lse, s_dmask, rng_state = fai._flash_attn_forward(q, k, v, 0.0, scale, causal, -1, -1, 0.0, None, False)
    fn = _dense_ref(causal, scale)
    _assert_fwd(out, lse, fn, q, k, v)
    assert s_dmask.shape == (0,) and rng_state.shape == (2,) and rng_state.dtype == torch.int64
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    softmax_d = fai._flash_attn_backward(dout, q, k, v, out, lse, dq, dk, dv, 0.0, scale, causal, -1, -1, 0.0, None,
                                         False, rng_state)
    assert softmax_d.shape == (B, H, 128) and softmax_d.dtype == torch.float32
    assert_close_to_ref("softmax_d", softmax_d[:, :, :SQ], (dout.float() * out.float()).sum(-1).transpose(1, 2),
                        (dout * out).sum(-1).transpose(1, 2))
    assert_grads_close(("dq", "dk", "dv"), (dq, dk, dv), lambda *a: fn(*a)[0], (q, k, v), dout)


@gpu
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_varlen_private_ops_positional(dtype, causal):
    d = built_head_dim()
    require_kernel(dtype, d)
    scale = 0.37
    q, k, v, dout, cu_q, cu_k = _varlen_case(dtype, 202, d)
    mq, mk = max(VARLEN_Q), max(VARLEN_K)
    out, lse, s_dmask, rng_state = fai._flash_attn_varlen_forward(q, k, v, cu_q, cu_k, mq, mk, 0.0, scale, causal, -1,
                                                                  -1, 0.0, None, False, None, None, None, False, 0)
    fn = _varlen_ref(cu_q, cu_k, causal, scale)
    _assert_fwd(out, lse, fn, q, k, v)
    assert s_dmask.shape == (0,) and rng_state.shape == (2,)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    softmax_d = fai._flash_attn_varlen_backward(dout, q, k, v, out, lse, dq, dk, dv, cu_q, cu_k, mq, mk, 0.0, scale,
                                                causal, -1, -1, 0.0, None, False, rng_state, False)
    assert softmax_d.shape == (H, q.shape[0] + 128 * 3) and softmax_d.dtype == torch.float32
    assert_grads_close(("dq", "dk", "dv"), (dq, dk, dv), lambda *a: fn(*a)[0], (q, k, v), dout)


@gpu
@skip_in_dryrun
@pytest.mark.parametrize("causal", [False, True])
def test_gpu_extension_functions_positional(causal):
    """flash_attn_2_cuda's fwd / bwd / varlen_fwd / varlen_bwd with 2.x's positional layout and None in the gen
    slot; varlen_fwd also with the trailing num_splits of later versions."""
    ext = fai.flash_attn_gpu
    d, dtype = built_head_dim(), built_dtype()
    require_kernel(dtype, d)
    scale = 1 / math.sqrt(d)
    q, k, v, dout = _dense_case(dtype, 303, d)
    fn = _dense_ref(causal, scale)
    out, lse, s_dmask, rng_state = ext.fwd(q, k, v, None, None, 0.0, scale, causal, -1, -1, 0.0, False, None)
    _assert_fwd(out, lse, fn, q, k, v)
    assert s_dmask.shape == (0,) and rng_state.shape == (2,) and rng_state.dtype == torch.int64
    dq, dk, dv, softmax_d = ext.bwd(dout, q, k, v, out, lse, None, None, None, None, 0.0, scale, causal, -1, -1, 0.0,
                                    False, None, rng_state)
    assert softmax_d.shape == (B, H, 128)
    assert_grads_close(("dq", "dk", "dv"), (dq, dk, dv), lambda *a: fn(*a)[0], (q, k, v), dout)

    q, k, v, dout, cu_q, cu_k = _varlen_case(dtype, 304, d)
    mq, mk = max(VARLEN_Q), max(VARLEN_K)
    fn = _varlen_ref(cu_q, cu_k, causal, scale)
    args = (q, k, v, None, cu_q, cu_k, None, None, None, None, mq, mk, 0.0, scale, False, causal, -1, -1, 0.0, False,
            None)
    out, lse, s_dmask, rng_state = ext.varlen_fwd(*args)
    _assert_fwd(out, lse, fn, q, k, v)
    for num_splits in (0, 1, 3):
        o, l, _, _ = ext.varlen_fwd(*args, num_splits)
        _assert_fwd(o, l, fn, q, k, v)
    dq, dk, dv, softmax_d = ext.varlen_bwd(dout, q, k, v, out, lse, None, None, None, cu_q, cu_k, None, mq, mk, 0.0,
                                           scale, False, causal, -1, -1, 0.0, False, None, rng_state)
    assert softmax_d.shape == (H, q.shape[0] + 128 * 3)
    assert_grads_close(("dq", "dk", "dv"), (dq, dk, dv), lambda *a: fn(*a)[0], (q, k, v), dout)


@gpu
@skip_in_dryrun
@pytest.mark.parametrize("num_splits", [0, 1, 3])
def test_gpu_fwd_kvcache_positional(num_splits):
    """fwd_kvcache(q, kcache, vcache, k, v, seqlens_k, rotary_cos, rotary_sin, cache_batch_idx, leftpad_k,
    block_table, alibi_slopes, out, softmax_scale, is_causal, window_left, window_right, softcap, rotary_interleaved,
    num_splits): appends k/v in place and attends."""
    ext = fai.flash_attn_gpu
    d, dtype = built_head_dim(), built_dtype()
    require_kernel(dtype, d)
    q = _randn((2, 3, H, d), dtype, 401)
    k_cache, v_cache = _randn((2, 200, HK, d), dtype, 402), _randn((2, 200, HK, d), dtype, 403)
    k_new, v_new = _randn((2, 3, HK, d), dtype, 404), _randn((2, 3, HK, d), dtype, 405)
    seqlens = torch.tensor([37, 150], dtype=I32, device=DEVICE)
    k0, v0 = k_cache.clone(), v_cache.clone()
    out, lse = ext.fwd_kvcache(q, k_cache, v_cache, k_new, v_new, seqlens, None, None, None, None, None, None, None,
                               1 / math.sqrt(d), True, -1, -1, 0.0, True, num_splits)
    ref_out, ref_lse, ref_k, ref_v = kvcache_ref(q, k0, v0, k_new, v_new, cache_seqlens=seqlens, causal=True)
    lp_out, lp_lse, _, _ = kvcache_ref(q, k0, v0, k_new, v_new, cache_seqlens=seqlens, causal=True, upcast=False)
    assert torch.equal(k_cache, ref_k) and torch.equal(v_cache, ref_v)
    assert_close_to_ref("out", out, ref_out, lp_out)
    assert_close_to_ref("lse", lse, ref_lse, lp_lse)


@gpu
@skip_in_dryrun
def test_gpu_generator_argument_rejected():
    """A generator in the gen slot raises (2.x's slot is kept for the argument positions only)."""
    ext = fai.flash_attn_gpu
    d, dtype = built_head_dim(), built_dtype()
    require_kernel(dtype, d)
    gen = torch.Generator(device=DEVICE)
    scale = 1 / math.sqrt(d)
    q, k, v, dout = _dense_case(dtype, 501, d)
    for p in (0.0, 0.1):
        with pytest.raises(RuntimeError, match=GENERATOR_ERROR):
            ext.fwd(q, k, v, None, None, p, scale, False, -1, -1, 0.0, False, gen)
    out, lse, _, rng_state = ext.fwd(q, k, v, None, None, 0.0, scale, False, -1, -1, 0.0, False, None)
    with pytest.raises(RuntimeError, match=GENERATOR_ERROR):
        ext.bwd(dout, q, k, v, out, lse, None, None, None, None, 0.0, scale, False, -1, -1, 0.0, False, gen, rng_state)

    q, k, v, dout, cu_q, cu_k = _varlen_case(dtype, 502, d)
    mq, mk = max(VARLEN_Q), max(VARLEN_K)
    head = (q, k, v, None, cu_q, cu_k, None, None, None, None, mq, mk, 0.0, scale, False, False, -1, -1, 0.0, False)
    with pytest.raises(RuntimeError, match=GENERATOR_ERROR):
        ext.varlen_fwd(*head, gen)
    with pytest.raises(RuntimeError, match=GENERATOR_ERROR):
        ext.varlen_fwd(*head, gen, 0)
    out, lse, _, rng_state = ext.varlen_fwd(*head, None)
    with pytest.raises(RuntimeError, match=GENERATOR_ERROR):
        ext.varlen_bwd(dout, q, k, v, out, lse, None, None, None, cu_q, cu_k, None, mq, mk, 0.0, scale, False, False,
                       -1, -1, 0.0, False, gen, rng_state)


@gpu
@skip_in_dryrun
def test_gpu_extension_num_splits_with_paged_kv_raises():
    ext = fai.flash_attn_gpu
    d, dtype = built_head_dim(), built_dtype()
    require_kernel(dtype, d)
    q = _randn((6, H, d), dtype, 601)
    k = _randn((3, 256, HK, d), dtype, 602)
    cu_q = torch.tensor([0, 2, 6], dtype=I32, device=DEVICE)
    cu_k = torch.tensor([0, 100, 400], dtype=I32, device=DEVICE)
    table = torch.tensor([[0, 1], [1, 2]], dtype=I32, device=DEVICE)
    args = (q, k, k, None, cu_q, cu_k, None, None, table, None, 4, 300, 0.0, 0.1, False, False, -1, -1, 0.0, False,
            None)
    with pytest.raises(RuntimeError, match="num_splits > 1 is not supported"):
        ext.varlen_fwd(*args, 2)
    ext.varlen_fwd(*args, 1)  # at most one split is fine


# Strided gradients (GPU): the head group 4:8 of 8 query heads (kv heads 2:4 of 4), as llama3_flash_attn_varlen
# backpropagates one head group at a time; the inputs, out, dout and lse are head slices of full-width tensors.
GROUP_Q, GROUP_K, H_ALL, HK_ALL = slice(4, 8), slice(2, 4), 8, 4


def _views(buf_shape, idx, dtype):
    buf = torch.full(buf_shape, SENTINEL, dtype=dtype, device=DEVICE)
    return buf, buf[idx]


def _outside_untouched(buf, idx):
    rest = buf.clone()
    rest[idx] = SENTINEL
    return torch.equal(rest, torch.full_like(buf, SENTINEL))


@gpu
@pytest.mark.parametrize("layout", ["heads", "seq"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_dense_backward_into_strided_views(dtype, layout):
    d = built_head_dim()
    require_kernel(dtype, d)
    scale = 1 / math.sqrt(d)
    q_all, k_all, v_all, dout_all = attention_inputs((B, SQ, H_ALL, d), (B, SK, HK_ALL, d), dtype, 701)
    q_all, k_all, v_all = q_all.detach(), k_all.detach(), v_all.detach()
    out_all, lse_all, _, rng = fai._flash_attn_forward(q_all, k_all, v_all, 0.0, scale, True, -1, -1, 0.0, None,
                                                       False)
    q, k, v = q_all[:, :, GROUP_Q], k_all[:, :, GROUP_K], v_all[:, :, GROUP_K]
    out, dout, lse = out_all[:, :, GROUP_Q], dout_all[:, :, GROUP_Q], lse_all[:, GROUP_Q]
    all_ = slice(None)
    if layout == "heads":  # dq = dq_buffer[:, :, h0:h1]; dk, dv: kv-head slices of one (2, b, sk, hk_all, d) buffer
        specs = [((B, SQ, H_ALL, d), (all_, all_, GROUP_Q)), ((2, B, SK, HK_ALL, d), (0, all_, all_, GROUP_K)),
                 ((2, B, SK, HK_ALL, d), (1, all_, all_, GROUP_K))]
    else:  # slices along the sequence of longer buffers
        specs = [((B, SQ + 40, 4, d), (all_, slice(24, 24 + SQ))), ((B, 2 * SK, 2, d), (all_, slice(SK, 2 * SK))),
                 ((B, SK + 16, 2, d), (all_, slice(8, 8 + SK)))]
    (dq_buf, dq), (dk_buf, dk), (dv_buf, dv) = (_views(s, i, dtype) for s, i in specs)
    assert not (dq.is_contiguous() or dk.is_contiguous() or dv.is_contiguous())
    fai._flash_attn_backward(dout, q, k, v, out, lse, dq, dk, dv, 0.0, scale, True, -1, -1, 0.0, None, False, rng)
    fn = _dense_ref(True, scale)
    assert_grads_close(("dq", "dk", "dv"), (dq, dk, dv), lambda *a: fn(*a)[0], (q, k, v), dout)
    for name, buf, (_, idx) in zip(("dq", "dk", "dv"), (dq_buf, dk_buf, dv_buf), specs):
        assert _outside_untouched(buf, idx), f"{name}: written outside the view"


@gpu
@pytest.mark.parametrize("layout", ["heads", "seq"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_varlen_backward_into_strided_views(dtype, layout):
    d = built_head_dim()
    require_kernel(dtype, d)
    scale = 1 / math.sqrt(d)
    tq, tk = sum(VARLEN_Q), sum(VARLEN_K)
    cu_q, cu_k = _cu(VARLEN_Q), _cu(VARLEN_K)
    mq, mk = max(VARLEN_Q), max(VARLEN_K)
    q_all, k_all, v_all, dout_all = attention_inputs((tq, H_ALL, d), (tk, HK_ALL, d), dtype, 801)
    q_all, k_all, v_all = q_all.detach(), k_all.detach(), v_all.detach()
    out_all, lse_all, _, rng = fai._flash_attn_varlen_forward(q_all, k_all, v_all, cu_q, cu_k, mq, mk, 0.0, scale,
                                                              True)
    q, k, v = q_all[:, GROUP_Q], k_all[:, GROUP_K], v_all[:, GROUP_K]
    out, dout, lse = out_all[:, GROUP_Q], dout_all[:, GROUP_Q], lse_all[GROUP_Q]
    all_ = slice(None)
    if layout == "heads":
        specs = [((tq, H_ALL, d), (all_, GROUP_Q)), ((2, tk, HK_ALL, d), (0, all_, GROUP_K)),
                 ((2, tk, HK_ALL, d), (1, all_, GROUP_K))]
    else:  # llama3: dk_i = dkv_buffer[0][local_k_slice]
        specs = [((tq + 24, 4, d), (slice(16, 16 + tq),)), ((2, 2 * tk, 2, d), (0, slice(tk, 2 * tk))),
                 ((2, 2 * tk, 2, d), (1, slice(0, tk)))]
    (dq_buf, dq), (dk_buf, dk), (dv_buf, dv) = (_views(s, i, dtype) for s, i in specs)
    fai._flash_attn_varlen_backward(dout, q, k, v, out, lse, dq, dk, dv, cu_q, cu_k, mq, mk, 0.0, scale, True, -1, -1,
                                    0.0, None, False, rng)
    fn = _varlen_ref(cu_q, cu_k, True, scale)
    assert_grads_close(("dq", "dk", "dv"), (dq, dk, dv), lambda *a: fn(*a)[0], (q, k, v), dout)
    for name, buf, (_, idx) in zip(("dq", "dk", "dv"), (dq_buf, dk_buf, dv_buf), specs):
        assert _outside_untouched(buf, idx), f"{name}: written outside the view"


# Ring attention, two ranks emulated in one process the way ring-flash-attention's ring_flash_attn_forward /
# ring_flash_attn_backward run: rank r holds the query chunk r; at step s it has the k/v chunk (r - s) mod 2, which it
# attends with causal=True only on the diagonal (its own chunk) and skips when causal and the chunk lies ahead. The
# block outputs merge by their logsumexp; the backward hands every block the merged out and lse, adds the block dq
# into the rank's dq and the block dk/dv into the chunk's dk/dv (fp32).
RING_BOUNDS = (0, 113, SK)  # 239 keys and queries split 113 + 126


def _chunk(x, j):
    return x[:, RING_BOUNDS[j]:RING_BOUNDS[j + 1]].contiguous()


def _merge(out, lse, block_out, block_lse):
    """Running logsumexp merge: out (b, s, h, d) fp32, lse (b, h, s)."""
    if out is None:
        return block_out.float(), block_lse
    new_lse = torch.logaddexp(lse, block_lse)
    w = torch.exp(lse - new_lse).transpose(1, 2).unsqueeze(-1)
    w_block = torch.exp(block_lse - new_lse).transpose(1, 2).unsqueeze(-1)
    return out * w + block_out.float() * w_block, new_lse


def _ring_steps(rank, causal):
    for step in range(2):
        j = (rank - step) % 2
        if not causal or j <= rank:
            yield j, causal and j == rank


def _ring_forward(q, k, v, scale, causal):
    outs, lses = [], []
    for rank in range(2):
        q_r, out, lse = _chunk(q, rank), None, None
        for j, block_causal in _ring_steps(rank, causal):
            params = _ring_default_args(fai._flash_attn_forward)
            params.update(q=q_r, k=_chunk(k, j), v=_chunk(v, j), dropout_p=0.0, softmax_scale=scale,
                          causal=block_causal, window_size_left=-1, window_size_right=-1, alibi_slopes=None,
                          return_softmax=False)
            block_out, block_lse, _, _ = fai._flash_attn_forward(**params)
            out, lse = _merge(out, lse, block_out, block_lse)
        outs.append(out.to(q.dtype))
        lses.append(lse)
    return outs, lses


def _ring_backward(dout, q, k, v, outs, lses, scale, causal):
    dq, dk, dv = (torch.zeros(x.shape, dtype=torch.float32, device=x.device) for x in (q, k, v))
    for rank in range(2):
        q_r, dout_r = _chunk(q, rank), _chunk(dout, rank)
        r0, r1 = RING_BOUNDS[rank], RING_BOUNDS[rank + 1]
        block_dq = torch.empty_like(q_r)
        for j, block_causal in _ring_steps(rank, causal):
            k_j, v_j = _chunk(k, j), _chunk(v, j)
            block_dk, block_dv = torch.empty_like(k_j), torch.empty_like(v_j)
            params = _ring_default_args(fai._flash_attn_backward)
            params.update(dout=dout_r, q=q_r, k=k_j, v=v_j, out=outs[rank], softmax_lse=lses[rank], dq=block_dq,
                          dk=block_dk, dv=block_dv, dropout_p=0.0, softmax_scale=scale, causal=block_causal,
                          window_size_left=-1, window_size_right=-1, alibi_slopes=None, deterministic=False)
            fai._flash_attn_backward(**params)
            j0, j1 = RING_BOUNDS[j], RING_BOUNDS[j + 1]
            dq[:, r0:r1] += block_dq.float()
            dk[:, j0:j1] += block_dk.float()
            dv[:, j0:j1] += block_dv.float()
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


def _ring_case(dtype, seed, d):
    q, k, v, dout = attention_inputs((B, SK, H, d), (B, SK, HK, d), dtype, seed)
    return q.detach(), k.detach(), v.detach(), dout


@gpu
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_ring_attention_forward(dtype, causal):
    d = built_head_dim()
    require_kernel(dtype, d)
    scale = 1 / math.sqrt(d)
    q, k, v, _ = _ring_case(dtype, 901, d)
    outs, lses = _ring_forward(q, k, v, scale, causal)
    _assert_fwd(torch.cat(outs, 1), torch.cat(lses, 2), _dense_ref(causal, scale), q, k, v)


@gpu
@skip_in_dryrun  # the reference launcher's backward recomputes each block's own softmax, not the merged one
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_ring_attention_backward(dtype, causal):
    d = built_head_dim()
    require_kernel(dtype, d)
    scale = 1 / math.sqrt(d)
    q, k, v, dout = _ring_case(dtype, 902, d)
    outs, lses = _ring_forward(q, k, v, scale, causal)
    grads = _ring_backward(dout, q, k, v, outs, lses, scale, causal)
    fn = _dense_ref(causal, scale)
    assert_grads_close(("dq", "dk", "dv"), grads, lambda *a: fn(*a)[0], (q, k, v), dout)


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_negative_softcap_is_off(dtype):
    """softcap < 0 is no softcap (2.x): the same output and (deterministic) gradients as softcap=0, through the public
    function and the private op."""
    d = built_head_dim()
    require_kernel(dtype, d)
    q, k, v, dout = attention_inputs((B, SQ, 4, d), (B, SK, 2, d), dtype, 1001, q_scale=2)
    runs = []
    for softcap in (0.0, -1.0):
        out = flash_attn.flash_attn_func(q, k, v, causal=True, softcap=softcap, deterministic=True)
        runs.append((out, *torch.autograd.grad(out, (q, k, v), dout)))
    for name, a, b in zip(("out", "dq", "dk", "dv"), *runs):
        assert torch.equal(a, b), name
    qd, kd, vd = q.detach(), k.detach(), v.detach()
    off = fai._flash_attn_forward(qd, kd, vd, 0.0, 0.2, False, -1, -1, 0.0, None, False)
    neg = fai._flash_attn_forward(qd, kd, vd, 0.0, 0.2, False, -1, -1, -3.0, None, False)
    assert torch.equal(off[0], neg[0]) and torch.equal(off[1], neg[1])


@gpu
@skip_in_dryrun  # flash_attn_with_kvcache calls the extension directly
def test_gpu_negative_softcap_is_off_kvcache():
    d, dtype = built_head_dim(), built_dtype()
    require_kernel(dtype, d)
    q = _randn((2, 1, H, d), dtype, 1101)
    k_cache, v_cache = _randn((2, 64, HK, d), dtype, 1102), _randn((2, 64, HK, d), dtype, 1103)
    off = flash_attn.flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=40, causal=True, softcap=0.0)
    neg = flash_attn.flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=40, causal=True, softcap=-1.0)
    assert torch.equal(off, neg)
