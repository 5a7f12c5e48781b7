// The rows of an sm90 forward tile. A plain tile is kBlockM consecutive queries of one query head (the scheduler's
// tile.head); a packed GQA tile is kBlockM rows of core/block.h's PackedRows space of one KV head (tile.head), row p
// being query p / group of the group's query head p % group, so that short queries fill the tile and the KV
// head's keys are read once for the whole group. A plain tile is the packing of group 1, so one set of formulas
// serves both; only Q's load and O's store change (fwd_mainloop.h: load_q_rows, fwd_epilogue.h: store_direct).
#pragma once

#include <cute/tensor.hpp>

#include "../core/alibi.h"
#include "../core/block.h"
#include "../core/params.h"

namespace flash::sm90 {

using namespace cute;

// How a call's query heads map to tiles. group > 1: packed GQA tiles (params.head_ratio query heads per tile).
struct TilePacking {
  PackedRows rows{1};

  CUTE_HOST_DEVICE bool packed() const { return rows.group > 1; }
  // Tile rows of a sequence of seqlen_q queries.
  CUTE_HOST_DEVICE int rows_of(int seqlen_q) const { return seqlen_q * rows.group; }
  // The heads the scheduler counts: KV heads when packed, else query heads.
  CUTE_HOST_DEVICE int tile_heads(FwdParams const& params) const {
    return packed() ? params.num_heads_k : params.num_heads;
  }
  // The KV head of a tile.
  CUTE_HOST_DEVICE int kv_head(FwdParams const& params, int tile_head) const {
    return packed() ? tile_head : tile_head / params.head_ratio;
  }
  // Query and query head of tile row p (packed or not) of tile head tile_head.
  CUTE_HOST_DEVICE int query(int p) const { return rows.group == 1 ? p : rows.query(p); }
  CUTE_HOST_DEVICE int head(int p, int tile_head) const { return rows.head(p, tile_head); }
};

// A tile's rows as the consumers' mask and ALiBi bias read them on every key block: the query and the slope of a
// thread's row are derived from the tile's first row when needed rather than held in registers through the
// mainloop (the overlapped consumers have none to spare).
struct TileRows {
  TilePacking packing;
  int row_base;   // the tile's first row (packed or not)
  int tile_head;  // scheduler's head: the query head of a plain tile, the KV head of a packed one
  int batch;
  int last_row;   // row_base + kBlockM - 1

  CUTE_DEVICE int first_query() const { return packing.query(row_base); }
  CUTE_DEVICE int last_query() const { return packing.query(last_row); }
  // Query position and ALiBi slope (softmax-input units; 0 without slopes) of tile-relative row `row`.
  CUTE_DEVICE int query(int row) const { return packing.query(row_base + row); }
  CUTE_DEVICE float slope(FwdParams const& params, int row) const {
    return alibi_slope(params, batch, packing.head(row_base + row, tile_head));
  }
};

}  // namespace flash::sm90
