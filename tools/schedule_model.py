#!/usr/bin/env python3
"""Work model of persistent tile schedulers for a dense causal forward (benchmarks/NOTES.md, fifth session of
2026-12-06): a tile of query block j costs j + 1 key blocks plus a fixed `overhead`; G CTAs take tiles in a given
order. Prints each order's makespan (the busiest CTA's work) beside the ideal (total work / G).

    python3 tools/schedule_model.py [ctas]

Orders: the static balanced slots (StaticPersistentScheduler: blocks M-1-j and j per slot, slot i to CTA i % G),
and a tile counter taking (head, batch) pairs in sections longest first, with sections of one pair or of all pairs,
claiming the next tile when a CTA finishes one (lookahead 0) or one tile earlier (lookahead 1, two handoff slots).
"""
import heapq
import sys


def counter_order(blocks, pairs, pairs_per_section):
    order = []
    for first in range(0, pairs, pairs_per_section):
        section = range(first, min(pairs, first + pairs_per_section))
        for step in range(blocks):
            order.extend(blocks - 1 - step for _ in section)
    return order


def counter_makespan(tiles, ctas, lookahead, overhead):
    claimed = [[] for _ in range(ctas)]
    nxt = 0
    for _ in range(lookahead + 1):
        for c in range(ctas):
            if nxt < len(tiles):
                claimed[c].append(tiles[nxt])
                nxt += 1
    events = [(0.0, c) for c in range(ctas)]
    heapq.heapify(events)
    end = 0.0
    while events:
        now, c = heapq.heappop(events)
        if not claimed[c]:
            end = max(end, now)
            continue
        block = claimed[c].pop(0)
        if nxt < len(tiles):
            claimed[c].append(tiles[nxt])
            nxt += 1
        heapq.heappush(events, (now + block + 1 + overhead, c))
    return end


def static_makespan(blocks, pairs, ctas, overhead):
    work = [0] * ctas
    slot = 0
    for _ in range(pairs):
        for j in range((blocks + 1) // 2):
            tiles = [blocks - 1 - j] + ([j] if j != blocks - 1 - j else [])
            work[slot % ctas] += sum(b + 1 + overhead for b in tiles)
            slot += 1
    return max(work)


def main():
    ctas = int(sys.argv[1]) if len(sys.argv) > 1 else 132
    overhead = 2
    print(f"{ctas} CTAs, fixed cost {overhead} key blocks per tile\n")
    print("| query blocks | pairs | ideal | static slots | sectioned | sectioned, lookahead 1 | global | global, lookahead 1 |")
    print("|---|---|---|---|---|---|---|---|")
    for blocks, pairs in [(128, 8), (64, 32), (32, 64), (16, 128), (8, 256)]:
        ideal = sum(b + 1 + overhead for b in range(blocks)) * pairs / ctas
        sectioned, whole = counter_order(blocks, pairs, 1), counter_order(blocks, pairs, pairs)
        cells = [ideal, static_makespan(blocks, pairs, ctas, overhead)]
        cells += [counter_makespan(t, ctas, la, overhead) for t in (sectioned, whole) for la in (0, 1)]
        print(f"| {blocks} | {pairs} | " + " | ".join(f"{x:.0f}" for x in cells) + " |")


if __name__ == "__main__":
    main()
