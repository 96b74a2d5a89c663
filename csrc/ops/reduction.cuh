// `reduction`: merge up to MAX_FANIN partial results (fp16 O + fp32 LSE in scratch slots, written by other
// SMs) into the final bf16 output + LSE, or into a scratch slot one tree level up. The producer waits on the
// inputs' semaphores (one lane per input, in parallel), then bulk-copies the inputs 16 rows at a time, up to
// kInputsPerStage inputs per stage of the ring the partials use; the consumers merge with an online
// log-sum-exp. So several inputs are in flight at once instead of each thread waiting on its own L2 loads.
#pragma once
#include "../context.cuh"

namespace mlaprof {

struct ReductionOp {
  static constexpr int kOpcode = fmt::OP_REDUCTION;
  static constexpr int kChunkRows = 16;                                   // rows per input chunk
  static constexpr int kChunkBytes = kChunkRows * fmt::HEAD_DIM_V * 2;   // 16 KB of fp16 O
  static constexpr int kLseBytes = kChunkRows * 4;
  static constexpr int kInputsPerStage = 4;                               // 4 x 16 KB + LSE fill most of a stage
  static constexpr int kLseOffset = kInputsPerStage * kChunkBytes;
  static constexpr int kVecsPerRow = fmt::HEAD_DIM_V / 8;                 // 16-byte vectors of 8 halves per row
  static constexpr int kRowStep = kConsumerThreads / kVecsPerRow;         // 4: rows between a thread's vectors
  static constexpr int kRowsPerThread = kChunkRows / kRowStep;            // 4
  static_assert(kLseOffset + kInputsPerStage * kLseBytes <= static_cast<int>(sizeof(Smem::kv[0])),
                "a stage holds kInputsPerStage input chunks");

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
      for (int i0 = 0; i0 < k; i0 += kInputsPerStage) {
        const int n = min(kInputsPerStage, k - i0);
        if (ch == 0) {  // first use of these inputs: their producers must have released them
          // One lane per input waits, all at once: serial waits cost a round trip to L2 each even when
          // the inputs are long done. The lane that acquired an input is the one that copies it.
          bool ok = true;
          if (c.lane < n) {
            const int i = i0 + c.lane;
            const int sem = __ldg(in.words + fmt::W_INPUT_SEMS + i);
            const unsigned long long t0 = ptx::globaltimer();
            ok = semaphore_wait(g.sems + sem, g.status, instr, sem);
            s.wait_ts[i][0] = t0;
            s.wait_ts[i][1] = ptx::globaltimer();
            asm volatile("fence.proxy.async.global;" ::: "memory");  // the copy engine reads what was released
          }
          __syncwarp();  // wait_ts writes of every lane precede lane 0's stage arrival below
          ok = __all_sync(0xffffffff, ok);
          if (!ok) {
            s.abort = 1;
            return false;
          }
        }
        const int stage = c.ring.stage;
        if (!c.producer_wait(&s.empty[stage], c.ring.phase ^ 1)) return false;
        if (c.lane == 0) ptx::mbar_arrive_expect_tx(&s.full[stage], n * (kChunkBytes + kLseBytes));
        __syncwarp();
        if (c.lane < n) {
          const int slot = __ldg(in.words + fmt::W_INPUT_SLOTS + i0 + c.lane);
          const long long row = in.slot_row(slot, ch * kChunkRows);
          char* dst = reinterpret_cast<char*>(&s.kv[stage][0][0][0]);
          ptx::bulk_copy_g2s(dst + c.lane * kChunkBytes, g.scratch_o + row * fmt::HEAD_DIM_V, kChunkBytes, &s.full[stage]);
          ptx::bulk_copy_g2s(dst + kLseOffset + c.lane * kLseBytes, g.scratch_lse + row, kLseBytes, &s.full[stage]);
        }
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
    const int c8 = c.ctid % kVecsPerRow, row_base = c.ctid / kVecsPerRow;  // this thread: rows row_base + 4j
    unsigned long long t_compute = 0;
    if constexpr (T) {
      if (c.leader) t_compute = c.rec.now();
    }
    for (int ch = 0; ch < chunks; ++ch) {
      float m[kRowsPerThread], sum[kRowsPerThread], acc[kRowsPerThread][8];
#pragma unroll
      for (int j = 0; j < kRowsPerThread; ++j) {
        m[j] = -INFINITY;
        sum[j] = 0.f;
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[j][e] = 0.f;
      }
      for (int i0 = 0; i0 < k; i0 += kInputsPerStage) {
        const int n = min(kInputsPerStage, k - i0);
        const int stage = c.ring.stage;
        if (!c.consumer_wait(&s.full[stage], c.ring.phase)) return false;
        if constexpr (T) {
          if (c.leader && ch == 0) {
            for (int i = i0; i < i0 + n; ++i) c.record_wait(instr, i, s.wait_ts[i][0], s.wait_ts[i][1]);
            if (i0 == 0) t_compute = c.last_ctrl_end > t_compute ? c.last_ctrl_end : t_compute;
          }
        }
        const char* base = reinterpret_cast<const char*>(&s.kv[stage][0][0][0]);
        for (int q = 0; q < n; ++q) {
          const float* lse_in = reinterpret_cast<const float*>(base + kLseOffset + q * kLseBytes);
          const uint4* o_in = reinterpret_cast<const uint4*>(base + q * kChunkBytes);
#pragma unroll
          for (int j = 0; j < kRowsPerThread; ++j) {
            const int r = row_base + j * kRowStep;
            const float lse = lse_in[r];
            const float mn = fmaxf(m[j], lse);
            if (mn == -INFINITY) continue;  // nothing visible in any input so far
            const float a = __expf(m[j] - mn), b = __expf(lse - mn);
            const uint4 raw = o_in[r * kVecsPerRow + c8];
            const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const float2 v = __half22float2(h[e]);
              acc[j][2 * e] = acc[j][2 * e] * a + b * v.x;
              acc[j][2 * e + 1] = acc[j][2 * e + 1] * a + b * v.y;
            }
            sum[j] = sum[j] * a + b;
            m[j] = mn;
          }
        }
        c.consumer_sync();  // every thread is done with this stage: one arrival per consumer warpgroup
        if (c.ctid % 128 == 0) ptx::mbar_arrive(&s.empty[stage]);
        c.ring.advance();
      }
#pragma unroll
      for (int j = 0; j < kRowsPerThread; ++j) {
        const int r = ch * kChunkRows + row_base + j * kRowStep;
        const float inv = sum[j] > 0.f ? 1.f / sum[j] : 0.f;
        const float lse = sum[j] > 0.f ? m[j] + __logf(sum[j]) : -INFINITY;
        uint4 packed;
        uint32_t* w = reinterpret_cast<uint32_t*>(&packed);
        if (in.out_slot == fmt::NO_SLOT) {
#pragma unroll
          for (int e = 0; e < 4; ++e) w[e] = ptx::pack_bf16(acc[j][2 * e] * inv, acc[j][2 * e + 1] * inv);
          *reinterpret_cast<uint4*>(g.out + in.out_row(g, r) * fmt::HEAD_DIM_V + c8 * 8) = packed;
          if (c8 == 0) g.out_lse[in.out_row(g, r)] = lse;
        } else {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const __half2 h2 = __floats2half2_rn(acc[j][2 * e] * inv, acc[j][2 * e + 1] * inv);
            w[e] = *reinterpret_cast<const uint32_t*>(&h2);
          }
          __stcg(reinterpret_cast<uint4*>(g.scratch_o + in.slot_row(in.out_slot, r) * fmt::HEAD_DIM_V + c8 * 8), packed);
          if (c8 == 0) __stcg(g.scratch_lse + in.slot_row(in.out_slot, r), lse);
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
