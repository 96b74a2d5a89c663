// Dependencies between SMs: a writer release-stores the number of its readers into its semaphore after its
// stores; each reader spins (acquire, with back-off) until the value is nonzero, then takes one count back.
// The last reader leaves 0, so every launch (CUDA-graph replays included) starts from zeroed semaphores
// without a host-side reset; the host resets only after an error. A wait past WAIT_TIMEOUT_NS, or another SM's abort, ends the kernel with
// an error code in the status tensor instead of hanging the GPU.
//
// A counter (inputs of a counted reduction, fmt::LAYOUT_COUNTED) works differently: each of its n writers adds
// 1 with release semantics; each of its R readers waits until it holds n, then adds 1 itself once it has
// seen that (so the value only grows while any reader may still be waiting), and the reader whose add makes
// it n + R resets it to 0 for the next launch.
#pragma once
#include "format.h"
#include "globals.h"
#include "ptx.cuh"

namespace mlaprof {

__device__ inline void status_fail(const KernelStatus& st, int code, int instr, int sem) {
  if (atomicCAS(st.status, fmt::STATUS_OK, code) == fmt::STATUS_OK) {
    st.status[1] = blockIdx.x;
    st.status[2] = instr;
    st.status[3] = sem;
  }
  __threadfence();
  atomicExch(st.abort, 1);
}
__device__ inline bool status_aborted(const KernelStatus& st) { return ptx::ld_volatile(st.abort) != 0; }

constexpr int kSpinSleepMinNs = 32;    // first back-off: one globaltimer tick
constexpr int kSpinSleepMaxNs = 256;   // cap: wake-up within ~0.3 us (a tree level waits once per input); a
                                       // 4-byte poll per 256 ns per waiting lane is noise next to the KV stream

// Until the semaphore holds at least `target` (acquire, with back-off). Returns false (after recording the
// error) when the wait timed out or the kernel is aborting.
__device__ inline bool semaphore_wait_count(int* sem, int target, const KernelStatus& st, int instr, int sem_index) {
  if (ptx::ld_acquire(sem) >= target) return true;
  const uint64_t t0 = ptx::globaltimer();
  int sleep_ns = kSpinSleepMinNs;
  while (ptx::ld_acquire(sem) < target) {
    if (status_aborted(st)) return false;
    if (ptx::globaltimer() - t0 > static_cast<uint64_t>(fmt::WAIT_TIMEOUT_NS)) {
      status_fail(st, fmt::STATUS_WAIT_TIMEOUT, instr, sem_index);
      return false;
    }
    __nanosleep(sleep_ns);
    sleep_ns = min(sleep_ns * 2, kSpinSleepMaxNs);
  }
  return true;
}

// A reader of a released result: wait until it is nonzero, then take one count back (the last reader
// leaves 0 for the next launch; kernel end orders it).
__device__ inline bool semaphore_wait(int* sem, const KernelStatus& st, int instr, int sem_index) {
  if (!semaphore_wait_count(sem, 1, st, instr, sem_index)) return false;
  ptx::red_add_relaxed(sem, -1);
  return true;
}

// A reader of a counter, after its wait: the last of `readers` resets it (kernel end orders the reset
// before the next launch's writers).
__device__ inline void semaphore_count_seen(int* sem, int target, int readers) {
  if (atomicAdd(sem, 1) == target + readers - 1) atomicExch(sem, 0);
}

// Called by one thread after a barrier over every thread whose stores it publishes: the barrier orders
// their stores before this release, and a release is cumulative over what happened before it (the
// pattern CUTLASS's semaphores use). A full fence here cost ~0.7 us per tree edge (bench/NOTES.md v15).
// readers == fmt::SIGNAL_ADD: the semaphore is a counter, add 1 (release, so also cumulative).
__device__ inline void semaphore_signal(int* sem, int readers) {
  if (readers == fmt::SIGNAL_ADD) ptx::red_add_release(sem, 1);
  else ptx::st_release(sem, readers > 0 ? readers : 1);
}

}  // namespace mlaprof
