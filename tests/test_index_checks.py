"""FLASH_ATTN_CHECK_INPUTS=1 (flash_attn._checks, index tensors): each bad value in cu_seqlens, max_seqlen,
seqused_k / leftpad_k, block_table, cache_batch_idx / cache_seqlens / cache_leftpad raises FlashAttnIndexError
naming the argument; good values pass; with the switch off nothing is read. CPU tensors: runs everywhere."""

import pytest
import torch

from flash_attn import _checks
from flash_attn._checks import FlashAttnIndexError

i32 = torch.int32


@pytest.fixture
def enabled(monkeypatch):
    monkeypatch.setenv(_checks.CHECK_INPUTS_ENV, "1")


def _varlen(total_q=140, total_k=160, d=8):
    return torch.empty(total_q, 2, d), torch.empty(total_k, 2, d)


def cu(*values):
    return torch.tensor(values, dtype=i32)


def test_off_by_default(monkeypatch):
    monkeypatch.delenv(_checks.CHECK_INPUTS_ENV, raising=False)
    assert not _checks.index_checks_enabled()
    q, k = _varlen()
    _checks.check_varlen_index_values(q, k, cu(0, 50, 10, 10**6), cu(0, 1, 2, 3), 0, 0)  # nothing read, no error
    monkeypatch.setenv(_checks.CHECK_INPUTS_ENV, "0")
    assert not _checks.index_checks_enabled()


def test_varlen_good(enabled):
    q, k = _varlen()
    _checks.check_varlen_index_values(q, k, cu(0, 40, 110, 140), cu(0, 50, 140, 160), 70, 90)
    _checks.check_varlen_index_values(q, k, cu(0, 40, 110, 120), cu(0, 50, 140, 150), 70, 90)  # rows left over


@pytest.mark.parametrize("which", ["cu_seqlens_q", "cu_seqlens_k"])
@pytest.mark.parametrize("values, match", [
    ((0, 40, 20, 140), r"non-decreasing, got {name}\[2\] = 20 < {name}\[1\] = 40"),
    ((0, 40, 110, 10**6), r"{name}\[-1\] = 1000000 runs past the packed tokens"),
    ((-5, 40, 110, 140), r"{name}\[0\] must be >= 0"),
])
def test_varlen_bad_cu_seqlens(enabled, which, values, match):
    q, k = _varlen(200, 200)
    good = cu(0, 40, 110, 140)
    args = (cu(*values), good) if which == "cu_seqlens_q" else (good, cu(*values))
    with pytest.raises(FlashAttnIndexError, match=match.format(name=which)):
        _checks.check_varlen_index_values(q, k, *args, 10**6, 10**6)


def test_varlen_understated_max_seqlen(enabled):
    q, k = _varlen()
    with pytest.raises(FlashAttnIndexError, match=r"max_seqlen_q = 69 is smaller than sequence 1's length 70"):
        _checks.check_varlen_index_values(q, k, cu(0, 40, 110, 140), cu(0, 50, 140, 160), 69, 90)
    with pytest.raises(FlashAttnIndexError, match=r"max_seqlen_k = 0 is smaller than sequence 1's length 90"):
        _checks.check_varlen_index_values(q, k, cu(0, 40, 110, 140), cu(0, 50, 140, 160), 70, 0)


def test_varlen_seqused_leftpad(enabled):
    q, k = _varlen()
    cq, ck = cu(0, 40, 110, 140), cu(0, 50, 140, 160)
    _checks.check_varlen_index_values(q, k, cq, ck, 70, 90, seqused_k=cu(50, 10, 0), leftpad_k=cu(3, 10, 0))
    with pytest.raises(FlashAttnIndexError, match=r"seqused_k\[1\] = 91 must be in \[0, 90\]"):
        _checks.check_varlen_index_values(q, k, cq, ck, 70, 90, seqused_k=cu(50, 91, 0))
    with pytest.raises(FlashAttnIndexError, match=r"seqused_k\[2\] = -1"):
        _checks.check_varlen_index_values(q, k, cq, ck, 70, 90, seqused_k=cu(50, 9, -1))
    with pytest.raises(FlashAttnIndexError, match=r"max_seqlen_k = 40 is smaller than seqused_k\[0\] = 50"):
        _checks.check_varlen_index_values(q, k, cq, ck, 70, 40, seqused_k=cu(50, 9, 0))
    with pytest.raises(FlashAttnIndexError, match=r"leftpad_k\[0\] = 51 must be in \[0, 50\]"):
        _checks.check_varlen_index_values(q, k, cq, ck, 70, 90, leftpad_k=cu(51, 0, 0))
    with pytest.raises(FlashAttnIndexError, match=r"leftpad_k\[1\] = -2"):
        _checks.check_varlen_index_values(q, k, cq, ck, 70, 90, leftpad_k=cu(0, -2, 0))


