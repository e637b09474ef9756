// One decode step's attention over a KV cache kept in fp16, for x86 CPUs with AVX2 and F16C (built with
// int8_rows.cpp by gpt2_core/int8_kernel.py; GPT.cache_dtype says when a model's cache is fp16).
//
//     y[b, h] = sum_j softmax_j(scale * q[b, h] . k[b, h, j]) * v[b, h, j]      j = 0 .. positions[b]
//
// Why it exists. With 8 callers, the step's attention reads every caller's cached keys and values, 12 layers of
// them: tens of megabytes a step that come from memory. ATen's fp32 kernel took about a quarter of an 8-row int8
// step on 2 AVX2 cores (its fp16 and bf16 kernels were slower still). Keys and values in fp16 halve the bytes read;
// F16C widens them to fp32 in registers, and the products, softmax and sums run in fp32.
//
// Each (row, head) is one task, its sums in one fixed order: a row's output is the same bits alone and among eight
// callers, on any number of threads. Row b attends over its own positions 0..positions[b], so rows of different
// lengths need no mask.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace {

// e**x for x <= 0 (softmax's scores less their largest), 8 at a time: 2**n * e**r with |r| <= ln(2) / 2 and e**r
// from Cephes' degree-7 polynomial (relative error about 2e-7; e**x below e**-87 is taken as e**-87, 1.6e-38).
// NaN stays NaN (vmaxps returns its second operand where one is NaN).
inline __m256 exp8(__m256 x) {
  x = _mm256_max_ps(_mm256_set1_ps(-87.0f), x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);  // ln(2) in two parts: r exact to float
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i two_n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(two_n));
}

inline __m256 half8(const at::Half* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// The 8 lanes of each of a[0..7] summed: one vector of the 8 sums.
inline __m256 sums8(const __m256* a) {
  const __m256 s0123 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
  const __m256 s4567 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20), _mm256_permute2f128_ps(s0123, s4567, 0x31));
}

inline float sum(__m256 a) {
  float lanes[8];
  _mm256_storeu_ps(lanes, a);
  float total = 0;
  for (const float x : lanes) total += x;
  return total;
}

// One head of one row: q (8 * N floats), its keys and values (len positions of 8 * N halves each, contiguous),
// scores a scratch of len floats, out 8 * N floats.
template <int N>
void head(const float* q, const at::Half* k, const at::Half* v, int64_t len, float scale, float* scores, float* out) {
  constexpr int64_t hs = 8 * N;
  __m256 qs[N];
  for (int d = 0; d < N; d++) qs[d] = _mm256_mul_ps(_mm256_loadu_ps(q + 8 * d), _mm256_set1_ps(scale));
  int64_t j = 0;
  for (; j + 8 <= len; j += 8) {  // 8 keys at a time: 8 independent sums in flight
    __m256 a[8];
    for (auto& x : a) x = _mm256_setzero_ps();
    for (int d = 0; d < N; d++)
      for (int i = 0; i < 8; i++) a[i] = _mm256_fmadd_ps(half8(k + (j + i) * hs + 8 * d), qs[d], a[i]);
    _mm256_storeu_ps(scores + j, sums8(a));
  }
  for (; j < len; j++) {
    __m256 a = _mm256_setzero_ps();
    for (int d = 0; d < N; d++) a = _mm256_fmadd_ps(half8(k + j * hs + 8 * d), qs[d], a);
    scores[j] = sum(a);
  }

  float largest = -INFINITY;  // NaN if a score is NaN (a key or query that is), which then reaches the output as ATen's
  for (j = 0; j < len; j++) largest = scores[j] > largest || std::isnan(scores[j]) ? scores[j] : largest;
  const __m256 shift = _mm256_set1_ps(largest);
  __m256 totals = _mm256_setzero_ps();
  for (j = 0; j + 8 <= len; j += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(scores + j), shift));
    _mm256_storeu_ps(scores + j, e);
    totals = _mm256_add_ps(totals, e);
  }
  float total = sum(totals);
  if (j < len) {  // the last len % 8 through the same exp
    float tail[8] = {};
    for (int64_t i = j; i < len; i++) tail[i - j] = scores[i] - largest;
    _mm256_storeu_ps(tail, exp8(_mm256_loadu_ps(tail)));
    for (int64_t i = j; i < len; i++) total += scores[i] = tail[i - j];
  }
  const __m256 inverse = _mm256_set1_ps(1.0f / total);

  __m256 o[N];
  for (auto& x : o) x = _mm256_setzero_ps();
  for (j = 0; j < len; j++) {
    const __m256 p = _mm256_set1_ps(scores[j]);
    for (int d = 0; d < N; d++) o[d] = _mm256_fmadd_ps(half8(v + j * hs + 8 * d), p, o[d]);
  }
  for (int d = 0; d < N; d++) _mm256_storeu_ps(out + 8 * d, _mm256_mul_ps(o[d], inverse));
}

