// Metrics between a reference tensor and its quantized version (SQNR, MSE, max abs error, cosine
// similarity), and between two sets of output logits (KL divergence of the softmaxes, top-1 agreement).
// Eigen in (any dense expression, float or double), every sum accumulated in double.
//
// Conventions, for every function here:
// - shapes must agree (errc::shape_mismatch) and hold at least one element (errc::empty_input);
// - NaN or Inf in an input is errc::non_finite (a metric of a broken tensor is a bug to report, not a
//   number to rank);
// - identical inputs: noise 0, SQNR +inf dB, MSE 0, cosine 1 (also when both are all zeros);
// - zero signal (ref all zeros) with a non-zero test: SQNR -inf dB; cosine 0.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>

#include <Eigen/Core>
#include <xsimd/xsimd.hpp>

#include "mixprec/config.hpp"
#include "mixprec/detail/simd.hpp"
#include "mixprec/error.hpp"

namespace mixprec {

// Sums of one comparison of ref (a) and test (b), from which every tensor metric follows.
struct error_stats {
  double signal = 0.0;      // sum a^2
  double test_energy = 0.0; // sum b^2
  double noise = 0.0;       // sum (a - b)^2
  double dot = 0.0;         // sum a b
  double max_abs = 0.0;     // max |a - b|
  index_t count = 0;        // elements compared

