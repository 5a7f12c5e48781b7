"""Custom ops: schemas, fake (meta) implementations and opcheck, all on CPU."""

import contextlib
import itertools

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import flash_attn  # noqa: F401  (registers the ops)

fwd_op = torch.ops.flash_attn._flash_attn_forward
varlen_op = torch.ops.flash_attn._flash_attn_varlen_forward


def _dense(dtype, device, b=2, sq=5, sk=7, h=4, hk=2, d=64):
    return (torch.randn(b, sq, h, d, device=device).to(dtype), torch.randn(b, sk, hk, d, device=device).to(dtype),
            torch.randn(b, sk, hk, d, device=device).to(dtype))


def _varlen(dtype, device, seqlens_q=(3, 0, 5), seqlens_k=(4, 2, 0), h=4, hk=2, d=32):
    tq, tk = sum(seqlens_q), sum(seqlens_k)
    q = torch.randn(tq, h, d, device=device).to(dtype)
    k = torch.randn(tk, hk, d, device=device).to(dtype)
    v = torch.randn(tk, hk, d, device=device).to(dtype)
    cu_q = torch.tensor(list(itertools.accumulate(seqlens_q, initial=0)), dtype=torch.int32, device=device)
    cu_k = torch.tensor(list(itertools.accumulate(seqlens_k, initial=0)), dtype=torch.int32, device=device)
    return q, k, v, cu_q, cu_k, max(seqlens_q), max(seqlens_k)


def _check_dense_outputs(res, q):
    out, lse, s_dmask, rng_state = res
    b, sq, h, _ = q.shape
    assert out.shape == q.shape and out.dtype == q.dtype
    assert lse.shape == (b, h, sq) and lse.dtype == torch.float32
    assert s_dmask.shape == (0,) and s_dmask.dtype == q.dtype
    assert rng_state.shape == (2,) and rng_state.dtype == torch.int64


def test_schemas():
    s = str(fwd_op.default._schema)
    assert s.startswith("flash_attn::_flash_attn_forward(Tensor q, Tensor k, Tensor v, float dropout_p, "
                        "float softmax_scale, bool causal, SymInt window_size_left, SymInt window_size_right, "
                        "float softcap, Tensor? alibi_slopes, bool return_softmax)")
    s = str(varlen_op.default._schema)
    for piece in ["Tensor cu_seqlens_q", "Tensor cu_seqlens_k", "SymInt max_seqlen_q", "SymInt max_seqlen_k",
                  "SymInt window_size_left=-1", "SymInt window_size_right=-1", "float softcap=0.",
                  "Tensor? alibi_slopes=None", "bool return_softmax=False", "Tensor? block_table=None",
                  "Tensor? leftpad_k=None", "Tensor? seqused_k=None", "bool zero_tensors=False"]:
        assert piece in s, (piece, s)
    assert "!" not in s and "!" not in str(fwd_op.default._schema)  # no mutation, no aliasing


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fake_shapes_dense(dtype):
    with FakeTensorMode():
        q, k, v = _dense(dtype, "cpu")
        res = fwd_op(q, k, v, 0.0, 0.125, True, -1, -1, 0.0, None, False)
    _check_dense_outputs(res, q)


@pytest.mark.parametrize("dropout_p,expected", [(0.0, (0,)), (0.1, (2, 4, 128, 256))])
def test_meta_s_dmask_shape(dropout_p, expected):
    """S_dmask only exists with dropout, as the binding makes it: return_softmax alone gives the empty (0,)."""
    q, k, v = _dense(torch.bfloat16, "meta", b=2, sq=5, sk=129, h=4, hk=2, d=64)
    assert fwd_op(q, k, v, dropout_p, 0.1, False, -1, -1, 0.0, None, True)[2].shape == expected
    qv, kv, vv, cu_q, cu_k, mq, mk = _varlen(torch.bfloat16, "meta")
    s_dmask = varlen_op(qv, kv, vv, cu_q, cu_k, mq, mk, dropout_p, 0.2, False, -1, -1, 0.0, None, True)[2]
    assert s_dmask.shape == ((0,) if dropout_p == 0 else (3, 4, 128, 128))


def test_meta_shapes_dense():
    q, k, v = _dense(torch.float16, "meta", b=3, sq=17, sk=1, h=8, hk=1, d=256)
    res = fwd_op(q, k, v, 0.0, 0.1, False, -1, -1, 0.0, None, False)
    _check_dense_outputs(res, q)
    assert res[0].device.type == "meta"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fake_shapes_varlen(dtype):
    with FakeTensorMode():
        q, k, v, cu_q, cu_k, mq, mk = _varlen(dtype, "cpu")
        out, lse, s_dmask, rng_state = varlen_op(q, k, v, cu_q, cu_k, mq, mk, 0.0, 0.2, False)
    assert out.shape == q.shape and out.dtype == dtype
    assert lse.shape == (q.shape[1], q.shape[0]) and lse.dtype == torch.float32
    assert s_dmask.shape == (0,) and s_dmask.dtype == dtype
    assert rng_state.shape == (2,) and rng_state.dtype == torch.int64