def test_varlen_paged_block_table(enabled):
    q = torch.empty(10, 2, 8)
    k_pages = torch.empty(12, 16, 2, 8)  # 12 pages of 16
    cq, ck = cu(0, 5, 10), cu(0, 40, 17)
    ck = cu(0, 40, 57)  # sequence 0: 40 keys (3 pages), sequence 1: 17 keys (2 pages)
    table = torch.tensor([[0, 5, 11, -1], [3, 7, -1, 10**6]], dtype=i32)  # -1 / 10**6 only where unused
    _checks.check_varlen_index_values(q, k_pages, cq, ck, 5, 40, block_table=table)
    bad = table.clone()
    bad[0, 2] = 12
    with pytest.raises(FlashAttnIndexError, match=r"block_table\[0, 2\] = 12 is not a page of k \(k.shape\[0\] = 12"):
        _checks.check_varlen_index_values(q, k_pages, cq, ck, 5, 40, block_table=bad)
    bad = table.clone()
    bad[1, 1] = -1
    with pytest.raises(FlashAttnIndexError, match=r"block_table\[1, 1\] = -1"):
        _checks.check_varlen_index_values(q, k_pages, cq, ck, 5, 40, block_table=bad)
    with pytest.raises(FlashAttnIndexError, match="cu_seqlens_k lengths"):  # 65 keys > 4 pages of 16
        _checks.check_varlen_index_values(q, k_pages, cq, cu(0, 65, 70), 5, 65, block_table=table)


def test_kvcache(enabled):
    k_cache = torch.empty(3, 200, 2, 8)
    seqlens = cu(50, 120, 199)
    _checks.check_kvcache_index_values(k_cache, seqlens, 1, cache_batch_idx=cu(2, 1, 0), cache_leftpad=cu(0, 121, 5))
    with pytest.raises(FlashAttnIndexError, match=r"cache_batch_idx\[1\] = 3 must be in \[0, 2\]"):
        _checks.check_kvcache_index_values(k_cache, seqlens, 1, cache_batch_idx=cu(2, 3, 0))
    with pytest.raises(FlashAttnIndexError, match=r"cache_batch_idx\[0\] = -1"):
        _checks.check_kvcache_index_values(k_cache, seqlens, 1, cache_batch_idx=cu(-1, 0, 0))
    with pytest.raises(FlashAttnIndexError, match=r"cache_leftpad\[1\] = 122 must be in \[0, 121\]"):
        _checks.check_kvcache_index_values(k_cache, seqlens, 1, cache_leftpad=cu(0, 122, 5))
    with pytest.raises(FlashAttnIndexError, match=r"cache_seqlens\[2\] = 199 must be in \[0, 198\]"):
        _checks.check_kvcache_index_values(k_cache, seqlens, 2)


def test_kvcache_paged(enabled):
    k_cache = torch.empty(6, 256, 2, 8)  # 6 pages of 256
    table = torch.tensor([[0, 5], [3, -1], [1, 2]], dtype=i32)
    _checks.check_kvcache_index_values(k_cache, cu(300, 100, 511), 1, block_table=table)
    with pytest.raises(FlashAttnIndexError, match=r"block_table\[1, 1\] = -1 is not a page of k_cache"):
        _checks.check_kvcache_index_values(k_cache, cu(300, 256, 511), 1, block_table=table)  # 257 keys: 2 pages
    with pytest.raises(FlashAttnIndexError, match=r"block_table\[1, 1\]"):  # no cache_seqlens: the full cache
        _checks.check_kvcache_index_values(k_cache, None, 0, block_table=table)


def test_rotary(enabled):
    x = torch.empty(60, 2, 8)
    _checks.check_rotary_index_values(x, cu(0, 50, 60), 50)
    with pytest.raises(FlashAttnIndexError, match=r"cu_seqlens must be non-decreasing"):
        _checks.check_rotary_index_values(x, cu(0, 50, 20), 50)
    with pytest.raises(FlashAttnIndexError, match=r"max_seqlen = 8 is smaller than sequence 0's length 50"):
        _checks.check_rotary_index_values(x, cu(0, 50, 60), 8)


def test_meta_tensors_are_not_read(enabled):
    q, k = torch.empty(140, 2, 8, device="meta"), torch.empty(160, 2, 8, device="meta")
    c = torch.empty(4, dtype=i32, device="meta")
    _checks.check_varlen_index_values(q, k, c, c, 1, 1)  # no values to read while tracing


def test_index_error_is_a_value_error():
    assert issubclass(FlashAttnIndexError, ValueError) and issubclass(FlashAttnIndexError, RuntimeError)
