"""Helpers to move between padded (batch, seqlen, ...) and unpadded (total_tokens, ...) layouts.

Same return conventions as flash-attn 2.8 (``unpad_input`` returns a 5-tuple). All gathers/scatters are
autograd Functions along the first axis.
"""

import torch
import torch.nn.functional as F


def _flatten_rest(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


class IndexFirstAxis(torch.autograd.Function):
    """out = input[indices] along dim 0; backward scatters (accumulates) into zeros."""

    @staticmethod
    def forward(ctx, input, indices):
        ctx.save_for_backward(indices)
        ctx.first_axis_dim, other_shape = input.shape[0], input.shape[1:]
        out = torch.index_select(_flatten_rest(input), 0, indices)
        return out.reshape(-1, *other_shape)

    @staticmethod
    def backward(ctx, grad_output):
        (indices,) = ctx.saved_tensors
        other_shape = grad_output.shape[1:]
        g = _flatten_rest(grad_output)
        grad_input = g.new_zeros((ctx.first_axis_dim, g.shape[1]))
        grad_input.index_add_(0, indices, g)
        return grad_input.reshape(ctx.first_axis_dim, *other_shape), None


index_first_axis = IndexFirstAxis.apply


class IndexPutFirstAxis(torch.autograd.Function):
    """out = zeros(first_axis_dim, ...); out[indices] = values; backward gathers."""

    @staticmethod
    def forward(ctx, values, indices, first_axis_dim):
        ctx.save_for_backward(indices)
        assert indices.ndim == 1
        out = values.new_zeros((first_axis_dim, *values.shape[1:]))
        out[indices] = values
        return out

    @staticmethod
    def backward(ctx, grad_output):
        (indices,) = ctx.saved_tensors
        return grad_output[indices], None, None


index_put_first_axis = IndexPutFirstAxis.apply


class IndexFirstAxisResidual(torch.autograd.Function):
    """Returns (input[indices], input.detach()); both outputs' gradients flow back into input."""

    @staticmethod
    def forward(ctx, input, indices):
        ctx.save_for_backward(indices)
        ctx.first_axis_dim = input.shape[0]
        return input[indices], input.detach()

    @staticmethod
    def backward(ctx, grad_output, grad_residual):
        (indices,) = ctx.saved_tensors
        assert grad_residual.shape[1:] == grad_output.shape[1:]
        grad_input = grad_residual.clone()
        grad_input.index_add_(0, indices, grad_output.to(grad_input.dtype))
        return grad_input, None


index_first_axis_residual = IndexFirstAxisResidual.apply


def _cu_seqlens(seqlens: torch.Tensor) -> torch.Tensor:
    return F.pad(torch.cumsum(seqlens, dim=0, dtype=torch.int32), (1, 0))


def unpad_input(hidden_states, attention_mask, unused_mask=None):
    """
    hidden_states: (batch, seqlen, ...); attention_mask: (batch, seqlen), 1/True = valid token;
    unused_mask: optional (batch, seqlen), tokens kept in the output but not counted as used.
    Returns (hidden_states (total_nnz, ...), indices (total_nnz,) int64 into the flattened batch*seqlen,
    cu_seqlens (batch + 1,) int32, max_seqlen_in_batch (int), seqused (batch,) int32 = tokens per row
    selected by attention_mask alone).
    """
    all_masks = attention_mask if unused_mask is None else (attention_mask.bool() | unused_mask.bool())
    seqlens_in_batch = all_masks.sum(dim=-1, dtype=torch.int32)
    used_seqlens_in_batch = attention_mask.sum(dim=-1, dtype=torch.int32)
    indices = torch.nonzero(all_masks.flatten(), as_tuple=False).flatten()
    max_seqlen_in_batch = int(seqlens_in_batch.max().item()) if seqlens_in_batch.numel() else 0
    cu_seqlens = _cu_seqlens(seqlens_in_batch)
    flat = hidden_states.reshape(-1, *hidden_states.shape[2:])
    return (
        index_first_axis(flat, indices),
        indices,
        cu_seqlens,
        max_seqlen_in_batch,
        used_seqlens_in_batch,
    )


def unpad_input_for_concatenated_sequences(hidden_states, attention_mask_in_length):
    """
    Unpad rows that hold several sequences back to back (packed training). attention_mask_in_length
    (batch, seqlen) lists, per row, the lengths of its sequences followed by zeros, e.g. [[2, 3, 0, 0, 0]]
    means tokens 0-1 form one sequence and tokens 2-4 another.
    Returns (hidden_states (total_nnz, ...), indices, cu_seqlens (n_sequences + 1,) int32, max_seqlen_in_batch).
    """
    lengths = attention_mask_in_length.sum(dim=-1)
    seqlen = attention_mask_in_length.shape[-1]
    positions = torch.arange(seqlen, device=lengths.device, dtype=lengths.dtype)
    token_mask = positions.unsqueeze(0) < lengths.unsqueeze(1)
    flat_lengths = attention_mask_in_length.flatten()
    seqlens_in_batch = flat_lengths[flat_lengths != 0]
    indices = torch.nonzero(token_mask.flatten(), as_tuple=False).flatten()
    max_seqlen_in_batch = int(seqlens_in_batch.max().item()) if seqlens_in_batch.numel() else 0
    cu_seqlens = _cu_seqlens(seqlens_in_batch)
    flat = hidden_states.reshape(-1, *hidden_states.shape[2:])
    return index_first_axis(flat, indices), indices, cu_seqlens, max_seqlen_in_batch


def pad_input(hidden_states, indices, batch, seqlen):
    """
    hidden_states: (total_nnz, ...) rows selected by ``indices`` from a flattened (batch * seqlen) layout.
    Returns (batch, seqlen, ...) with zeros in the unselected positions.
    """
    output = index_put_first_axis(hidden_states, indices, batch * seqlen)
    return output.reshape(batch, seqlen, *hidden_states.shape[1:])
