// The persistent interpreter: one block per SM walks its own instruction list. Warp 0 runs every op's
// producer part, warps 4..11 (two warpgroups) its consumer part; the two roles meet only through shared-memory mbarriers.
// Ops are a compile-time list: a new op is a struct with kOpcode, operands_ok, produce and consume, added to
// the list where the kernel is instantiated (megakernel.cu). Nothing here names MLA. The consumers run
// consume only for operands that pass operands_ok; produce checks its own operands, so that it can issue
// what is safe for any operands (a copy of rows the tensor map bounds) before a check that waits on memory.
#pragma once
#include "context.cuh"

namespace mlaprof {

template <typename... Ops>
struct OpList {
  // Runs the op whose opcode matches; `found` says whether one did.
  template <bool T>
  __device__ static bool produce(int opcode, Ctx<T>& c, const Instr& in, int instr, bool& found) {
    bool ok = true;
    found = ((opcode == Ops::kOpcode ? (ok = Ops::produce(c, in, instr), true) : false) || ...);
    return ok;
  }
  template <bool T>
  __device__ static bool consume(int opcode, Ctx<T>& c, const Instr& in, int instr, bool& found) {
    bool ok = true;
    found = ((opcode == Ops::kOpcode ? (ok = Ops::operands_ok(c.g, in) && Ops::consume(c, in, instr), true) : false) || ...);
    return ok;
  }
};

template <bool kTiming, typename Ops>
__global__ void __launch_bounds__(kThreads, 1) interpreter_kernel(const __grid_constant__ Globals g) {
  extern __shared__ __align__(128) unsigned char smem_dyn[];
  unsigned char* smem_raw = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smem_dyn) + 1023) & ~uintptr_t(1023));
  Smem& s = *reinterpret_cast<Smem*>(smem_raw);
  const int tid = threadIdx.x;

  // Shared memory is not cleared: every byte is written before it is read (copies write whole boxes, rows
  // past the tensors zero-filled; the consumers zero V rows past a sequence's end). Clearing 221 KB took
  // about 1 us at every launch's start, before any copy (with the early Q issue in partial.cuh: -1.6 us
  // on seed-representative, bench/NOTES.md v22). A test build fills it with NaN instead and must compute
  // the same outputs bit for bit (tests/test_kernel_gpu.py).
#ifdef MLAPROF_POISON_SMEM
  for (int i = tid; i < static_cast<int>(sizeof(Smem) / 16); i += kThreads)
    reinterpret_cast<uint4*>(smem_raw)[i] = make_uint4(~0u, ~0u, ~0u, ~0u);
#endif
  if (tid == 0) {
    for (int i = 0; i < kStages; ++i) {
      ptx::mbar_init(&s.full[i], 1);
      ptx::mbar_init(&s.empty[i], kConsumerWarpgroups);
    }
    ptx::mbar_init(&s.q_full, 1);
    ptx::mbar_init(&s.q_empty, kConsumerWarpgroups);
    s.abort = 0;
    ptx::fence_barrier_init();
  }
  ptx::fence_proxy_async();  // the copy engine writes over what the zeroing stores wrote
  __syncthreads();

  EventRecorder<kTiming> rec(g.events, g.event_counts, g.event_capacity);
  Ctx<kTiming> c{g, s, rec, tid & 31, tid >> 5, tid - kProducerWarps * 32, tid == kProducerWarps * 32};
  const int* list = g.instructions + static_cast<long long>(blockIdx.x) * g.max_instr * fmt::WORDS_PER_INSTRUCTION;

  if (c.warp < kProducerWarps) {
    ptx::setmaxnreg_dec<kProducerRegs>();
    if (c.warp != 0) return;  // the rest of the producer warpgroup only donates its registers
    wg::prefetch_tensormap(&g.q_map);  // the first bulk copies need them: fetch while the instruction loads
    wg::prefetch_tensormap(&g.kv_map);
    for (int i = 0; i < g.max_instr; ++i) {
      const Instr in = Instr::load(list + i * fmt::WORDS_PER_INSTRUCTION);
      if (in.opcode == fmt::OP_END) break;
      bool found;
      const bool ok = Ops::produce(in.opcode, c, in, i, found);
      if (!found || !ok) break;  // the consumers see the same instruction and report it
    }
    // Never leave the block with a bulk copy still writing its shared memory.
    if (c.lane == 0) {
      Ring r = c.ring;
      for (int k = 0; k < kStages; ++k) {
        r.stage = (r.stage + kStages - 1) % kStages;
        if (r.stage == kStages - 1) r.phase ^= 1;
        c.bounded_wait(&s.full[r.stage], r.phase);
      }
      c.bounded_wait(&s.q_full, c.q_phase ^ 1);
    }
  } else {
    ptx::setmaxnreg_inc<kConsumerRegs>();
    for (int i = 0; i < g.max_instr; ++i) {
      const unsigned long long t_begin = c.leader ? rec.now() : 0;
      const Instr in = Instr::load(list + i * fmt::WORDS_PER_INSTRUCTION);
      const int opcode = in.opcode;
      if (opcode == fmt::OP_END) break;
      if constexpr (kTiming) {
        if (c.leader) c.record_setup(i, t_begin, rec.now());
      }
      bool found;
      const bool ok = Ops::consume(opcode, c, in, i, found);
      if (!found || !ok) {
        if (c.leader) {
          const int code = !found ? fmt::STATUS_BAD_OPCODE : (status_aborted(g.status) ? -1 : fmt::STATUS_BAD_OPERAND);
          if (code > 0) c.fail(code, i, -1);
          else s.abort = 1;
        }
        break;
      }
      if constexpr (kTiming) {
        if (c.leader) rec.record(fmt::KIND_INSTRUCTION, fmt::ROLE_CONTROLLER, i, -1, t_begin, rec.now());
      }
    }
    if (c.leader) {
      s.abort = 1;  // release a producer still waiting for a stage (only possible after an error)
      rec.finish();
    }
  }
}

}  // namespace mlaprof
