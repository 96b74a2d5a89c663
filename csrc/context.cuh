// Everything an op sees: kernel arguments (Globals), the block's shared memory (Smem), and per-role state
// (Ctx). Compile-time sizes live here with the reason for each.
#pragma once
#include <cuda_bf16.h>
#include "format.h"
#include "globals.h"
#include "ptx.cuh"
#include "semaphore.cuh"
#include "timing.cuh"
#include "wgmma.cuh"

namespace mlaprof {

constexpr int kProducerWarps = 4;                         // one warpgroup (setmaxnreg works per warpgroup); warp 0 issues
constexpr int kConsumerWarps = fmt::CONSUMER_WARPS;       // 16 rows x 512 cols of fp32 accumulators per 2 warps
constexpr int kConsumerThreads = kConsumerWarps * 32;
constexpr int kConsumerWarpgroups = kConsumerWarps / 4;
constexpr int kThreads = (kProducerWarps + kConsumerWarps) * 32;
constexpr int kProducerRegs = 40;                         // setmaxnreg: the producer only computes addresses
constexpr int kConsumerRegs = 232;                        // 128 fp32 accumulators + fragments; 128*40 + 256*232 <= 64K
constexpr int kStages = fmt::KV_STAGES;                   // 2 x 73.7 KB tiles in flight + 73.7 KB of Q fit in 227 KB
constexpr int kTile = fmt::KV_TILE_TOKENS;
constexpr int kChunkCols = 64;                            // one 128-byte swizzled row of bf16 per TMA box
constexpr int kChunks = fmt::HEAD_DIM_QK / kChunkCols;    // 9 boxes per tile: 8 of latent (also V) + 1 of rope
constexpr int kVChunks = fmt::HEAD_DIM_V / kChunkCols;    // V is the first 8 chunks of the same tile
constexpr int kQRows = 64;                                // wgmma M: query rows are padded up to 64
constexpr int kQChunkBytes = kQRows * kChunkCols * 2;     // 8 KB
constexpr int kKVChunkBytes = kTile * kChunkCols * 2;     // 8 KB
constexpr int kConsumerBarrier = 1;                       // named barrier id for the consumer warps
constexpr int kWarpgroupBarrier0 = 2;                     // + consumer warpgroup index: one warpgroup's barrier
constexpr int kLastTile = 1 << 30;                       // Smem::tile_of flag: this partial's last tile (above any tile index)
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;



// Tiles as the copy engine writes them with 128-byte swizzle: [chunk][row][64 bf16], each chunk 1 KB aligned.
struct alignas(1024) Smem {
  bf16 q[kChunks][kQRows][kChunkCols];
  bf16 kv[kStages][kChunks][kTile][kChunkCols];
  unsigned long long issue_ts[kStages + 1];   // producer's issue time per stage; [kStages] is Q's
  unsigned long long wait_ts[kStages][fmt::MAX_FANIN][2];  // a reduction's semaphore waits per input (start, end), by stage
  int tile_of[kStages];                        // the tile of its range each stage holds, | kLastTile on the last
  uint64_t full[kStages], empty[kStages], q_full, q_empty;
  int abort;                                   // consumers gave up: the producer stops too
};

constexpr int kSmemBytes = sizeof(Smem) + 1024;  // + slack to align the dynamic base to 1 KB (swizzle atoms)
static_assert(kSmemBytes <= 227 * 1024, "an H100 block has at most 227 KB of shared memory");

// A ring position: stage index and the mbarrier phase bit it is on.
struct Ring {
  int stage = 0;
  uint32_t phase = 0;
  __device__ void advance() {
    if (++stage == kStages) {
      stage = 0;
      phase ^= 1;
    }
  }
};

template <bool kTiming>
struct Ctx {
  const Globals& g;
  Smem& s;
  EventRecorder<kTiming>& rec;  // used by the consumer leader only
  int lane, warp;               // warp: 0 = producer, 1..kConsumerWarps = consumers
  int ctid;                     // consumer thread id 0..255 (meaningless in the producer)
  bool leader;                  // consumer thread 0: records events, waits on semaphores
  Ring ring;                    // this role's position in the KV stage ring
  uint32_t q_phase = 0;         // this role's phase of the Q buffer barriers
  unsigned long long last_load_end = 0;  // leader: end of the previous LOAD span
  unsigned long long last_ctrl_end = 0;  // leader: end of the previous SETUP or WAIT span

  // The producer waits on a reduction's semaphores as soon as it reaches the instruction, often while the
  // consumers still finish earlier work. The controller row shows only the exposed part of a wait: from the
  // end of this instruction's setup (or the previous wait) to the acquire; a wait hidden behind earlier work
  // is a zero-length span at that point.
  __device__ void record_setup(int instr, unsigned long long start, unsigned long long end) {
    rec.record(fmt::KIND_SETUP, fmt::ROLE_CONTROLLER, instr, -1, start, end);
    last_ctrl_end = end;
  }
  __device__ void record_wait(int instr, int input, unsigned long long start, unsigned long long end) {
    const unsigned long long s0 = start > last_ctrl_end ? start : last_ctrl_end;
    const unsigned long long e0 = end > s0 ? end : s0;
    rec.record(fmt::KIND_WAIT, fmt::ROLE_CONTROLLER, instr, input, s0, e0);
    last_ctrl_end = e0;
  }

