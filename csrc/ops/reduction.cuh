// `reduction`: merge up to MAX_FANIN partial results (fp32 O + LSE in scratch slots, written by other SMs)
// into the final bf16 output + LSE, or into a scratch slot one tree level up. The producer waits on each
// input's semaphore, then bulk-copies the input 16 rows at a time (32 KB of O + 64 B of LSE per stage) into
// the same stage ring the partials use; the consumers merge stage by stage with an online log-sum-exp, so
// several inputs are in flight at once instead of each thread waiting on its own L2 loads.
#pragma once
#include "../context.cuh"

namespace mlaprof {

struct ReductionOp {
  static constexpr int kOpcode = fmt::OP_REDUCTION;
  static constexpr int kChunkRows = 16;                                   // rows per stage load
  static constexpr int kChunkBytes = kChunkRows * fmt::HEAD_DIM_V * 4;   // 32 KB of fp32 O
  static constexpr int kLseBytes = kChunkRows * 4;
  static constexpr int kVecsPerRow = fmt::HEAD_DIM_V / 4;                 // float4 per row
  static constexpr int kVecsPerThread = kChunkRows * kVecsPerRow / kConsumerThreads;  // 8
  static_assert(kChunkBytes + kLseBytes <= static_cast<int>(sizeof(Smem::kv[0])), "a stage holds one input chunk");

  __device__ static bool operands_ok(const Globals& g, const Instr& in) {
    if (!in.common_ok(g) || in.num_inputs < 1 || in.num_inputs > fmt::MAX_FANIN) return false;
    for (int i = 0; i < in.num_inputs; ++i) {
      const int slot = __ldg(in.words + fmt::W_INPUT_SLOTS + i), sem = __ldg(in.words + fmt::W_INPUT_SEMS + i);
      if (slot < 0 || slot >= g.num_slots || slot == in.out_slot || sem < 0 || sem >= g.num_sems) return false;
    }
    return true;
  }

  // ---------------------------------------------------------------- producer
  template <bool T>
  __device__ static bool produce(Ctx<T>& c, const Instr& in, int instr) {
    const Globals& g = c.g;
    Smem& s = c.s;
    const int k = in.num_inputs, chunks = in.q_count;
    for (int ch = 0; ch < chunks; ++ch) {
      for (int i = 0; i < k; ++i) {
        const int slot = __ldg(in.words + fmt::W_INPUT_SLOTS + i);
        if (ch == 0) {  // first use of input i: its producer must have released it
          bool ok = true;
          if (c.lane == 0) {
            const int sem = __ldg(in.words + fmt::W_INPUT_SEMS + i);
            const unsigned long long t0 = ptx::globaltimer();
            ok = semaphore_wait(g.sems + sem, g.status, instr, sem);
            s.wait_ts[i][0] = t0;
            s.wait_ts[i][1] = ptx::globaltimer();
            asm volatile("fence.proxy.async.global;" ::: "memory");  // the copy engine reads what was released
          }
          ok = __shfl_sync(0xffffffff, ok, 0);
          if (!ok) {
            s.abort = 1;
            return false;
          }
        }
        const int stage = c.ring.stage;
        if (!c.producer_wait(&s.empty[stage], c.ring.phase ^ 1)) return false;
        if (c.lane == 0) {
          const long long row = in.slot_row(slot, ch * kChunkRows);
          char* dst = reinterpret_cast<char*>(&s.kv[stage][0][0][0]);
          ptx::mbar_arrive_expect_tx(&s.full[stage], kChunkBytes + kLseBytes);
          ptx::bulk_copy_g2s(dst, g.scratch_o + row * fmt::HEAD_DIM_V, kChunkBytes, &s.full[stage]);
          ptx::bulk_copy_g2s(dst + kChunkBytes, g.scratch_lse + row, kLseBytes, &s.full[stage]);
        }
        __syncwarp();
        c.ring.advance();
      }
    }
    return true;
  }

