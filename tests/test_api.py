"""Public surface: exact 2.x signatures (transformers inspects them), version, metadata, module names."""

import importlib.metadata
import inspect
import os

import pytest
import torch

import flash_attn
from flash_attn import flash_attn_interface as fai

T = [("dropout_p", 0.0), ("softmax_scale", None), ("causal", False), ("window_size", (-1, -1)), ("softcap", 0.0),
     ("alibi_slopes", None), ("deterministic", False), ("return_attn_probs", False)]
_ = inspect.Parameter.empty

EXPECTED = {
    "flash_attn_func": [("q", _), ("k", _), ("v", _), *T],
    "flash_attn_qkvpacked_func": [("qkv", _), *T],
    "flash_attn_kvpacked_func": [("q", _), ("kv", _), *T],
    "flash_attn_varlen_func": [("q", _), ("k", _), ("v", _), ("cu_seqlens_q", _), ("cu_seqlens_k", _),
                               ("max_seqlen_q", _), ("max_seqlen_k", _), *T, ("block_table", None)],
    "flash_attn_varlen_qkvpacked_func": [("qkv", _), ("cu_seqlens", _), ("max_seqlen", _), *T],
    "flash_attn_varlen_kvpacked_func": [("q", _), ("kv", _), ("cu_seqlens_q", _), ("cu_seqlens_k", _),
                                        ("max_seqlen_q", _), ("max_seqlen_k", _), *T],
    "flash_attn_with_kvcache": [("q", _), ("k_cache", _), ("v_cache", _), ("k", None), ("v", None),
                                ("rotary_cos", None), ("rotary_sin", None), ("cache_seqlens", None),
                                ("cache_batch_idx", None), ("cache_leftpad", None), ("block_table", None),
                                ("softmax_scale", None), ("causal", False), ("window_size", (-1, -1)),
                                ("softcap", 0.0), ("rotary_interleaved", True), ("alibi_slopes", None),
                                ("num_splits", 0), ("return_softmax_lse", False)],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_signature(name):
    fn = getattr(flash_attn, name)
    assert fn is getattr(fai, name)
    params = list(inspect.signature(fn).parameters.values())
    assert [(p.name, p.default) for p in params] == EXPECTED[name]
    assert all(p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)


def test_hf_feature_detection_parameters():
    # transformers enables these features by looking for the names in flash_attn_varlen_func's signature
    params = inspect.signature(flash_attn.flash_attn_varlen_func).parameters
    for name in ["dropout_p", "window_size", "deterministic", "softcap", "max_seqlen_q", "max_seqlen_k"]:
        assert name in params
    for name in ["s_aux", "learnable_sink"]:  # would make HF pass attention sinks
        assert name not in params


def test_version():
    assert flash_attn.__version__ == "2.8.4"
    major, minor = (int(x) for x in flash_attn.__version__.split(".")[:2])
    assert (major, minor) >= (2, 3)  # transformers needs >= 2.3.3


def test_distribution_metadata():
    try:
        version = importlib.metadata.version("flash_attn")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("flash_attn is not installed as a distribution (source checkout)")
    assert version == flash_attn.__version__
    assert importlib.metadata.version("flash-attn") == version  # the name transformers asks for


def test_namespace_path():
    # pkgutil.extend_path keeps __path__ a list that other flash_attn.* portions (FA4's flash_attn.cute) join
    assert isinstance(flash_attn.__path__, list)
    assert any(os.path.isfile(os.path.join(p, "flash_attn_interface.py")) for p in flash_attn.__path__)


def test_exports():
    names = {"flash_attn_func", "flash_attn_qkvpacked_func", "flash_attn_kvpacked_func", "flash_attn_varlen_func",
             "flash_attn_varlen_qkvpacked_func", "flash_attn_varlen_kvpacked_func", "flash_attn_with_kvcache"}
    assert names <= set(dir(flash_attn))
    for name in ["flash_attn_gpu", "USE_TRITON_ROCM", "_get_block_size_n", "_flash_attn_forward",
                 "_flash_attn_varlen_forward", "maybe_contiguous", "round_multiple"]:
        assert hasattr(fai, name), name
    assert fai._flash_attn_forward._opoverload is torch.ops.flash_attn._flash_attn_forward.default
    assert fai._flash_attn_varlen_forward._opoverload is torch.ops.flash_attn._flash_attn_varlen_forward.default
    assert fai._wrapped_flash_attn_forward is torch.ops.flash_attn._flash_attn_forward
    assert fai._wrapped_flash_attn_varlen_forward is torch.ops.flash_attn._flash_attn_varlen_forward
    assert isinstance(fai.USE_TRITON_ROCM, bool)


def test_helpers():
    assert fai.round_multiple(1, 128) == 128 and fai.round_multiple(256, 128) == 256 and fai.round_multiple(0, 8) == 0
    x = torch.randn(3, 4)
    assert fai.maybe_contiguous(x) is x
    assert fai.maybe_contiguous(None) is None
    y = x.t()
    assert fai.maybe_contiguous(y).stride(-1) == 1 and torch.equal(fai.maybe_contiguous(y), y)
    z = torch.randn(4, 3, 8)[:, :, :5].transpose(0, 1)  # strided but last dim contiguous: no copy
    assert fai.maybe_contiguous(z) is z
    assert fai._get_block_size_n(None, 128, False, True) in (32, 64, 128)


def test_kvcache_checks_before_the_device():
    q = torch.empty(1, 1, 2, 64, dtype=torch.float16)
    with pytest.raises(ValueError, match="^q must be a CUDA tensor"):
        flash_attn.flash_attn_with_kvcache(q, q, q)


def test_bert_padding_imports():
    from flash_attn.bert_padding import pad_input, unpad_input  # noqa: F401  (what transformers imports)


def test_transformers_finds_the_distribution():
    """transformers maps the top-level package to its distributions through metadata (top_level.txt, kept by
    regular and editable installs) and needs "flash-attn" among them."""
    try:
        importlib.metadata.distribution("flash-attn")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("flash_attn is not installed as a distribution (running from the source tree)")
    dists = importlib.metadata.packages_distributions().get("flash_attn", [])
    assert "flash-attn" in [d.replace("_", "-") for d in dists], dists
