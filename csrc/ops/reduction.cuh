// `reduction`: merge up to MAX_FANIN partial results (fp32 O + LSE in scratch slots, written by other SMs)
// into the final bf16 output + LSE, or into a scratch slot one tree level up. The consumer leader waits on
// each input's semaphore; inputs are then read straight from L2 (ld.global.cg: never a stale L1 line).
#pragma once
#include "../context.cuh"

namespace mlaprof {

struct ReductionOp {
  static constexpr int kOpcode = fmt::OP_REDUCTION;
  static constexpr int kVec = 4;  // floats per 16-byte access
  static constexpr int kVecsPerRow = fmt::HEAD_DIM_V / kVec;
  static constexpr int kBatch = 2;  // row-chunks whose loads are issued together (4 spills registers)

  __device__ static bool operands_ok(const Globals& g, const Instr& in) {
    if (!in.common_ok(g) || in.num_inputs < 1 || in.num_inputs > fmt::MAX_FANIN) return false;
    for (int i = 0; i < in.num_inputs; ++i) {
      const int slot = __ldg(in.words + fmt::W_INPUT_SLOTS + i), sem = __ldg(in.words + fmt::W_INPUT_SEMS + i);
      if (slot < 0 || slot >= g.num_slots || slot == in.out_slot || sem < 0 || sem >= g.num_sems) return false;
    }
    return true;
  }

  template <bool T>
  __device__ static bool produce(Ctx<T>&, const Instr&, int) {
    return true;  // nothing to stage: inputs are small and come from L2, after the semaphores say so
  }

  template <bool T>
  __device__ static bool consume(Ctx<T>& c, const Instr& in, int instr) {
    const Globals& g = c.g;
    Smem& s = c.s;
    const int k = in.num_inputs, rows = in.rows();
    int slots[fmt::MAX_FANIN];
#pragma unroll
    for (int i = 0; i < fmt::MAX_FANIN; ++i) slots[i] = i < k ? __ldg(in.words + fmt::W_INPUT_SLOTS + i) : 0;

    bool ok = true;
    if (c.leader) {
      for (int i = 0; i < k && ok; ++i) {
        const int sem = __ldg(in.words + fmt::W_INPUT_SEMS + i);
        unsigned long long t0 = 0;
        if constexpr (T) t0 = c.rec.now();
        ok = semaphore_wait(g.sems + sem, g.status, instr, sem);
        if constexpr (T) c.rec.record(fmt::KIND_WAIT, fmt::ROLE_CONTROLLER, instr, i, t0, c.rec.now());
      }
      __threadfence();  // acquire side: the inputs' stores are visible to this block from here on
    }
    if (!c.consumer_barrier_and(ok)) return false;

    unsigned long long t_compute = 0;
    if constexpr (T) {
      if (c.leader) t_compute = c.rec.now();
    }
    // Weights per row: w_i = exp(lse_i - lse_max) / sum_j exp(lse_j - lse_max).
    if (c.ctid < rows) {
      const int r = c.ctid;
      float lse[fmt::MAX_FANIN];
      float mx = -INFINITY;
#pragma unroll
      for (int i = 0; i < fmt::MAX_FANIN; ++i) {
        lse[i] = i < k ? __ldcg(g.scratch_lse + in.slot_row(slots[i], r)) : -INFINITY;
        mx = fmaxf(mx, lse[i]);
      }
      float sum = 0.f;
#pragma unroll
      for (int i = 0; i < fmt::MAX_FANIN; ++i) {
        lse[i] = (mx == -INFINITY) ? 0.f : __expf(lse[i] - mx);
        sum += lse[i];
      }
      const float inv = sum > 0.f ? 1.f / sum : 0.f;
#pragma unroll
      for (int i = 0; i < fmt::MAX_FANIN; ++i) s.red_w[r][i] = lse[i] * inv;
      const float out_lse = sum > 0.f ? mx + __logf(sum) : -INFINITY;
      if (in.out_slot == fmt::NO_SLOT) g.out_lse[in.out_row(g, r)] = out_lse;
      else __stcg(g.scratch_lse + in.slot_row(in.out_slot, r), out_lse);
    }
    c.consumer_sync();

    const int total = rows * kVecsPerRow;
    for (int base = c.ctid; base < total; base += kConsumerThreads * kBatch) {
      float4 acc[kBatch];
      float4 v[kBatch][fmt::MAX_FANIN];
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        const int idx = base + j * kConsumerThreads;
        const int r = idx / kVecsPerRow, c4 = idx % kVecsPerRow;
#pragma unroll
        for (int i = 0; i < fmt::MAX_FANIN; ++i)
          if (i < k && idx < total)
            v[j][i] = __ldcg(reinterpret_cast<const float4*>(g.scratch_o + in.slot_row(slots[i], r) * fmt::HEAD_DIM_V) + c4);
      }
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        const int idx = base + j * kConsumerThreads;
        if (idx >= total) continue;
        const int r = idx / kVecsPerRow, c4 = idx % kVecsPerRow;
        acc[j] = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
        for (int i = 0; i < fmt::MAX_FANIN; ++i) {
          if (i < k) {
            const float w = s.red_w[r][i];
            acc[j].x += w * v[j][i].x;
            acc[j].y += w * v[j][i].y;
            acc[j].z += w * v[j][i].z;
            acc[j].w += w * v[j][i].w;
          }
        }
        if (in.out_slot == fmt::NO_SLOT) {
          uint2 packed = make_uint2(ptx::pack_bf16(acc[j].x, acc[j].y), ptx::pack_bf16(acc[j].z, acc[j].w));
          *reinterpret_cast<uint2*>(g.out + in.out_row(g, r) * fmt::HEAD_DIM_V + c4 * kVec) = packed;
        } else {
          __stcg(reinterpret_cast<float4*>(g.scratch_o + in.slot_row(in.out_slot, r) * fmt::HEAD_DIM_V) + c4, acc[j]);
        }
      }
    }
    unsigned long long t_store = 0;
    if constexpr (T) {
      if (c.leader) {
        t_store = c.rec.now();
        c.rec.record(fmt::KIND_COMPUTE, fmt::ROLE_CONSUMER, instr, -1, t_compute, t_store);
      }
    }
    c.consumer_sync();  // every thread's stores precede the leader's gpu-scope release (cf. grid sync)
    if (c.leader && in.signal_sem != fmt::NO_SEM) semaphore_signal(g.sems + in.signal_sem, in.signal_count);
    if constexpr (T) {
      if (c.leader) c.rec.record(fmt::KIND_STORE, fmt::ROLE_CONSUMER, instr, -1, t_store, c.rec.now());
    }
    return true;
  }
};

}  // namespace mlaprof
