// int8 weights by int8 activations, one scale per activation row, for x86 CPUs with AVX2 (gpt2_core/int8_kernel.py
// builds it and says why it exists).
//
//     y[r, n] = sum_k q[r, k] * w[n, k] * (s[r] * scales[n]) + bias[n]       (scales: bf16, as PyTorch's int8 path)
//     s[r] = max_k |x[r, k]| / 127,  q[r, k] = round(x[r, k] / s[r])      (both int8, in [-127, 127])
//
// The sums are exact in int32 (|q * w| <= 127 * 127, and 133,000 of them fit; GPT-2's widest depth is 6400), so a
// row's output does not depend on the other rows of its batch, nor on how the work is split between threads: a row
// decoded alone and the same row among eight callers get the same bits.
//
// The weights are packed once (`int8_rows_pack`) in blocks of 8 output channels, their columns in pairs:
// packed[block][k / 2][channel][k % 2]. AVX2's vpmaddwd multiplies 16 int16 lanes (8 channels' pair of weights, widened
// from int8) by one activation pair broadcast, and adds each pair into an int32 lane: 16 multiply-adds an instruction,
// against 8 for an fp32 FMA. A tile of rows by blocks keeps its sums in registers, and its weights are widened once for
// all its rows, which is what makes 8 rows cheaper than 8 single rows. A batch of 2 to 4 rows takes 2 blocks a tile;
// a batch of more takes one, in tiles of 8 rows and then the rest, so that 8 callers' rows read each weight once
// (their 8 sums, the block's weights and a pair fill 10 of AVX2's 16 registers; 2 blocks would need 19). Measured on Zen 3, 8 rows by one block were 1.24x faster than two
// tiles of 4 rows by 2 blocks, over a gpt2 decode step's 49 products.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr int64_t kMaxDepth = (int64_t{1} << 31) / (127 * 127) / 2 * 2;  // sums of 127 * 127 stay within int32
constexpr int kRowTile = 8;    // rows a tile multiplies together: a batch of more is tiles of 8, then the rest
constexpr int kFewRows = 4;    // a batch of 2 to kFewRows rows takes kBlockTile blocks a tile; a batch of more one block
constexpr int kBlockTile = 2;  // a tile, its last tile too, whatever its rows (kTiles has an entry for each)
constexpr int kLoneBlockTile = 4;  // and a lone row: its weights stream from memory, four streams keep it busier

// Rows r0.. (`Rows` of them) by `Blocks` blocks of 8 channels from `channel`: the sums over the depth, then
// y = sum * (row scale * channel scale) + bias, written to out (n channels a row; a block past n is cut short).
struct Rows {
  const int32_t* pairs;       // the rows' activations, k / 2 pairs a row
  const float* row_scales;
  int64_t pairs_per_row;
};
struct Channels {
  const int8_t* packed;      // from the first block
  int64_t block_stride;      // bytes a block
  const uint16_t* scales;    // from the first channel: bf16, the high half of a float32
  const float* bias;         // from the first channel, or null
  int64_t left;              // channels from the first to n
};

// bf16 to float32 is exact: its bits are the float's high half.
inline float bf16(uint16_t bits) {
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &wide, sizeof value);
  return value;
}

inline __m256 bf16x8(const uint16_t* bits) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bits)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

// The sums over the depth of rows by blocks, into totals[r][b] (8 int32 each). Its own function, the sums leaving it
// through memory once: where the epilogue below read them from registers, GCC 12 kept them in an array on the stack
// and copied each between registers at every step (a third more instructions than products; measured on Zen 3 with
// the tile's weights in cache, 21 against 25 multiply-adds a cycle).
template <int Count, int Blocks>
void sum_tile(const Rows& rows, const Channels& channels, __m256i (&totals)[Count][Blocks]) {
  __m256i sums[Count][Blocks];
  _Pragma("GCC unroll 8") for (int r = 0; r < Count; r++)
    _Pragma("GCC unroll 8") for (int b = 0; b < Blocks; b++) sums[r][b] = _mm256_setzero_si256();
  const int8_t* w = channels.packed;
  for (int64_t p = 0; p < rows.pairs_per_row; p++) {
    __m256i weights[Blocks];
    _Pragma("GCC unroll 8") for (int b = 0; b < Blocks; b++)
      weights[b] = _mm256_cvtepi8_epi16(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + b * channels.block_stride + p * 16)));
    _Pragma("GCC unroll 8") for (int r = 0; r < Count; r++) {
      const __m256i pair = _mm256_set1_epi32(rows.pairs[r * rows.pairs_per_row + p]);
      _Pragma("GCC unroll 8") for (int b = 0; b < Blocks; b++)
        sums[r][b] = _mm256_add_epi32(sums[r][b], _mm256_madd_epi16(weights[b], pair));
    }
  }
  _Pragma("GCC unroll 8") for (int r = 0; r < Count; r++)
    _Pragma("GCC unroll 8") for (int b = 0; b < Blocks; b++) _mm256_store_si256(&totals[r][b], sums[r][b]);
}

