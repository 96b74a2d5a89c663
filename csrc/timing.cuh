// Per-SM event recording into the timing buffer (layout: mlaprof/format.py).
// One thread per SM records (the consumer leader), so the event index lives in a register: no atomics.
// With kTiming = false every member is an empty inline function and the buffer is never touched.
#pragma once
#include "format.h"
#include "ptx.cuh"

namespace mlaprof {

template <bool kTiming>
struct EventRecorder;

template <>
struct EventRecorder<false> {
  __device__ EventRecorder(long long*, int*, int) {}
  __device__ __forceinline__ uint64_t now() const { return 0; }
  __device__ __forceinline__ void record(int, int, int, int, uint64_t, uint64_t) {}
  __device__ __forceinline__ void finish() {}
};

template <>
struct EventRecorder<true> {
  long long* events;  // this SM's [capacity][EVENT_WORDS]
  int* count_out;     // this SM's counter in the counts tensor
  int capacity;
  int count = 0;

  __device__ EventRecorder(long long* all_events, int* counts, int cap)
      : events(all_events + static_cast<long long>(blockIdx.x) * cap * fmt::EVENT_WORDS),
        count_out(counts + blockIdx.x),
        capacity(cap) {}

  __device__ __forceinline__ uint64_t now() const { return ptx::globaltimer(); }

  // One event: two 16-byte stores. Past capacity it only counts, so overflow is reported, never silent.
  __device__ __forceinline__ void record(int kind, int role, int instr, int aux, uint64_t start, uint64_t end) {
    if (count < capacity) {
      long long header = (static_cast<long long>(instr) << fmt::HEADER_INSTR_SHIFT) |
                         (role << fmt::HEADER_ROLE_SHIFT) | kind;
      longlong2* dst = reinterpret_cast<longlong2*>(events + static_cast<long long>(count) * fmt::EVENT_WORDS);
      dst[0] = make_longlong2(header, aux);
      dst[1] = make_longlong2(static_cast<long long>(start), static_cast<long long>(end));
    }
    ++count;
  }
  __device__ __forceinline__ void finish() { *count_out = count; }
};

}  // namespace mlaprof