def test_meta_shapes_varlen():
    q, k, v, cu_q, cu_k, mq, mk = _varlen(torch.bfloat16, "meta")
    out, lse, _, _ = varlen_op(q, k, v, cu_q, cu_k, mq, mk, 0.0, 0.2, True, -1, -1, 0.0, None, False)
    assert out.shape == q.shape and lse.shape == (4, 8)


def test_opcheck_dense(ref_launcher):
    q, k, v = _dense(torch.bfloat16, "cpu")
    torch.library.opcheck(fwd_op.default, (q, k, v, 0.0, 0.125, True, -1, -1, 0.0, None, False))
    qt = torch.randn(2, 4, 5, 64).to(torch.float16).transpose(1, 2)  # strided q: out follows empty_like(q)
    torch.library.opcheck(fwd_op.default, (qt, *_dense(torch.float16, "cpu")[1:], 0.0, 0.125, False, -1, -1, 0.0,
                                           None, False))


def test_opcheck_varlen(ref_launcher):
    q, k, v, cu_q, cu_k, mq, mk = _varlen(torch.float16, "cpu")
    torch.library.opcheck(varlen_op.default, (q, k, v, cu_q, cu_k, mq, mk, 0.0, 0.2, True))


# ----------------------------------------------------------------------------------------------------------
# The ops the public functions call: flash_attn::fwd / varlen_fwd / bwd / varlen_bwd (the private ops' schemas,
# no validation), fwd_kvcache, apply_rotary and apply_rotary_.
# ----------------------------------------------------------------------------------------------------------

kvcache_op = torch.ops.flash_attn.fwd_kvcache
rotary_op = torch.ops.flash_attn.apply_rotary
rotary_inplace_op = torch.ops.flash_attn.apply_rotary_


@pytest.mark.parametrize("name", ["fwd", "varlen_fwd", "bwd", "varlen_bwd"])
def test_unchecked_ops_share_the_private_schemas(name):
    private = {"fwd": "_flash_attn_forward", "varlen_fwd": "_flash_attn_varlen_forward", "bwd": "_flash_attn_backward",
               "varlen_bwd": "_flash_attn_varlen_backward"}[name]
    ours = str(getattr(torch.ops.flash_attn, name).default._schema)
    theirs = str(getattr(torch.ops.flash_attn, private).default._schema)
    assert ours == theirs.replace(f"flash_attn::{private}(", f"flash_attn::{name}(", 1)


def test_new_op_schemas():
    s = str(kvcache_op.default._schema)
    assert s == ("flash_attn::fwd_kvcache(Tensor q, Tensor(a1!) k_cache, Tensor(a2!) v_cache, Tensor? k, Tensor? v, "
                 "Tensor? cache_seqlens, Tensor? rotary_cos, Tensor? rotary_sin, Tensor? cache_batch_idx, "
                 "Tensor? cache_leftpad, Tensor? block_table, Tensor? alibi_slopes, float softmax_scale, bool causal, "
                 "SymInt window_size_left, SymInt window_size_right, float softcap, bool rotary_interleaved, "
                 "SymInt num_splits) -> (Tensor, Tensor)")  # writes only the caches (the append)
    tail = ("Tensor cos, Tensor sin, Tensor? seqlen_offsets, SymInt seqlen_offset, Tensor? cu_seqlens, "
            "SymInt max_seqlen, bool interleaved, bool conjugate)")
    assert str(rotary_op.default._schema) == f"flash_attn::apply_rotary(Tensor x, {tail} -> Tensor"
    assert str(rotary_inplace_op.default._schema) == f"flash_attn::apply_rotary_(Tensor(a0!) x, {tail} -> ()"


def _kvcache_args(device, dtype=torch.bfloat16, b=2, sq=1, h=8, hk=2, d=64, cap=48, new=1, rotary=True,
                  optional=False):
    """fwd_kvcache's arguments: caches (b, cap, hk, d), `new` appended tokens, rotary tables, and with optional the
    per-batch index tensors and ALiBi slopes too."""
    g = torch.Generator().manual_seed(0)

    def r(*shape, dt=dtype):
        return torch.randn(*shape, generator=g).to(device=device, dtype=dt)

    k = v = cos = sin = None
    if new:
        k, v = r(b, new, hk, d), r(b, new, hk, d)
    if rotary and new:
        cos, sin = r(cap, 16), r(cap, 16)
    seqlens = torch.tensor([5, 30][:b], dtype=torch.int32, device=device)
    batch_idx = leftpad = slopes = None
    if optional:
        batch_idx = torch.tensor([1, 0][:b], dtype=torch.int32, device=device)
        leftpad = torch.tensor([2, 0][:b], dtype=torch.int32, device=device)
        slopes = r(h, dt=torch.float32).abs()
    return (r(b, sq, h, d), r(b, cap, hk, d), r(b, cap, hk, d), k, v, seqlens, cos, sin, batch_idx, leftpad, None,
            slopes, d ** -0.5, True, -1, -1, 0.0, True, 0)


