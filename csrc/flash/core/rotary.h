// Rotary position embedding of one pair of channels, shared by flash_attn_with_kvcache's append kernel and
// flash_attn.layers.rotary's kernel. Pair j of a row is channels (2j, 2j + 1) (interleaved, GPT-J) or
// (j, j + rotary_dim / 2) (GPT-NeoX) for j < rotary_dim / 2, rotated by the angle of table column j at the row's
// position: x * cos + rotate(x) * sin in fp32; past rotary_dim, pair j is channels (2j, 2j + 1), copied.
#pragma once

#include <cstdint>

#include <cutlass/cutlass.h>

namespace flash {

template <class Element>
struct RotaryTable {
  Element const* cos = nullptr;  // (seqlen_ro, rotary_dim / 2), rows row_stride apart; nullptr = copy only
  Element const* sin = nullptr;
  int64_t row_stride = 0;
  int seqlen_ro = 0;
  int rotary_dim = 0;
  bool interleaved = true;
  bool conjugate = false;  // rotate by minus the angle (the backward of a rotation)

  CUTLASS_DEVICE void channels(int j, int& a, int& b) const {
    int const half = rotary_dim / 2;
    if (j < half) {
      a = interleaved ? 2 * j : j;
      b = interleaved ? 2 * j + 1 : j + half;
    } else {
      a = 2 * j;
      b = 2 * j + 1;
    }
  }

  // dst[a], dst[b] <- src[a], src[b] rotated to position pos; a position without a table row (pos < 0 or
  // pos >= seqlen_ro) is left as is, as is every pair past rotary_dim. Rounded multiplies, no FMA contraction: results equal a
  // plain fp32 PyTorch rotation bit for bit.
  CUTLASS_DEVICE void apply(Element const* src, Element* dst, int j, int pos) const {
    int a, b;
    channels(j, a, b);
    float const x = float(src[a]), y = float(src[b]);
    if (cos != nullptr && j < rotary_dim / 2 && pos >= 0 && pos < seqlen_ro) {
      int64_t const at = int64_t(pos) * row_stride + j;
      float const c = float(cos[at]);
      float const s = conjugate ? -float(sin[at]) : float(sin[at]);
      dst[a] = Element(__fsub_rn(__fmul_rn(x, c), __fmul_rn(y, s)));
      dst[b] = Element(__fadd_rn(__fmul_rn(x, s), __fmul_rn(y, c)));
    } else {
      dst[a] = Element(x);
      dst[b] = Element(y);
    }
  }
};

}  // namespace flash
