"""Custom ops: schemas, fake (meta) implementations and opcheck, all on CPU."""

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
