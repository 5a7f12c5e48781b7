// The rows of a packed GQA tile (the kernels with kPacked, fwd_kernel.h): kBlockM rows of one KV head (the
// scheduler's tile.head), row p being query p / group of the group's query head p % group (core/block.h's
// PackedRows map, as in the split-KV kernel), so that short queries fill the tile and the KV head's keys are read
// once for the whole group. Plain tiles keep the mainloop's PlainRows (a block index and one ALiBi slope).
#pragma once

#include <cute/tensor.hpp>

#include "../core/alibi.h"
#include "../core/block.h"
#include "../core/params.h"

namespace flash::sm90 {

using namespace cute;

// A consumer thread's rows of a packed tile: the query position and the ALiBi slope (softmax-input units, 0: none)
// of each of the kRows rows of its accumulators' rowcol view, for the mask and bias of every key block, and the
// queries of the tile's first and last rows, which bound its key blocks.
template <int kRows>
struct PackedTileRows {
  int first_query, last_query;
  int query[kRows];
  float slope[kRows];

  // coords: the rowcol view of the thread's tile-relative (row, col) coordinates (any of its accumulators: they
  // share the rows).
  template <int kBlockM, class Coords>
  CUTE_DEVICE PackedTileRows(FwdParams const& params, Coords const& coords, Int<kBlockM>, int m_block, int kv_head,
                             int batch) {
    PackedRows const packing{params.head_ratio};
    int const row_base = m_block * kBlockM;
    first_query = packing.query(row_base);
    last_query = packing.query(row_base + kBlockM - 1);
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      int const p = row_base + get<0>(coords(r, 0));
      query[r] = packing.query(p);
      slope[r] = alibi_slope(params, batch, packing.head(p, kv_head));
    }
  }
};

}  // namespace flash::sm90