using Head = void (*)(const float*, const at::Half*, const at::Half*, int64_t, float, float*, float*);

Head head_for(int64_t hs) {
  switch (hs) {
    case 32: return &head<4>;
    case 64: return &head<8>;  // every GPT-2, and the bundled model
    case 128: return &head<16>;
    default: return nullptr;
  }
}

// q (B, nh, 1, hs) fp32, each head's hs contiguous; k, v (>= B, nh, S, hs) fp16, each head's positions contiguous; positions (B,) int64, row b's
// last position. Returns (B, nh, 1, hs) fp32.
at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& positions,
                            double scale) {
  TORCH_CHECK(q.dim() == 4 && q.size(2) == 1 && q.scalar_type() == at::kFloat && q.device().is_cpu() &&
                  q.stride(3) == 1,
              "decode_attention: q has to be (B, heads, 1, head size) fp32 on the CPU, each head's contiguous");
  const int64_t B = q.size(0), heads = q.size(1), hs = q.size(3);
  const Head run = head_for(hs);
  TORCH_CHECK(run, "decode_attention: head sizes 32, 64 or 128, not ", hs);
  TORCH_CHECK(k.sizes() == v.sizes(), "decode_attention: k and v have to be the same shape");
  for (const at::Tensor* t : {&k, &v}) {
    TORCH_CHECK(t->dim() == 4 && t->scalar_type() == at::kHalf && t->device().is_cpu() && t->size(0) >= B &&
                    t->size(1) == heads && t->size(3) == hs && t->stride(3) == 1 && t->stride(2) == hs,
                "decode_attention: k and v have to be fp16 CPU caches (rows, heads, positions, head size) with each "
                "head's positions contiguous");
  }
  TORCH_CHECK(positions.dim() == 1 && positions.size(0) == B && positions.scalar_type() == at::kLong,
              "decode_attention: positions has to be (B,) int64");
  const at::Tensor pc = positions.contiguous();
  const int64_t* last = pc.const_data_ptr<int64_t>();
  for (int64_t b = 0; b < B; b++)
    TORCH_CHECK(0 <= last[b] && last[b] < k.size(2), "decode_attention: row ", b, "'s position ", last[b],
                " is outside the cache's ", k.size(2));
  at::Tensor y = at::empty({B, heads, 1, hs}, q.options());
  const float* qs = q.const_data_ptr<float>();  // (a view of the step's q, k, v projection: strided)
  const at::Half* ks = k.const_data_ptr<at::Half>();
  const at::Half* vs = v.const_data_ptr<at::Half>();
  float* out = y.mutable_data_ptr<float>();
  at::parallel_for(0, B * heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(k.size(2));
    for (int64_t t = begin; t < end; t++) {
      const int64_t b = t / heads, h = t % heads;
      run(qs + b * q.stride(0) + h * q.stride(1), ks + b * k.stride(0) + h * k.stride(1), vs + b * v.stride(0) + h * v.stride(1), last[b] + 1,
          static_cast<float>(scale), scores.data(), out + t * hs);
    }
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gpt2_core, m) {
  m.def("decode_attention(Tensor q, Tensor k, Tensor v, Tensor positions, float scale) -> Tensor");
}

TORCH_LIBRARY_IMPL(gpt2_core, CPU, m) {
  m.impl("decode_attention", &decode_attention);
}