  // ---------------------------------------------------------------- consumers
  template <bool T>
  __device__ static bool consume(Ctx<T>& c, const Instr& in, int instr) {
    const Globals& g = c.g;
    Smem& s = c.s;
    const int k = in.num_inputs, chunks = in.q_count;
    const int c4 = c.ctid % kVecsPerRow, row_base = c.ctid / kVecsPerRow;  // this thread: rows row_base + 2j
    constexpr int kRowStep = kConsumerThreads / kVecsPerRow;
    unsigned long long t_compute = 0;
    if constexpr (T) {
      if (c.leader) t_compute = c.rec.now();
    }
    for (int ch = 0; ch < chunks; ++ch) {
      float m[kVecsPerThread], sum[kVecsPerThread];
      float4 acc[kVecsPerThread];
#pragma unroll
      for (int j = 0; j < kVecsPerThread; ++j) {
        m[j] = -INFINITY;
        sum[j] = 0.f;
        acc[j] = make_float4(0.f, 0.f, 0.f, 0.f);
      }
      for (int i = 0; i < k; ++i) {
        const int stage = c.ring.stage;
        if (!c.consumer_wait(&s.full[stage], c.ring.phase)) return false;
        if constexpr (T) {
          if (c.leader && ch == 0) {
            c.record_wait(instr, i, s.wait_ts[i][0], s.wait_ts[i][1]);
            if (i == 0) t_compute = c.last_ctrl_end > t_compute ? c.last_ctrl_end : t_compute;
          }
        }
        const char* base = reinterpret_cast<const char*>(&s.kv[stage][0][0][0]);
        const float* lse_in = reinterpret_cast<const float*>(base + kChunkBytes);
        const float4* o_in = reinterpret_cast<const float4*>(base);
#pragma unroll
        for (int j = 0; j < kVecsPerThread; ++j) {
          const int r = row_base + j * kRowStep;
          const float lse = lse_in[r];
          const float mn = fmaxf(m[j], lse);
          if (mn == -INFINITY) continue;  // nothing visible in any input so far
          const float a = __expf(m[j] - mn), b = __expf(lse - mn);
          const float4 v = o_in[r * kVecsPerRow + c4];
          acc[j] = make_float4(acc[j].x * a + b * v.x, acc[j].y * a + b * v.y, acc[j].z * a + b * v.z, acc[j].w * a + b * v.w);
          sum[j] = sum[j] * a + b;
          m[j] = mn;
        }
        c.consumer_sync();  // every thread is done with this stage: one arrival per consumer warpgroup
        if (c.ctid % 128 == 0) ptx::mbar_arrive(&s.empty[stage]);
        c.ring.advance();
      }
#pragma unroll
      for (int j = 0; j < kVecsPerThread; ++j) {
        const int r = ch * kChunkRows + row_base + j * kRowStep;
        const float inv = sum[j] > 0.f ? 1.f / sum[j] : 0.f;
        const float4 o = make_float4(acc[j].x * inv, acc[j].y * inv, acc[j].z * inv, acc[j].w * inv);
        const float lse = sum[j] > 0.f ? m[j] + __logf(sum[j]) : -INFINITY;
        if (in.out_slot == fmt::NO_SLOT) {
          *reinterpret_cast<uint2*>(g.out + in.out_row(g, r) * fmt::HEAD_DIM_V + c4 * 4) =
              make_uint2(ptx::pack_bf16(o.x, o.y), ptx::pack_bf16(o.z, o.w));
          if (c4 == 0) g.out_lse[in.out_row(g, r)] = lse;
        } else {
          __stcg(reinterpret_cast<float4*>(g.scratch_o + in.slot_row(in.out_slot, r) * fmt::HEAD_DIM_V) + c4, o);
          if (c4 == 0) __stcg(g.scratch_lse + in.slot_row(in.out_slot, r), lse);
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
