# Namespace-friendly: lets a separately installed flash_attn.cute (FA4) live beside this package.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)

__version__ = "2.8.4"

from flash_attn.flash_attn_interface import (  # noqa: E402
    flash_attn_func,
    flash_attn_kvpacked_func,
    flash_attn_qkvpacked_func,
    flash_attn_varlen_func,
    flash_attn_varlen_kvpacked_func,
    flash_attn_varlen_qkvpacked_func,
    flash_attn_with_kvcache,
)
