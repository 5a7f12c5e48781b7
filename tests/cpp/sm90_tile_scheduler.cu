// Host-side check of the sm90 persistent tile scheduler (csrc/flash/sm90/tile_scheduler.h): for each tile count and
// number of CTAs, the CTAs' tile lists together hold every (query block, head, batch) tile exactly once, and each
// CTA's causal work (sum over its tiles of block + 1) is within one slot (num_m_blocks + 1) of the balanced share.
// Built and run by tests/test_sm90_scheduler.py.
#include <cstdio>
#include <vector>

#include "flash/sm90/tile_scheduler.h"

using flash::WorkTile;
using flash::sm90::StaticPersistentScheduler;
using flash::sm90::TileCounts;

int check(TileCounts const counts, int ctas) {
  int64_t const tiles = int64_t(counts.num_m_blocks) * counts.num_heads * counts.batch;
  std::vector<int> seen(tiles, 0);
  int64_t total_work = 0, max_work = 0;
  for (int cta = 0; cta < ctas; ++cta) {
    StaticPersistentScheduler scheduler(counts, StaticPersistentScheduler::make_arguments(counts));
    int64_t work = 0;
    for (WorkTile tile; scheduler.next(tile, cta, ctas);) {
      if (tile.block < 0 || tile.block >= counts.num_m_blocks || tile.head < 0 || tile.head >= counts.num_heads ||
          tile.batch < 0 || tile.batch >= counts.batch) {
        std::printf("M %d heads %d batch %d ctas %d: tile (%d, %d, %d) out of range\n", counts.num_m_blocks,
                    counts.num_heads, counts.batch, ctas, tile.block, tile.head, tile.batch);
        return 1;
      }
      ++seen[(int64_t(tile.batch) * counts.num_heads + tile.head) * counts.num_m_blocks + tile.block];
      work += tile.block + 1;
    }
    total_work += work;
    max_work = work > max_work ? work : max_work;
  }
  for (int64_t t = 0; t < tiles; ++t) {
    if (seen[t] != 1) {
      std::printf("M %d heads %d batch %d ctas %d: tile %lld taken %d times\n", counts.num_m_blocks,
                  counts.num_heads, counts.batch, ctas, static_cast<long long>(t), seen[t]);
      return 1;
    }
  }
  int64_t const share = (total_work + ctas - 1) / ctas;
  if (max_work > share + counts.num_m_blocks + 1) {
    std::printf("M %d heads %d batch %d ctas %d: a CTA's causal work %lld > share %lld + one slot\n",
                counts.num_m_blocks, counts.num_heads, counts.batch, ctas, static_cast<long long>(max_work),
                static_cast<long long>(share));
    return 1;
  }
  return 0;
}

int main() {
  int failures = 0, cases = 0;
  for (int m : {1, 2, 3, 4, 7, 16, 127, 128}) {
    for (int heads : {1, 3, 16}) {
      for (int batch : {1, 2, 5}) {
        for (int ctas : {1, 7, 132}) {
          failures += check(TileCounts{m, heads, batch}, ctas);
          ++cases;
        }
      }
    }
  }
  std::printf("%d cases: %s\n", cases, failures == 0 ? "ok" : "FAILED");
  return failures == 0 ? 0 : 1;
}
