// Host-side check of which calls the sm90 forward serves (csrc/flash/host/dispatch.h: sm90_fwd_supports,
// fwd_kernel_arch): dense and varlen calls with TMA-addressable tensors; softcap and ALiBi; not keys appended inside
// the kernel, dropout, misaligned tensors, empty extents or a grid past 65535; head dims below the sm90 buckets only
// where the smallest one is built; the KV-cache inputs, paged caches in pages of any multiple of 16; nothing
// with an sm80 key; the tile table's default variant per head dim and call; which GQA calls run in packed tiles.
// Built and run by tests/test_sm90_dispatch.py.
#include <cstdio>
#include <cstdlib>
#include <functional>

#include "flash/host/dispatch.h"

using flash::FwdParams;

FwdParams dense_call() {
  alignas(16) static char buffer[64];
  FwdParams p;
  p.q_ptr = p.k_ptr = p.v_ptr = buffer;
  p.o_ptr = buffer;
  p.batch = 2, p.seqlen_q = 300, p.seqlen_k = 500, p.num_heads = 8, p.num_heads_k = 2, p.head_ratio = 4;
  p.head_dim = p.head_dim_v = 128;
  p.q_row_stride = p.k_row_stride = p.v_row_stride = p.o_row_stride = 8 * 128;
  p.q_head_stride = p.k_head_stride = p.v_head_stride = p.o_head_stride = 128;
  p.q_batch_stride = p.k_batch_stride = p.v_batch_stride = p.o_batch_stride = 300 * 8 * 128;
  return p;
}

int failures = 0;

void expect(char const* what, bool sm90, std::function<void(FwdParams&)> const& change) {
  FwdParams p = dense_call();
  change(p);
  flash::KernelKey const key{flash::Arch::kSm90, flash::DType::kBFloat16, p.head_dim, p.head_dim_v};
  bool const got = flash::fwd_kernel_arch(p, key) == flash::Arch::kSm90;
  flash::KernelKey const sm80_key{flash::Arch::kSm80, flash::DType::kBFloat16, p.head_dim, p.head_dim_v};
  bool const sm80_stays = flash::fwd_kernel_arch(p, sm80_key) == flash::Arch::kSm80;
  if (got != sm90 || !sm80_stays) {
    std::printf("%s: expected %s, got %s%s\n", what, sm90 ? "sm90" : "sm80", got ? "sm90" : "sm80",
                sm80_stays ? "" : " (and an sm80 key left sm80)");
    ++failures;
  }
}

