// Reusable work buffers for the fixed-point solvers.
//
// A solve at the usual sizes (m = 2048, n = 1024) needs a dozen or more m x n work arrays
// (the Anderson window, Picard's second buffer, the input term), each used for one solve and
// then freed. Fresh memory from the system costs a page fault per 4 KiB page on its first
// touch; on the virtual machines this project is benchmarked on that is about 2.5 ms per
// MiB (0.5 s for the 192 MiB window of a float64 Anderson solve), as much as all of the
// solve's vector arithmetic. The pool keeps released buffers mapped and hands them to the
// next solve that asks for the same size, so repeated solves (Monte-Carlo trials, the
// benchmark's rounds) fault their work memory in once.
//
// Idle buffers are marked MADV_FREE where the system has it: the kernel may take their
// pages back under memory pressure (a later touch then faults in zeroed pages), otherwise
// they are reused as they are. Idle memory is capped at kMaxIdleBytes (oldest unmapped
// first); release_all() unmaps every idle buffer. Buffers are page-aligned and their
// contents unspecified: the solvers write every element before reading it.
//
// Plain C++17, no pybind11.
#pragma once

#include <algorithm>
#include <cstddef>
#include <mutex>
#include <new>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#define DEQFAST_HAVE_MMAP 1
#endif

namespace deqfast {

class WorkspacePool {
 public:
  /// Largest total size of idle buffers kept for reuse.
  static constexpr std::size_t kMaxIdleBytes = std::size_t(1) << 30;

  static WorkspacePool& instance() {
    static WorkspacePool pool;
    return pool;
  }

  /// A buffer of at least `bytes` bytes: an idle one of the same rounded size, or a new one.
  void* acquire(std::size_t bytes) {
    bytes = round_up(bytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (std::size_t i = idle_.size(); i-- > 0;) {  // most recently released first
        if (idle_[i].bytes != bytes) continue;
        void* p = idle_[i].ptr;
        idle_.erase(idle_.begin() + std::ptrdiff_t(i));
        idle_bytes_ -= bytes;
        return p;
      }
    }
    return map(bytes);
  }

  /// Give back a buffer from acquire(ptr, bytes) with the same `bytes`.
  void release(void* ptr, std::size_t bytes) noexcept {
    if (!ptr) return;
    bytes = round_up(bytes);
    if (bytes > kMaxIdleBytes) {
      unmap(ptr, bytes);
      return;
    }
#if defined(DEQFAST_HAVE_MMAP) && defined(MADV_FREE)
    madvise(ptr, bytes, MADV_FREE);
#endif
    std::vector<Block> evicted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      try {
        idle_.push_back({ptr, bytes});
      } catch (...) {
        evicted.push_back({ptr, bytes});
      }
      if (evicted.empty()) idle_bytes_ += bytes;
      std::size_t drop = 0;
      while (idle_bytes_ > kMaxIdleBytes && drop < idle_.size()) idle_bytes_ -= idle_[drop++].bytes;
      for (std::size_t i = 0; i < drop; ++i) unmap(idle_[i].ptr, idle_[i].bytes);
      idle_.erase(idle_.begin(), idle_.begin() + std::ptrdiff_t(drop));
    }
    for (const Block& b : evicted) unmap(b.ptr, b.bytes);
  }

  /// Unmap every idle buffer; returns the bytes given back to the system.
  std::size_t release_all() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::size_t freed = idle_bytes_;
    for (const Block& b : idle_) unmap(b.ptr, b.bytes);
    idle_.clear();
    idle_bytes_ = 0;
    return freed;
  }

  /// Bytes held in idle buffers.
  std::size_t idle_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return idle_bytes_;
  }

 private:
  struct Block {
    void* ptr;
    std::size_t bytes;
  };

  static std::size_t page_size() {
#ifdef DEQFAST_HAVE_MMAP
    static const std::size_t size = std::size_t(sysconf(_SC_PAGESIZE));
    return size;
#else
    return 4096;
#endif
  }
  static std::size_t round_up(std::size_t bytes) {
    const std::size_t page = page_size();
    return (std::max<std::size_t>(bytes, 1) + page - 1) / page * page;
  }
  static void* map(std::size_t bytes) {
#ifdef DEQFAST_HAVE_MMAP
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    return p;
#else
    return ::operator new(bytes, std::align_val_t(64));
#endif
  }
  static void unmap(void* p, std::size_t bytes) noexcept {
#ifdef DEQFAST_HAVE_MMAP
    munmap(p, bytes);
#else
    (void)bytes;
    ::operator delete(p, std::align_val_t(64));
#endif
  }

  std::mutex mutex_;
  std::vector<Block> idle_;  // oldest first
  std::size_t idle_bytes_ = 0;
};

/// `count` arrays of `len` numbers each from the pool, given back on destruction.
///
/// Array i starts ((first + i) mod 16) x 256 bytes into its page-aligned buffer: the sweeps
/// stream up to a dozen arrays at once, and arrays at the same offset modulo 4 KiB would
/// compete for the same L1 cache sets. Give arrays streamed together distinct `first`s.
template <class Scalar>
class PooledArrays {
 public:
  static constexpr std::size_t kStaggerStep = 256, kStaggerSlots = 16;

  PooledArrays(std::ptrdiff_t len, int count, int first = 0)
      : bytes_(std::size_t(std::max<std::ptrdiff_t>(len, 1)) * sizeof(Scalar) + kStaggerStep * kStaggerSlots) {
    const int n = std::max(count, 0);
    bases_.reserve(std::size_t(n));
    ptrs_.reserve(std::size_t(n));
    try {
      for (int i = 0; i < n; ++i) {
        bases_.push_back(WorkspacePool::instance().acquire(bytes_));
        const std::size_t offset = std::size_t(first + i) % kStaggerSlots * kStaggerStep;
        ptrs_.push_back(reinterpret_cast<Scalar*>(static_cast<char*>(bases_.back()) + offset));
      }
    } catch (...) {
      give_back();
      throw;
    }
  }
  PooledArrays(const PooledArrays&) = delete;
  PooledArrays& operator=(const PooledArrays&) = delete;
  ~PooledArrays() { give_back(); }

  Scalar* operator[](int i) const { return ptrs_[std::size_t(i)]; }
  int size() const { return int(ptrs_.size()); }

 private:
  void give_back() noexcept {
    for (void* p : bases_) WorkspacePool::instance().release(p, bytes_);
    bases_.clear();
    ptrs_.clear();
  }
  std::size_t bytes_;
  std::vector<void*> bases_;
  std::vector<Scalar*> ptrs_;
};

}  // namespace deqfast