template <int Count, int Blocks>
void tile(const Rows& rows, const Channels& channels, float* out, int64_t n) {
  __m256i sums[Count][Blocks];
  sum_tile<Count, Blocks>(rows, channels, sums);
  for (int b = 0; b < Blocks; b++) {
    const int64_t width = std::min<int64_t>(8, channels.left - 8 * b);
    for (int r = 0; r < Count; r++) {
      float* y = out + r * n + 8 * b;
      const float s = rows.row_scales[r];
      if (width == 8) {  // the whole block: mul then add, not fused (-ffp-contract=off), as the tail below
        __m256 value = _mm256_mul_ps(_mm256_cvtepi32_ps(sums[r][b]),
                                     _mm256_mul_ps(_mm256_set1_ps(s), bf16x8(channels.scales + 8 * b)));
        if (channels.bias) value = _mm256_add_ps(value, _mm256_loadu_ps(channels.bias + 8 * b));
        _mm256_storeu_ps(y, value);
        continue;
      }
      alignas(32) int32_t lanes[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), sums[r][b]);
      for (int64_t j = 0; j < width; j++) {
        const float value = static_cast<float>(lanes[j]) * (s * bf16(channels.scales[8 * b + j]));
        y[j] = channels.bias ? value + channels.bias[8 * b + j] : value;
      }
    }
  }
}

using Tile = void (*)(const Rows&, const Channels&, float*, int64_t);
const Tile kTiles[kRowTile + 1][kLoneBlockTile + 1] = {
    {nullptr, nullptr, nullptr, nullptr, nullptr},
    {nullptr, tile<1, 1>, tile<1, 2>, tile<1, 3>, tile<1, 4>},
    {nullptr, tile<2, 1>, tile<2, 2>, nullptr, nullptr},
    {nullptr, tile<3, 1>, tile<3, 2>, nullptr, nullptr},
    {nullptr, tile<4, 1>, tile<4, 2>, nullptr, nullptr},
    {nullptr, tile<5, 1>, nullptr, nullptr, nullptr},
    {nullptr, tile<6, 1>, nullptr, nullptr, nullptr},
    {nullptr, tile<7, 1>, nullptr, nullptr, nullptr},
    {nullptr, tile<8, 1>, nullptr, nullptr, nullptr},
};

// A row of x to int8 in pairs (the low int16 the even column), and its scale; a row with a value that is not finite
// gets the scale NaN, so that its outputs say so. k is even; 8 columns at a time, then pairs.
void quantize_row(const float* x, int64_t k, int32_t* pairs, float* scale) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 largest8 = _mm256_setzero_ps(), nan8 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    largest8 = _mm256_max_ps(largest8, _mm256_andnot_ps(sign, v));
    nan8 = _mm256_or_ps(nan8, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, largest8);
  float largest = 0.0f;
  for (float lane : lanes) largest = std::max(largest, lane);
  bool finite = _mm256_movemask_ps(nan8) == 0;
  for (int64_t j = i; j < k; j++) {
    finite = finite && !std::isnan(x[j]);
    largest = std::max(largest, std::fabs(x[j]));
  }
  finite = finite && std::isfinite(largest);
  const float s = largest / 127.0f > 0.0f ? largest / 127.0f : 1.0f;  // (a row of subnormals: its quotient is 0)
  *scale = finite ? s : NAN;
  if (!finite) {
    std::fill(pairs, pairs + k / 2, 0);
    return;
  }
  // x / s, rounded half to even (as torch.round), within [-127, 127] (already, up to rounding: the largest is 127 s)
  const __m256 s8 = _mm256_set1_ps(s), low = _mm256_set1_ps(-127.0f), high = _mm256_set1_ps(127.0f);
  for (i = 0; i + 16 <= k; i += 16) {
    __m256i q[2];
    for (int h = 0; h < 2; h++) {
      const __m256 v = _mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(x + i + 8 * h), s8),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      q[h] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, low), high));
    }
    // 16 int32 to 16 int16 in order: packs works within 128-bit lanes, the permute puts the lanes back in order
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packs_epi32(q[0], q[1]), 0xd8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(pairs + i / 2), packed);
  }
  for (; i < k; i += 2) {
    const auto lo = static_cast<int16_t>(std::fmin(std::fmax(std::nearbyint(x[i] / s), -127.0f), 127.0f));
    const auto hi = static_cast<int16_t>(std::fmin(std::fmax(std::nearbyint(x[i + 1] / s), -127.0f), 127.0f));
    pairs[i / 2] = static_cast<int32_t>((static_cast<uint32_t>(static_cast<uint16_t>(hi)) << 16) | static_cast<uint16_t>(lo));
  }
}