  // LOAD spans form one non-overlapping stream per SM: a span starts at its copy's issue or when the
  // previous load's data was seen, whichever is later, and ends when the consumers see its data. So the
  // producer row always shows the load the pipeline is waiting on next.
  __device__ void record_load(int instr, int aux, unsigned long long issued, unsigned long long seen) {
    const unsigned long long start = issued > last_load_end ? issued : last_load_end;
    rec.record(fmt::KIND_LOAD, fmt::ROLE_PRODUCER, instr, aux, start < seen ? start : seen, seen);
    last_load_end = seen;
  }

  __device__ void consumer_sync() { ptx::named_barrier(kConsumerBarrier, kConsumerThreads); }

  // Every pipeline wait gives up when the other role aborted, and after WAIT_TIMEOUT_NS on its own, so that
  // neither a bad schedule nor a kernel bug can hang the GPU: the status tensor says what happened.
  __device__ bool bounded_wait(uint64_t* bar, uint32_t parity) {
    if (ptx::mbar_try_wait(bar, parity)) return true;
    const unsigned long long t0 = ptx::globaltimer();
    while (!ptx::mbar_try_wait(bar, parity)) {
      if (*reinterpret_cast<volatile int*>(&s.abort)) return false;
      if (ptx::globaltimer() - t0 > static_cast<unsigned long long>(fmt::WAIT_TIMEOUT_NS)) {
        status_fail(g.status, fmt::STATUS_PIPELINE_TIMEOUT, -1, -1);
        s.abort = 1;
        return false;
      }
    }
    return true;
  }
  __device__ bool consumer_wait(uint64_t* bar, uint32_t parity) { return bounded_wait(bar, parity); }
  __device__ bool producer_wait(uint64_t* bar, uint32_t parity) { return bounded_wait(bar, parity); }
  __device__ void fail(int code, int instr, int sem) {
    status_fail(g.status, code, instr, sem);
    s.abort = 1;
  }
};

// Operands of one instruction, decoded once per role.
struct Instr {
  int opcode, task, seq, q_start, q_count, kv_start, kv_end, out_slot, signal_sem, num_inputs, signal_count;
  int steal_sem, steal_member, steal_members;
  const int* words;
  // Every word in one batch of loads, the opcode among them: the first instruction of a launch waits for one
  // round trip to global memory instead of two (opcode, then operands).
  __device__ static Instr load(const int* w) {
    using namespace fmt;
    return Instr{__ldg(w + W_OPCODE),     __ldg(w + W_TASK),        __ldg(w + W_SEQ),
                 __ldg(w + W_Q_START),    __ldg(w + W_Q_COUNT),     __ldg(w + W_KV_START),
                 __ldg(w + W_KV_END),     __ldg(w + W_OUT_SLOT),    __ldg(w + W_SIGNAL_SEM),
                 __ldg(w + W_NUM_INPUTS), __ldg(w + W_SIGNAL_COUNT), __ldg(w + W_STEAL_SEM),
                 __ldg(w + W_STEAL_MEMBER), __ldg(w + W_STEAL_MEMBERS), w};
  }
  __device__ bool steals() const { return steal_members > 0; }
  __device__ int rows() const { return q_count * fmt::NUM_HEADS_Q; }
  // Output row of local row r: in the output tensor, or in the scratch slot (absolute query token).
  __device__ long long out_row(const Globals& g, int r) const {
    return static_cast<long long>(seq * g.s_q + q_start) * fmt::NUM_HEADS_Q + r;
  }
  __device__ long long slot_row(int slot, int r) const {
    return static_cast<long long>(slot) * fmt::MAX_ROWS + q_start * fmt::NUM_HEADS_Q + r;
  }
  // Element (local row r, column col) of a scratch slot's O, stored in column blocks (fmt::SCRATCH_BLOCK_COLS).
  __device__ long long scratch_o_index(int slot, int r, int col) const {
    constexpr int kBlock = fmt::SCRATCH_BLOCK_COLS;
    return static_cast<long long>(slot) * fmt::MAX_ROWS * fmt::HEAD_DIM_V + (col / kBlock) * (fmt::MAX_ROWS * kBlock) +
           (q_start * fmt::NUM_HEADS_Q + r) * kBlock + col % kBlock;
  }
  // Shared operand checks: the producer and the consumers must agree to skip a bad instruction.
  __device__ bool common_ok(const Globals& g) const {
    return seq >= 0 && seq < g.batch && q_count >= 1 && q_start >= 0 && q_start + q_count <= g.s_q &&
           (out_slot == fmt::NO_SLOT || (out_slot >= 0 && out_slot < g.num_slots)) &&
           (signal_sem == fmt::NO_SEM || (signal_sem >= 0 && signal_sem < g.num_sems));
  }
};

}  // namespace mlaprof
