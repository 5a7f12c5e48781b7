// Host-side check of the sm90 persistent tile scheduler (csrc/flash/sm90/tile_scheduler.h): for each tile count and
// number of CTAs, the CTAs' tile lists together hold every (query block, head, batch) tile exactly once, and each
// CTA's causal work (sum over its tiles of block + 1) is within one slot (num_m_blocks + 1) of the balanced share;
// the compact varlen grid's longest-first order of up to 32 sequences; and the Q buffers' turns of a CTA's query
// blocks (q_turn.h). Built and run by tests/test_sm90_scheduler.py.
#include <cstdio>
#include <vector>

#include "flash/sm90/q_turn.h"
#include "flash/sm90/tile_scheduler.h"

using flash::WorkTile;
using flash::sm90::SingleTileScheduler;
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

// The compact varlen grid's order (SingleTileScheduler::longest_first_start): the 32 sequences' block ranges tile
// [0, total blocks) without gap or overlap, longest sequence first, ties in index order.
int check_longest_first(std::vector<int> const& blocks) {
  std::vector<int> start(32), owner_of;
  int total = 0;
  for (int b : blocks) { total += b; }
  owner_of.assign(total, -1);
  for (int lane = 0; lane < 32; ++lane) {
    start[lane] =
        SingleTileScheduler::longest_first_start(lane, blocks[lane], [&](int other) { return blocks[other]; });
    for (int x = start[lane]; x < start[lane] + blocks[lane]; ++x) {
      if (x >= total || owner_of[x] != -1) {
        std::printf("longest first: block %d of %d claimed twice or out of range\n", x, total);
        return 1;
      }
      owner_of[x] = lane;
    }
  }
  for (int x = 1; x < total; ++x) {
    int const a = owner_of[x - 1], b = owner_of[x];
    if (a != b && (blocks[a] < blocks[b] || (blocks[a] == blocks[b] && a > b))) {
      std::printf("longest first: sequence %d (%d blocks) before %d (%d blocks)\n", a, blocks[a], b, blocks[b]);
      return 1;
    }
  }
  return 0;
}

// A CTA's query blocks over 1 << buffers_log2 Q buffers: they take the buffers in turn; a block's barrier_q wait
// and the producer's barrier_q_empty wait name the phases of the completions they wait for (the k-th completion of
// a barrier, counting from 0, is phase k mod 2), and the producer waits exactly where the buffer was used before.
int check_q_turns(int buffers_log2) {
  int const buffers = 1 << buffers_log2;
  std::vector<int> uses(buffers, 0);  // blocks that have used each buffer so far
  for (int round = 0; round < 20; ++round) {
    flash::sm90::QTurn const q = flash::sm90::QTurn::of_round(round, buffers_log2);
    bool const ok = q.buffer == round % buffers && q.phase == uses[q.buffer] % 2 &&
                    flash::sm90::QTurn::reuses(round, buffers_log2) == (uses[q.buffer] > 0) &&
                    (uses[q.buffer] == 0 || (q.phase ^ 1) == (uses[q.buffer] - 1) % 2);
    if (!ok) {
      std::printf("Q turns, %d buffers: round %d takes buffer %d phase %d\n", buffers, round, q.buffer, q.phase);
      return 1;
    }
    ++uses[q.buffer];
  }
  return 0;
}

int main() {
  int failures = 0, cases = 0;
  for (int buffers_log2 : {0, 1}) {
    failures += check_q_turns(buffers_log2);
    ++cases;
  }
  unsigned seed = 12345;
  auto next_random = [&]() { return (seed = seed * 1664525u + 1013904223u) >> 8; };
  for (int round = 0; round < 200; ++round) {
    std::vector<int> blocks(32, 0);
    int const batch = 1 + int(next_random() % 32);
    for (int b = 0; b < batch; ++b) { blocks[b] = int(next_random() % (round % 3 == 0 ? 3 : 40)); }
    failures += check_longest_first(blocks);
    ++cases;
  }
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
