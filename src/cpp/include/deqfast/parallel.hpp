// Plumbing shared by every OpenMP region of the core: thread-count resolution, carrying an
// exception out of a parallel region, and cooperative cancellation.
//
// * An exception that escapes an OpenMP structured block calls std::terminate (the whole
//   process aborts). Every parallel body therefore runs under ParallelErrors::guard, which
//   keeps the first exception, makes the other threads skip their remaining work, and lets
//   the caller rethrow it after the region, on the calling thread.
// * Long loops poll a Cancel token. The poll is a callback supplied by the caller (the
//   bindings check Python's signal handlers with the GIL re-acquired; plain C++ callers pass
//   none), called only from the thread that created the token, at most every `interval`.
//   Once it reports a stop, every thread sees `stopped()` and abandons its work; the caller
//   then throws Interrupted. The core itself never includes Python.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>

#ifdef DEQFAST_HAVE_OPENMP
#include <omp.h>
#endif

namespace deqfast {

/// Largest thread count any entry point accepts; requests above it are clamped (a thread
/// team of 10^5 exhausts the OpenMP runtime's stack reservations and crashes it).
inline constexpr int kMaxThreads = 1024;

/// Threads to use for `requested` (0 or negative: the OpenMP default), clamped to
/// [1, kMaxThreads]. Without OpenMP always 1.
inline int resolve_threads(int requested) {
#ifdef DEQFAST_HAVE_OPENMP
  const int t = requested > 0 ? requested : omp_get_max_threads();
  return std::clamp(t, 1, kMaxThreads);
#else
  (void)requested;
  return 1;
#endif
}

/// Index of the calling thread within the current team (0 outside a parallel region).
inline int thread_index() {
#ifdef DEQFAST_HAVE_OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

/// Thrown by a computation that stopped because its Cancel token reported a stop.
struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

/// Cooperative cancellation token for one call into the core.
class Cancel {
 public:
  using Poll = std::function<bool()>;  // true: stop now

  Cancel() = default;
  explicit Cancel(Poll poll, std::chrono::milliseconds interval = std::chrono::milliseconds(100))
      : poll_(std::move(poll)), interval_(interval), owner_(std::this_thread::get_id()),
        last_(std::chrono::steady_clock::now()) {}

  /// Poll the callback if this is the owning thread and `interval` has passed; returns
  /// whether the computation must stop. Cheap enough to call once per tile or row.
  bool check() {
    if (stop_.load(std::memory_order_relaxed)) return true;
    if (!poll_ || std::this_thread::get_id() != owner_) return false;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ < interval_) return false;
    last_ = now;
    if (poll_()) stop_.store(true, std::memory_order_relaxed);
    return stop_.load(std::memory_order_relaxed);
  }

  /// Whether a stop was requested (any thread; never calls the callback).
  bool stopped() const { return stop_.load(std::memory_order_relaxed); }

  /// Ask every thread to stop (e.g. after an error elsewhere).
  void request_stop() { stop_.store(true, std::memory_order_relaxed); }

  /// Throw Interrupted if a stop was requested; call after a parallel region.
  void throw_if_stopped() const {
    if (stopped()) throw Interrupted();
  }

 private:
  Poll poll_;
  std::chrono::milliseconds interval_{100};
  std::thread::id owner_{};
  std::chrono::steady_clock::time_point last_{};
  std::atomic<bool> stop_{false};
};

/// The first exception raised inside a parallel region, carried out of it.
///
///   ParallelErrors errors;
///   #pragma omp parallel for
///   for (...) errors.guard([&] { ...may throw... });
///   errors.rethrow();  // on the calling thread, after the region
class ParallelErrors {
 public:
  /// Run body(); an exception is recorded (the first one wins) instead of escaping. Once an
  /// error is recorded, later guards skip their bodies.
  template <class Body>
  void guard(Body&& body) noexcept {
    if (failed_.load(std::memory_order_relaxed)) return;
    try {
      body();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!first_) first_ = std::current_exception();
      failed_.store(true, std::memory_order_relaxed);
    }
  }

  bool failed() const { return failed_.load(std::memory_order_relaxed); }

  /// Rethrow the recorded exception, if any.
  void rethrow() const {
    if (first_) std::rethrow_exception(first_);
  }

 private:
  std::exception_ptr first_;
  std::atomic<bool> failed_{false};
  std::mutex mutex_;
};

}  // namespace deqfast