  // Adds another part of the same comparison (e.g. another row block).
  error_stats& operator+=(const error_stats& o) noexcept {
    signal += o.signal;
    test_energy += o.test_energy;
    noise += o.noise;
    dot += o.dot;
    max_abs = std::max(max_abs, o.max_abs);
    count += o.count;
    return *this;
  }
  // Mean squared error (0 for no elements).
  [[nodiscard]] double mse() const noexcept { return count ? noise / static_cast<double>(count) : 0.0; }
  // 10 log10(signal / noise) in dB: +inf when noise is 0, -inf when only the signal is 0.
  [[nodiscard]] double sqnr_db() const noexcept {
    if (noise == 0.0) return std::numeric_limits<double>::infinity();
    if (signal == 0.0) return -std::numeric_limits<double>::infinity();
    return 10.0 * std::log10(signal / noise);
  }
  // dot / (|a| |b|) clamped to [-1, 1]; 1 when both are zero, 0 when exactly one is.
  [[nodiscard]] double cosine() const noexcept {
    if (signal == 0.0 || test_energy == 0.0) return signal == test_energy ? 1.0 : 0.0;
    return std::clamp(dot / (std::sqrt(signal) * std::sqrt(test_energy)), -1.0, 1.0);
  }
};

namespace detail {

// D = batch<double, A>::size floats at p, widened to doubles: one cvtps2pd on x86, xsimd's
// element-wise conversion elsewhere.
template <class A>
inline xsimd::batch<double, A> load_widened(const float* p) noexcept {
#if MIXPREC_X86
  if constexpr (is_avx512<A>) {
    return _mm512_cvtps_pd(_mm256_loadu_ps(p));
  } else if constexpr (MIXPREC_X86 && std::is_base_of_v<xsimd::avx, A>) {
    return _mm256_cvtps_pd(_mm_loadu_ps(p));
  } else if constexpr (is_sse2<A>) {
    return _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  } else
#endif
  {
    return xsimd::batch<double, A>::load_unaligned(p);
  }
}

// Accumulates n elements of a and b into s, in double, with architecture A's double batches (a
// serial double sum cannot be vectorised by the compiler without -ffast-math). Two sets of
// accumulators hide the add latency. A is a template parameter so that translation units compiled
// for different ISAs get distinct symbols.
template <class A = xsimd::default_arch>
void accumulate_error(const float* a, const float* b, index_t n, error_stats& s) noexcept {
  using db = xsimd::batch<double, A>;
  constexpr index_t D = static_cast<index_t>(db::size);
  db sa0(0.0), sb0(0.0), se0(0.0), sd0(0.0), mx0(0.0);
  db sa1(0.0), sb1(0.0), se1(0.0), sd1(0.0), mx1(0.0);
  auto step = [&](const float* pa, const float* pb) {
    const db x0 = load_widened<A>(pa), y0 = load_widened<A>(pb), e0 = x0 - y0;
    const db x1 = load_widened<A>(pa + D), y1 = load_widened<A>(pb + D), e1 = x1 - y1;
    sa0 = xsimd::fma(x0, x0, sa0);
    sb0 = xsimd::fma(y0, y0, sb0);
    se0 = xsimd::fma(e0, e0, se0);
    sd0 = xsimd::fma(x0, y0, sd0);
    mx0 = xsimd::max(mx0, xsimd::abs(e0));
    sa1 = xsimd::fma(x1, x1, sa1);
    sb1 = xsimd::fma(y1, y1, sb1);
    se1 = xsimd::fma(e1, e1, se1);
    sd1 = xsimd::fma(x1, y1, sd1);
    mx1 = xsimd::max(mx1, xsimd::abs(e1));
  };
  index_t i = 0;
  for (; i + 2 * D <= n; i += 2 * D) step(a + i, b + i);
  if (i < n) {  // the tail, zero-padded: zeros add nothing to any sum
    float ta[2 * D] = {}, tb[2 * D] = {};
    std::copy(a + i, a + n, ta);
    std::copy(b + i, b + n, tb);
    step(ta, tb);
  }
  s.signal += xsimd::hadd(sa0 + sa1);
  s.test_energy += xsimd::hadd(sb0 + sb1);
  s.noise += xsimd::hadd(se0 + se1);
  s.dot += xsimd::hadd(sd0 + sd1);
  alignas(A::alignment()) double lanes[db::size];
  xsimd::max(mx0, mx1).store_aligned(lanes);
  for (double m : lanes) s.max_abs = std::max(s.max_abs, m);
  s.count += n;
}

// The same for any scalar types, one element at a time.
inline void accumulate_error_scalar(double x, double y, error_stats& s) noexcept {
  const double e = x - y;
  s.signal += x * x;
  s.test_energy += y * y;
  s.noise += e * e;
  s.dot += x * y;
  s.max_abs = std::max(s.max_abs, std::fabs(e));
  ++s.count;
}

template <class A, class B>
void check_same_shape(const Eigen::MatrixBase<A>& a, const Eigen::MatrixBase<B>& b, const char* what) {
  if (a.rows() != b.rows() || a.cols() != b.cols())
    throw error(errc::shape_mismatch, std::string(what) + ": shapes " + std::to_string(a.rows()) + "x" +
                                          std::to_string(a.cols()) + " and " + std::to_string(b.rows()) + "x" +
                                          std::to_string(b.cols()) + " differ");
  if (a.size() == 0) throw error(errc::empty_input, std::string(what) + ": empty input");
}

// Throws non_finite if a sum shows a NaN or Inf input (finite floats cannot overflow a double square).
inline void check_finite(const error_stats& s, const char* what) {
  if (!std::isfinite(s.signal) || !std::isfinite(s.test_energy) || !std::isfinite(s.noise) || !std::isfinite(s.dot))
    throw error(errc::non_finite, std::string(what) + ": inputs contain NaN or Inf");
}

// True when X's outer slices (rows if row-major, columns otherwise) are contiguous floats.
template <class X>
inline constexpr bool float_direct_v =
    std::is_same_v<typename X::Scalar, float> && (static_cast<unsigned>(X::Flags) & Eigen::DirectAccessBit) != 0;

}  // namespace detail

// All comparison sums of ref and test in one pass (see error_stats; throws as the file header says).
// Arch: the SIMD architecture of the kernel (a template parameter for distinct symbols per ISA).
template <class A, class B, class Arch = xsimd::default_arch>
[[nodiscard]] error_stats compare(const Eigen::MatrixBase<A>& ref, const Eigen::MatrixBase<B>& test,
                                  const char* what = "compare") {
  detail::check_same_shape(ref, test, what);
  error_stats s;
  const A& a = ref.derived();
  const B& b = test.derived();
  if constexpr (detail::float_direct_v<A> && detail::float_direct_v<B> &&
                static_cast<bool>(A::IsRowMajor) == static_cast<bool>(B::IsRowMajor)) {
    if (a.innerStride() == 1 && b.innerStride() == 1) {
      const index_t inner = A::IsRowMajor ? a.cols() : a.rows();
      const index_t outer = A::IsRowMajor ? a.rows() : a.cols();
      for (index_t o = 0; o < outer; ++o)
        detail::accumulate_error<Arch>(a.data() + o * a.outerStride(), b.data() + o * b.outerStride(), inner, s);
      detail::check_finite(s, what);
      return s;
    }
  }
  for (index_t r = 0; r < a.rows(); ++r)
    for (index_t c = 0; c < a.cols(); ++c)
      detail::accumulate_error_scalar(static_cast<double>(a.coeff(r, c)), static_cast<double>(b.coeff(r, c)), s);
  detail::check_finite(s, what);
  return s;
}

// Sum of squared differences.
template <class A, class B, class Arch = xsimd::default_arch>
[[nodiscard]] double squared_error(const Eigen::MatrixBase<A>& ref, const Eigen::MatrixBase<B>& test) {
  return compare<A, B, Arch>(ref, test, "squared_error").noise;
}

// Mean squared error.
template <class A, class B, class Arch = xsimd::default_arch>
[[nodiscard]] double mse(const Eigen::MatrixBase<A>& ref, const Eigen::MatrixBase<B>& test) {
  return compare<A, B, Arch>(ref, test, "mse").mse();
}

// Signal-to-quantization-noise ratio 10 log10(|ref|^2 / |ref - test|^2) in dB (+inf when equal).
template <class A, class B, class Arch = xsimd::default_arch>
[[nodiscard]] double sqnr_db(const Eigen::MatrixBase<A>& ref, const Eigen::MatrixBase<B>& test) {
  return compare<A, B, Arch>(ref, test, "sqnr_db").sqnr_db();
}

// Largest absolute difference.
template <class A, class B, class Arch = xsimd::default_arch>
[[nodiscard]] double max_abs_error(const Eigen::MatrixBase<A>& ref, const Eigen::MatrixBase<B>& test) {
  return compare<A, B, Arch>(ref, test, "max_abs_error").max_abs;
}

// Cosine similarity of the flattened tensors; 1 when both are zero, 0 when exactly one is.
template <class A, class B, class Arch = xsimd::default_arch>
[[nodiscard]] double cosine_similarity(const Eigen::MatrixBase<A>& ref, const Eigen::MatrixBase<B>& test) {
  return compare<A, B, Arch>(ref, test, "cosine_similarity").cosine();
}

namespace detail {

template <class A, class B>
void check_logits(const Eigen::MatrixBase<A>& p, const Eigen::MatrixBase<B>& q, const char* what) {
  check_same_shape(p, q, what);
  if (!p.allFinite() || !q.allFinite()) throw error(errc::non_finite, std::string(what) + ": logits must be finite");
}

// log(sum exp(x)) of row r, max-shifted so that no exp overflows.
template <class X>
double log_sum_exp_row(const X& x, index_t r) {
  double m = static_cast<double>(x.coeff(r, 0));
  for (index_t c = 1; c < x.cols(); ++c) m = std::max(m, static_cast<double>(x.coeff(r, c)));
  double z = 0.0;
  for (index_t c = 0; c < x.cols(); ++c) z += std::exp(static_cast<double>(x.coeff(r, c)) - m);
  return m + std::log(z);  // z >= 1 (the maximum contributes exp(0))
}

}  // namespace detail

// Mean over rows of KL(softmax(ref_row) || softmax(test_row)) in nats. Rows are samples (tokens),
// columns classes (vocabulary). Computed from log-softmaxes (x - logsumexp(x)) in double, so huge
// logits neither overflow nor lose the small probabilities; 0 for identical inputs; never negative.
template <class A, class B>
[[nodiscard]] double kl_divergence(const Eigen::MatrixBase<A>& ref_logits, const Eigen::MatrixBase<B>& test_logits) {
  detail::check_logits(ref_logits, test_logits, "kl_divergence");
  const A& p = ref_logits.derived();
  const B& q = test_logits.derived();
  double total = 0.0;
  for (index_t r = 0; r < p.rows(); ++r) {
    const double lse_p = detail::log_sum_exp_row(p, r), lse_q = detail::log_sum_exp_row(q, r);
    double kl = 0.0;
    for (index_t c = 0; c < p.cols(); ++c) {
      const double lp = static_cast<double>(p.coeff(r, c)) - lse_p;
      const double lq = static_cast<double>(q.coeff(r, c)) - lse_q;
      kl += std::exp(lp) * (lp - lq);
    }
    total += std::max(0.0, kl);  // rounding can leave a tiny negative sum for near-equal rows
  }
  return total / static_cast<double>(p.rows());
}

// Fraction of rows whose arg-max column agrees (ties: the first maximum of each row counts).
template <class A, class B>
[[nodiscard]] double top1_agreement(const Eigen::MatrixBase<A>& ref_logits, const Eigen::MatrixBase<B>& test_logits) {
  detail::check_logits(ref_logits, test_logits, "top1_agreement");
  auto argmax = [](const auto& x, index_t r) {
    index_t best = 0;
    for (index_t c = 1; c < x.cols(); ++c)
      if (x.coeff(r, c) > x.coeff(r, best)) best = c;
    return best;
  };
  index_t agree = 0;
  for (index_t r = 0; r < ref_logits.rows(); ++r)
    agree += argmax(ref_logits.derived(), r) == argmax(test_logits.derived(), r) ? 1 : 0;
  return static_cast<double>(agree) / static_cast<double>(ref_logits.rows());
}

}  // namespace mixprec