int main() {
  alignas(16) static int index[8] = {};
  alignas(16) static float slopes[8] = {};
  char* odd = reinterpret_cast<char*>(index) + 2;
  expect("dense", true, [](FwdParams&) {});
  expect("softcap", true, [](FwdParams& p) { p.softcap = 30.f; });
  expect("alibi", true, [&](FwdParams& p) { p.alibi_slopes_ptr = slopes; });
  expect("window", true, [](FwdParams& p) { p.has_window = true, p.window_left = 64; });
  expect("varlen", true, [&](FwdParams& p) { p.cu_seqlens_q = p.cu_seqlens_k = index, p.total_q = p.total_k = 9; });
  expect("varlen, no keys at all", false, [&](FwdParams& p) { p.cu_seqlens_k = index, p.total_k = 0; });
  expect("dense, no keys", false, [](FwdParams& p) { p.seqlen_k = 0; });
#ifdef FLASH_ATTN_HDIM_64
  expect("head dim 32, d 64 built", true, [](FwdParams& p) { p.head_dim = p.head_dim_v = 32; });
  expect("head dim 8, d 64 built", true, [](FwdParams& p) { p.head_dim = p.head_dim_v = 8; });
#else
  expect("head dim 32, d 64 not built", false, [](FwdParams& p) { p.head_dim = p.head_dim_v = 32; });
#endif
  expect("head dim 40", true, [](FwdParams& p) { p.head_dim = p.head_dim_v = 40; });
  expect("head dim of V differs", false, [](FwdParams& p) { p.head_dim_v = 64; });
  expect("dropout", false, [](FwdParams& p) { p.has_dropout = true; });
  expect("paged, no pages", false, [&](FwdParams& p) { p.block_table = index, p.page_size = 256; });
  expect("appended keys", false, [&](FwdParams& p) { p.k_new_ptr = p.k_ptr; });
  expect("misaligned q", false, [&](FwdParams& p) { p.q_ptr = odd; });
  expect("odd row stride", false, [](FwdParams& p) { p.k_row_stride = 8 * 128 + 4; });
  expect("batch past the grid", false, [](FwdParams& p) { p.batch = 70000; });
  expect("cache_seqlens", true, [&](FwdParams& p) { p.seqused_k = index, p.seqused_k_extra = 3; });
  expect("cache_batch_idx", true, [&](FwdParams& p) { p.kv_batch_idx = index, p.kv_batch_rows = 4; });
  expect("cache_leftpad", true, [&](FwdParams& p) { p.leftpad_k = index; });
  auto paged = [&](FwdParams& p, int page_size) {
    p.block_table = index, p.seqused_k = index, p.page_size = page_size, p.num_pages = 7;
  };
  expect("paged in pages of 256", true, [&](FwdParams& p) { paged(p, 256); });
  expect("paged in pages of 64 (d 128's key tile is 128: loaded in chunks)", true, [&](FwdParams& p) { paged(p, 64); });
  expect("paged in pages of 48", true, [&](FwdParams& p) { paged(p, 48); });
  expect("paged in pages of 256 at d 256 (key tile 80: loaded in chunks)", true, [&](FwdParams& p) {
    paged(p, 256);
    p.head_dim = p.head_dim_v = 256;
  });
  expect("paged in pages of 40 (not a multiple of 16)", false, [&](FwdParams& p) { paged(p, 40); });
  expect("paged, appended keys", false, [&](FwdParams& p) { paged(p, 256), p.k_new_ptr = p.k_ptr; });
  // The tile table's default variants (sm90/fwd_tile_config.h: default_variant), as measured (benchmarks/NOTES.md):
  // d 64 plain persistent, on the 192-row tile from 1k keys (windowed: above 2k), varlen too; d 96 plain persistent;
  // d 128 plain persistent up to 1k keys (windowed: 2k), then overlapped, persistent up to 2k; d 192 overlapped,
  // persistent up to 2k; d 256 plain persistent at 512 keys, else overlapped, one tile per CTA. Varlen calls run the
  // 128-row tile one tile per CTA.
  struct VariantCase {
    int head_dim, seqlen_k;
    bool window, varlen, overlap, persistent, tall;
  };
  using V = VariantCase;
  for (V const c : {V{64, 512, false, false, false, true, false}, V{64, 1024, false, false, false, true, true},
                    V{64, 2048, true, false, false, true, false}, V{64, 2049, true, false, false, true, true},
                    V{64, 16384, true, false, false, true, true}, V{64, 1474, false, true, false, true, true},
                    V{64, 1474, true, true, false, false, false}, V{96, 512, false, false, false, true, false},
                    V{96, 16384, true, true, false, false, false}, V{128, 512, false, false, false, true, false},
                    V{128, 1024, false, false, false, true, false}, V{128, 1025, false, false, true, true, false},
                    V{128, 2048, true, false, false, true, false}, V{128, 2048, false, false, true, true, false},
                    V{128, 2049, true, false, true, false, false}, V{128, 1024, true, true, true, false, false},
                    V{192, 2048, true, false, true, true, false}, V{192, 4096, false, false, true, false, false},
                    V{256, 512, false, false, false, true, false}, V{256, 512, true, false, true, false, false},
                    V{256, 1024, false, false, true, false, false}, V{256, 512, false, true, true, false, false}}) {
    flash::sm90::FwdVariant const v =
        flash::sm90::default_variant(flash::sm90::fwd_tile(c.head_dim), c.window, c.seqlen_k, c.varlen);
    if (v.overlap != c.overlap || v.persistent != c.persistent || v.tall != c.tall) {
      std::printf("d %d, %d keys%s%s: overlap %d persistent %d tall %d, expected %d %d %d\n", c.head_dim, c.seqlen_k,
                  c.window ? ", windowed" : "", c.varlen ? ", varlen" : "", v.overlap, v.persistent, v.tall,
                  c.overlap, c.persistent, c.tall);
      ++failures;
    }
  }
  // GQA packing (sm90/fwd_tile_config.h: pack_gqa_pays): where packed 128-row tiles number at most 4/5 of the plain
  // ones, i.e. short queries; never without GQA.
  struct PackCase {
    int seqlen_q, head_ratio;
    bool packs;
  };
  for (PackCase const c : {PackCase{33, 4, true}, PackCase{17, 8, true}, PackCase{64, 2, true}, PackCase{50, 3, true},
                           PackCase{100, 2, false}, PackCase{200, 4, false}, PackCase{1000, 4, false},
                           PackCase{16, 1, false}, PackCase{129, 2, true}}) {
    if (flash::sm90::pack_gqa_pays(c.seqlen_q, c.head_ratio, 128) != c.packs) {
      std::printf("pack_gqa_pays(seqlen_q %d, ratio %d): expected %d\n", c.seqlen_q, c.head_ratio, int(c.packs));
      ++failures;
    }
  }
  std::printf("%s\n", failures == 0 ? "sm90 dispatch: ok" : "sm90 dispatch: FAILED");
  return failures == 0 ? 0 : 1;
}