// weight (n, k) int8 -> (ceil(n / 8), k / 2, 8, 2), the channels past n zero.
at::Tensor int8_rows_pack(const at::Tensor& weight) {
  TORCH_CHECK(weight.dim() == 2 && weight.scalar_type() == at::kChar && weight.device().is_cpu(),
              "int8_rows_pack: the weight has to be a 2-D int8 CPU tensor");
  TORCH_CHECK(weight.size(1) % 2 == 0, "int8_rows_pack: the weight's columns have to be even, not ", weight.size(1));
  const at::Tensor w = weight.contiguous();
  const int64_t n = w.size(0), k = w.size(1), blocks = (n + 7) / 8;
  at::Tensor packed = at::empty({blocks, k / 2, 8, 2}, w.options());
  const int8_t* src = w.const_data_ptr<int8_t>();
  int8_t* dst = packed.mutable_data_ptr<int8_t>();
  at::parallel_for(0, blocks, 16, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; b++)
      for (int64_t p = 0; p < k / 2; p++)
        for (int64_t j = 0; j < 8; j++)
          for (int64_t i = 0; i < 2; i++) {
            const int64_t channel = b * 8 + j;
            dst[((b * (k / 2) + p) * 8 + j) * 2 + i] = channel < n ? src[channel * k + 2 * p + i] : 0;
          }
  });
  return packed;
}

// x (m, k) fp32 by the packed weights of n channels, scaled per channel (fp32) and biased (fp32, or undefined).
at::Tensor int8_rows_linear(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& scales,
                            const std::optional<at::Tensor>& bias) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.device().is_cpu(),
              "int8_rows_linear: x has to be a 2-D fp32 CPU tensor");
  TORCH_CHECK(packed.dim() == 4 && packed.scalar_type() == at::kChar && packed.size(2) == 8 && packed.size(3) == 2 &&
                  packed.is_contiguous(),
              "int8_rows_linear: the weights have to be int8_rows_pack's");
  const int64_t m = x.size(0), k = x.size(1), n = scales.size(0), pairs_per_row = k / 2;
  TORCH_CHECK(k <= kMaxDepth, "int8_rows_linear: at most ", kMaxDepth, " columns (int32 sums), not ", k);
  TORCH_CHECK(scales.dim() == 1, "int8_rows_linear: scales has to be 1-D");
  TORCH_CHECK(packed.size(1) * 2 == k, "int8_rows_linear: x has ", k, " columns, the weights ", packed.size(1) * 2);
  TORCH_CHECK(scales.scalar_type() == at::kBFloat16 && scales.is_contiguous() && (n + 7) / 8 == packed.size(0),
              "int8_rows_linear: scales has to be bf16, one per output channel");
  const bool has_bias = bias.has_value() && bias->defined();
  TORCH_CHECK(!has_bias || (bias->scalar_type() == at::kFloat && bias->is_contiguous() && bias->numel() == n),
              "int8_rows_linear: bias has to be fp32, one per output channel");
  const at::Tensor xc = x.contiguous();
  at::Tensor y = at::empty({m, n}, x.options());
  if (m == 0 || n == 0) return y;

  std::vector<int32_t> pairs(m * pairs_per_row);
  std::vector<float> row_scales(m);
  const float* xs = xc.const_data_ptr<float>();
  at::parallel_for(0, m, 8, [&](int64_t begin, int64_t end) {  // (a prefill's rows; a decode step's run on one thread)
    for (int64_t r = begin; r < end; r++) quantize_row(xs + r * k, k, pairs.data() + r * pairs_per_row, &row_scales[r]);
  });

  const int8_t* w = packed.const_data_ptr<int8_t>();
  const auto* channel_scales = reinterpret_cast<const uint16_t*>(scales.const_data_ptr<at::BFloat16>());
  const float* b = has_bias ? bias->const_data_ptr<float>() : nullptr;
  float* out = y.mutable_data_ptr<float>();
  const int64_t blocks = packed.size(0), block_stride = pairs_per_row * 16;
  const int64_t per_tile = m == 1 ? kLoneBlockTile : m <= kFewRows ? kBlockTile : 1, tiles = (blocks + per_tile - 1) / per_tile;
  at::parallel_for(0, tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; t++) {
      const int64_t block = t * per_tile, tile_blocks = std::min<int64_t>(per_tile, blocks - block);
      const Channels channels{w + block * block_stride, block_stride, channel_scales + block * 8,
                              b ? b + block * 8 : nullptr, n - block * 8};
      for (int64_t r0 = 0; r0 < m; r0 += kRowTile) {
        const Rows rows{pairs.data() + r0 * pairs_per_row, row_scales.data() + r0, pairs_per_row};
        kTiles[std::min<int64_t>(kRowTile, m - r0)][tile_blocks](rows, channels, out + r0 * n + block * 8, n);
      }
    }
  });
  return y;
}

}  // namespace

TORCH_LIBRARY(gpt2_core, m) {
  m.def("int8_rows_pack(Tensor weight) -> Tensor");
  m.def("int8_rows_linear(Tensor x, Tensor packed, Tensor scales, Tensor? bias) -> Tensor");
}

TORCH_LIBRARY_IMPL(gpt2_core, CPU, m) {
  m.impl("int8_rows_pack", &int8_rows_pack);
  m.impl("int8_rows_linear", &int8_rows_linear);
}