@pytest.mark.parametrize("optional", [False, True])
@pytest.mark.parametrize("new", [0, 3])
def test_fake_kvcache(new, optional):
    with FakeTensorMode():
        args = _kvcache_args("cpu", sq=3, new=new, rotary=bool(new), optional=optional)
        out, lse = kvcache_op(*args)
    q = args[0]
    assert out.shape == q.shape and out.dtype == q.dtype and out.stride() == q.stride()
    assert lse.shape == (2, 8, 3) and lse.dtype == torch.float32


def test_meta_kvcache():
    args = _kvcache_args("meta", dtype=torch.float16, b=2, sq=1, h=4, hk=4, d=128, cap=256)
    out, lse = kvcache_op(*args)
    assert out.device.type == "meta" and out.shape == (2, 1, 4, 128) and out.dtype == torch.float16
    assert lse.shape == (2, 4, 1)


@pytest.mark.parametrize("varlen", [False, True])
def test_fake_and_meta_rotary(varlen):
    for mode, device in ((FakeTensorMode, "cpu"), (None, "meta")):
        with mode() if mode else contextlib.nullcontext():
            x = torch.empty((10, 4, 64) if varlen else (2, 5, 4, 64), dtype=torch.float16, device=device)
            cos = torch.empty(16, 16, dtype=torch.float16, device=device)
            cu = torch.tensor([0, 3, 10], dtype=torch.int32, device=device) if varlen else None
            xt = x.transpose(-2, -3)  # strided input: the result is contiguous
            out = rotary_op(xt, cos, cos, None, 2, cu, 7 if varlen else 0, False, False)
            assert rotary_inplace_op(x, cos, cos, None, 2, cu, 7, True, True) is None
        assert out.shape == xt.shape and out.dtype == x.dtype and out.is_contiguous()


def _rotary_args(inplace, varlen, interleaved, offsets):
    g = torch.Generator().manual_seed(1)
    x = torch.randn((9, 4, 64) if varlen else (2, 6, 4, 64), generator=g).to(torch.bfloat16)
    angle = torch.randn(12, 16, generator=g)
    cos, sin = angle.cos().to(torch.bfloat16), angle.sin().to(torch.bfloat16)
    cu = torch.tensor([0, 4, 9], dtype=torch.int32) if varlen else None
    seqlen_offsets = torch.tensor([0, 7], dtype=torch.int32) if offsets else None
    if not inplace:
        x = x.transpose(-2, -3)
    return (x, cos, sin, seqlen_offsets, 3, cu, 5 if varlen else 0, interleaved, not inplace)


def test_opcheck_kvcache(ref_extension):
    """Every opcheck utility, with the real body routed to the reference extension (torch.library.opcheck runs the
    op for real): the schema's mutations, the fake against the real outputs, autograd registration, AOT dispatch."""
    for new, rotary, optional in [(1, True, False), (2, False, True), (0, False, False)]:
        torch.library.opcheck(kvcache_op.default, _kvcache_args("cpu", new=new, rotary=rotary, optional=optional))
    assert ref_extension.calls and ref_extension.calls[-1][0] == "fwd_kvcache"


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("varlen", [False, True])
def test_opcheck_rotary(ref_extension, inplace, varlen):
    for interleaved, offsets in [(False, False), (True, True)]:
        op = rotary_inplace_op if inplace else rotary_op
        torch.library.opcheck(op.default, _rotary_args(inplace, varlen, interleaved, offsets))


def test_opcheck_unchecked_attention_ops(ref_extension):
    q, k, v = _dense(torch.bfloat16, "cpu")
    torch.library.opcheck(torch.ops.flash_attn.fwd.default, (q, k, v, 0.0, 0.125, True, -1, -1, 0.0, None, False))
    qv, kv, vv, cu_q, cu_k, mq, mk = _varlen(torch.float16, "cpu")
    torch.library.opcheck(torch.ops.flash_attn.varlen_fwd.default, (qv, kv, vv, cu_q, cu_k, mq, mk, 0.0, 0.2, True))
    out, lse, _, rng = torch.ops.flash_attn.fwd(q, k, v, 0.0, 0.125, True, -1, -1, 0.0, None, False)
    grads = (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v))
    torch.library.opcheck(torch.ops.flash_attn.bwd.default, (torch.randn_like(q), q, k, v, out, lse, *grads, 0.0,
                                                             0.125, True, -1, -1, 0.0, None, False, rng))


def test_unchecked_ops_do_not_validate(ref_extension):
    """The public functions' ops trust their caller: an unpadded head dim, which the private op rejects, reaches the
    launcher (and the binding, whose checks are the last guard)."""
    q, k, v = _dense(torch.bfloat16, "cpu", d=60)
    with pytest.raises(RuntimeError, match="head dim must be a multiple of 8 at the op level"):
        fwd_op(q, k, v, 0.0, 0.125, False, -1, -1, 0.0, None, False)
    with pytest.raises(AssertionError, match="the op must see a padded head dim"):  # the reference launcher's
        torch.ops.flash_attn.fwd(q, k, v, 0.0, 0.125, False, -1, -1, 0.0, None, False)
