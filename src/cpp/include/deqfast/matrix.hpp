// The matrix aliases shared by the core: row-major storage matches NumPy's C order, so the
// bindings map arrays without copies. Also the cache-line streaming stores that write the
// large outputs once without reading them first.
#pragma once

#include <Eigen/Dense>
#include <cstddef>
#include <cstdint>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace deqfast {

template <class Scalar>
using RowMat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class Scalar>
using ColMat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
using RowMatrix = RowMat<double>;

/// Bytes of a cache line: the unit of the streaming stores.
inline constexpr std::size_t kLineBytes = 64;

/// Entries of type T in one cache line.
template <class T>
inline constexpr std::ptrdiff_t kLineEntries = std::ptrdiff_t(kLineBytes / sizeof(T));

/// Whether `p` is the first byte of a cache line.
inline bool line_aligned(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % kLineBytes == 0; }

/// Entries of type T from `p` to the next cache-line boundary (0 if `p` is on one; -1 if `p` is
/// not aligned to T, so that no entry ever starts a line).
template <class T>
inline std::ptrdiff_t entries_to_line(const T* p) {
  const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p);
  if (a % sizeof(T)) return -1;
  return std::ptrdiff_t((kLineBytes - a % kLineBytes) % kLineBytes / sizeof(T));
}

/// Store one whole cache line at `dst` (line-aligned) from kLineEntries<T> doubles at `src`,
/// each rounded to T exactly as static_cast<T> rounds it (IEEE round to nearest), with
/// non-temporal stores: the line goes to memory without being read into the cache first,
/// which halves the memory traffic of writing an output that is not read again soon. The
/// stores are weakly ordered: call stream_fence() before another thread reads them. Without
/// SSE2 (not x86) the line is stored normally.
template <class T>
inline void stream_line(T* dst, const double* src) {
#if defined(__AVX__)
  if constexpr (sizeof(T) == sizeof(double)) {
    _mm256_stream_pd(reinterpret_cast<double*>(dst), _mm256_loadu_pd(src));
    _mm256_stream_pd(reinterpret_cast<double*>(dst) + 4, _mm256_loadu_pd(src + 4));
  } else {
    for (int k = 0; k < 2; ++k, src += 8) {
      const __m256 v = _mm256_set_m128(_mm256_cvtpd_ps(_mm256_loadu_pd(src + 4)), _mm256_cvtpd_ps(_mm256_loadu_pd(src)));
      _mm256_stream_ps(reinterpret_cast<float*>(dst) + 8 * k, v);
    }
  }
#elif defined(__SSE2__)
  if constexpr (sizeof(T) == sizeof(double)) {
    for (int k = 0; k < 8; k += 2) _mm_stream_pd(reinterpret_cast<double*>(dst) + k, _mm_loadu_pd(src + k));
  } else {
    for (int k = 0; k < 16; k += 4) {
      const __m128 v = _mm_movelh_ps(_mm_cvtpd_ps(_mm_loadu_pd(src + k)), _mm_cvtpd_ps(_mm_loadu_pd(src + k + 2)));
      _mm_stream_ps(reinterpret_cast<float*>(dst) + k, v);
    }
  }
#else
  for (std::ptrdiff_t k = 0; k < kLineEntries<T>; ++k) dst[k] = static_cast<T>(src[k]);
#endif
}

/// Make this thread's streaming stores visible before any later store (and so to a thread that
/// synchronises with it afterwards, e.g. at the end of an OpenMP region).
inline void stream_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

}  // namespace deqfast
