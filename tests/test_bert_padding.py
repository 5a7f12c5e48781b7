"""flash_attn.bert_padding on CPU: round trips, 2.8 return conventions, gradients."""

import pytest
import torch

from flash_attn.bert_padding import (
    index_first_axis,
    index_first_axis_residual,
    index_put_first_axis,
    pad_input,
    unpad_input,
    unpad_input_for_concatenated_sequences,
)


def _mask(lengths, seqlen, left=False):
    m = torch.zeros(len(lengths), seqlen, dtype=torch.bool)
    for i, n in enumerate(lengths):
        if left:
            m[i, seqlen - n:] = True
        else:
            m[i, :n] = True
    return m


@pytest.mark.parametrize("left", [False, True])
@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.int64, torch.int32])
def test_unpad_pad_round_trip(left, mask_dtype):
    torch.manual_seed(0)
    b, s = 4, 7
    lengths = [7, 3, 0, 5]
    x = torch.randn(b, s, 2, 3)
    mask = _mask(lengths, s, left).to(mask_dtype)
    result = unpad_input(x, mask)
    assert len(result) == 5
    xu, indices, cu_seqlens, max_seqlen, seqused = result
    assert xu.shape == (sum(lengths), 2, 3)
    assert indices.dtype == torch.int64 and indices.shape == (sum(lengths),)
    assert cu_seqlens.dtype == torch.int32 and cu_seqlens.tolist() == [0, 7, 10, 10, 15]
    assert isinstance(max_seqlen, int) and max_seqlen == 7
    assert seqused.dtype == torch.int32 and seqused.tolist() == lengths
    torch.testing.assert_close(xu, x[mask.bool()])
    y = pad_input(xu, indices, b, s)
    assert y.shape == x.shape
    torch.testing.assert_close(y, x * mask.bool()[..., None, None])


def test_unpad_with_unused_mask():
    b, s = 2, 6
    x = torch.arange(b * s, dtype=torch.float32).reshape(b, s, 1)
    attn = _mask([2, 3], s)
    unused = torch.zeros(b, s, dtype=torch.bool)
    unused[0, 2:4] = True  # kept (e.g. padding used for alignment) but not counted as used
    xu, indices, cu_seqlens, max_seqlen, seqused = unpad_input(x, attn, unused)
    assert indices.tolist() == [0, 1, 2, 3, 6, 7, 8]
    assert cu_seqlens.tolist() == [0, 4, 7]
    assert max_seqlen == 4
    assert seqused.tolist() == [2, 3]
    assert xu.flatten().tolist() == [0, 1, 2, 3, 6, 7, 8]


def test_unpad_for_concatenated_sequences():
    x = torch.arange(2 * 6, dtype=torch.float32).reshape(2, 6, 1)
    lengths = torch.tensor([[2, 3, 0, 0, 0, 0], [4, 0, 0, 0, 0, 0]], dtype=torch.int32)
    xu, indices, cu_seqlens, max_seqlen = unpad_input_for_concatenated_sequences(x, lengths)
    assert indices.tolist() == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert cu_seqlens.dtype == torch.int32 and cu_seqlens.tolist() == [0, 2, 5, 9]
    assert max_seqlen == 4
    assert xu.flatten().tolist() == [0, 1, 2, 3, 4, 6, 7, 8, 9]


def test_index_first_axis_gradients():
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    idx = torch.tensor([4, 0, 2])
    torch.autograd.gradcheck(lambda t: index_first_axis(t, idx), (x,))
    y = index_first_axis(x, idx)
    y.sum().backward()
    assert x.grad[:, 0].tolist() == [1, 0, 1, 0, 1, 0]


def test_index_put_first_axis_gradients():
    vals = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)
    idx = torch.tensor([5, 1, 3])
    out = index_put_first_axis(vals, idx, 7)
    assert out.shape == (7, 2, 2)
    assert torch.all(out[[0, 2, 4, 6]] == 0)
    torch.testing.assert_close(out[idx], vals)
    torch.autograd.gradcheck(lambda t: index_put_first_axis(t, idx, 7), (vals,))


def test_index_first_axis_residual():
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    idx = torch.tensor([3, 1])
    rows, residual = index_first_axis_residual(x, idx)
    torch.testing.assert_close(rows, x[idx])
    assert not residual.requires_grad or residual.grad_fn is not None
    torch.autograd.gradcheck(lambda t: sum(o.sum() * (i + 1) for i, o in enumerate(index_first_axis_residual(t, idx))),
                             (x,))


def test_pad_unpad_gradients_flow():
    x = torch.randn(3, 5, 4, requires_grad=True)
    mask = _mask([5, 2, 4], 5)
    xu, indices, *_ = unpad_input(x, mask)
    y = pad_input(xu * 2, indices, 3, 5)
    y.sum().backward()
    torch.testing.assert_close(x.grad, 2 * mask[..., None].float().expand(3, 5, 4))
