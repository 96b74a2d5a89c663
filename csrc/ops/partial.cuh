// `partial`: attention of q_count query tokens x 16 heads over the KV range [kv_start, kv_end) of one
// sequence. Producer: bulk-copies Q and 32-token KV tiles (one copy per token row, through the block table,
// into padded smem rows). Consumers: S = Q K^T (mma.sync), online softmax, O += P V, then the output (final
// bf16 + LSE) or an fp32 partial + LSE into a scratch slot, and the release of its semaphore.
#pragma once
#include "../context.cuh"

namespace mlaprof {

struct PartialOp {
  static constexpr int kOpcode = fmt::OP_PARTIAL;

  __device__ static bool operands_ok(const Globals& g, const Instr& in) {
    if (!in.common_ok(g) || in.num_inputs != 0) return false;
    const int len = __ldg(g.seqlens + in.seq);
    return in.kv_start >= 0 && in.kv_start < in.kv_end && in.kv_end <= len;
  }
  __device__ static int num_tiles(const Instr& in) { return (in.kv_end - in.kv_start + kTile - 1) / kTile; }

  // ---------------------------------------------------------------- producer (one warp)
  template <bool T>
  __device__ static bool produce(Ctx<T>& c, const Instr& in, int) {
    const Globals& g = c.g;
    Smem& s = c.s;
    // Q: rows (token, head) of this sequence are contiguous in global memory.
    if (!c.producer_wait(&s.q_empty, c.q_phase ^ 1)) return false;
    const int rows = in.rows();
    const bf16* qsrc = g.q + (static_cast<long long>(in.seq) * g.s_q + in.q_start) * fmt::NUM_HEADS_Q * fmt::HEAD_DIM_QK;
    if (c.lane == 0) {
      if constexpr (T) s.issue_ts[kStages] = ptx::globaltimer();
      ptx::mbar_arrive_expect_tx(&s.q_full, rows * kRowBytes);
    }
    __syncwarp();
    for (int r = c.lane; r < rows; r += 32)
      ptx::bulk_copy_g2s(&s.q[r][0], qsrc + static_cast<long long>(r) * fmt::HEAD_DIM_QK, kRowBytes, &s.q_full);
    c.q_phase ^= 1;

    const int* table = g.block_table + static_cast<long long>(in.seq) * g.bt_stride;
    const int tiles = num_tiles(in);
    for (int t = 0; t < tiles; ++t) {
      const int stage = c.ring.stage;
      if (!c.producer_wait(&s.empty[stage], c.ring.phase ^ 1)) return false;
      const int tok0 = in.kv_start + t * kTile;
      const int ntok = min(kTile, in.kv_end - tok0);
      if (c.lane == 0) {
        if constexpr (T) s.issue_ts[stage] = ptx::globaltimer();
        ptx::mbar_arrive_expect_tx(&s.full[stage], ntok * kRowBytes);
      }
      __syncwarp();
      if (c.lane < ntok) {
        const int tok = tok0 + c.lane;
        const long long page = __ldg(table + tok / fmt::PAGE_SIZE);
        const bf16* src = g.kv + (page * fmt::PAGE_SIZE + tok % fmt::PAGE_SIZE) * fmt::HEAD_DIM_QK;
        ptx::bulk_copy_g2s(&s.kv[stage][c.lane][0], src, kRowBytes, &s.full[stage]);
      }
      c.ring.advance();
    }
    return true;
  }

  // ---------------------------------------------------------------- consumers (8 warps)
  template <bool T>
  __device__ static bool consume(Ctx<T>& c, const Instr& in, int instr) {
    const int rows = in.rows();
    if (rows <= 16) return consume_rb<1>(c, in, instr);
    if (rows <= 32) return consume_rb<2>(c, in, instr);
    return consume_rb<4>(c, in, instr);
  }

  // RB = row blocks of 16 (query rows padded up to 16, 32 or 64).
  template <int RB, bool T>
  __device__ static bool consume_rb(Ctx<T>& c, const Instr& in, int instr) {
    const Globals& g = c.g;
    Smem& s = c.s;
    const int cw = c.warp - kProducerWarps;  // consumer warp 0..7
    const int lane = c.lane, grp = lane >> 2, quad = lane & 3;
    const int rows = in.rows();
    const int len = __ldg(g.seqlens + in.seq);
    const int tiles = num_tiles(in);

    // Phase-1 split: 64 rows -> 2 row groups x 4 K slices; 16 or 32 rows -> 1 row group x 8 K slices.
    constexpr int kRowGroups = RB == 4 ? 4 : 1;
    constexpr int kKSplit = kConsumerWarps / kRowGroups;
    constexpr int kRBW = RB / kRowGroups;  // row blocks per warp in phase 1
    constexpr int kKSteps = fmt::HEAD_DIM_QK / 16;
    static_assert(kKSplit * RB * 16 <= kSParts * fmt::MAX_ROWS, "split-K score buffers do not fit");
    // Phase-3 ownership: warp -> 64 output columns of all RB row blocks.
    constexpr int kCols = fmt::HEAD_DIM_V / kConsumerWarps;
    constexpr int kNT = kCols / 8;
    const int o_col0 = cw * kCols;
    float o[RB][kNT][4];
#pragma unroll
    for (int i = 0; i < RB; ++i)
#pragma unroll
      for (int n = 0; n < kNT; ++n) o[i][n][0] = o[i][n][1] = o[i][n][2] = o[i][n][3] = 0.f;

    // Phase-2 ownership: 4 threads per query row, 8 tokens each; the row's running max/sum stay in registers.
    const int sm_row = c.ctid >> 2, sm_part = c.ctid & 3;
    const int sm_tok_limit = len - g.s_q + in.q_start + sm_row / fmt::NUM_HEADS_Q;  // causal: last visible pos
    float m_run = -INFINITY, l_run = 0.f;

    ptx::mbar_wait(&s.q_full, c.q_phase);
    c.q_phase ^= 1;
    if constexpr (T) {
      if (c.leader) c.record_load(instr, -1, s.issue_ts[kStages], c.rec.now());
    }

    for (int t = 0; t < tiles; ++t) {
      const int stage = c.ring.stage;
      ptx::mbar_wait(&s.full[stage], c.ring.phase);
      unsigned long long t0 = 0;
      if constexpr (T) {
        if (c.leader) {
          t0 = c.rec.now();
          c.record_load(instr, t, s.issue_ts[stage], t0);
        }
      }
      const bf16(*kv)[kRowStride] = s.kv[stage];

      // ---- phase 1: S = Q K^T, split over K (head dim) so Q and K are each read from smem only 1-2 times:
      // warp -> (row group of kRowsW rows, K slice kq); every warp covers all 32 tokens of the tile.
      {
        const int rg = cw / kKSplit, kq = cw % kKSplit;
        // K slices of kKSteps / kKSplit steps, rounded up; a compile-time trip count lets the compiler
        // unroll and load the next step's fragments while the current step's mma run.
        constexpr int kMaxSteps = (kKSteps + kKSplit - 1) / kKSplit;
        const int k0 = kq * kKSteps / kKSplit, k1 = (kq + 1) * kKSteps / kKSplit;
        float acc[kRBW][4][4] = {};
#pragma unroll
        for (int j = 0; j < kMaxSteps; ++j) {
          const int ks = k0 + j;
          if (kKSteps % kKSplit != 0 && ks >= k1) break;
          uint32_t a[kRBW][4], b[2][4];
#pragma unroll
          for (int i = 0; i < kRBW; ++i)
            ptx::ldsm_x4(a[i], &s.q[(rg * kRBW + i) * 16 + (lane & 15)][ks * 16 + (lane >> 4) * 8]);
#pragma unroll
          for (int jj = 0; jj < 2; ++jj)
            ptx::ldsm_x4(b[jj], &kv[jj * 16 + (lane >> 4) * 8 + (lane & 7)][ks * 16 + ((lane >> 3) & 1) * 8]);
#pragma unroll
          for (int i = 0; i < kRBW; ++i)
#pragma unroll
            for (int n = 0; n < 4; ++n) ptx::mma_bf16(acc[i][n], a[i], b[n >> 1][(n & 1) * 2], b[n >> 1][(n & 1) * 2 + 1]);
        }
        float* part = s.s + kq * (RB * 16) * kSStride;
#pragma unroll
        for (int i = 0; i < kRBW; ++i) {
          const int r = (rg * kRBW + i) * 16 + grp;
#pragma unroll
          for (int n = 0; n < 4; ++n) {
            *reinterpret_cast<float2*>(part + r * kSStride + n * 8 + quad * 2) = make_float2(acc[i][n][0], acc[i][n][1]);
            *reinterpret_cast<float2*>(part + (r + 8) * kSStride + n * 8 + quad * 2) = make_float2(acc[i][n][2], acc[i][n][3]);
          }
        }
      }
      c.consumer_sync();
      if (t == tiles - 1 && c.leader) ptx::mbar_arrive(&s.q_empty);  // Q is free: next instruction's Q may land

      // ---- phase 2: online softmax, one row per 4 threads
      {
        const int tok0 = in.kv_start + t * kTile + sm_part * 8;
        float p[8];
        float mx = -INFINITY;
        const bool row_live = sm_row < rows;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const int pos = tok0 + j;
          const bool vis = row_live && pos < in.kv_end && pos <= sm_tok_limit;
          float sc = 0.f;
#pragma unroll
          for (int kq = 0; kq < kKSplit; ++kq) sc += s.s[(kq * (RB * 16) + (row_live ? sm_row : 0)) * kSStride + sm_part * 8 + j];
          p[j] = vis ? sc * g.scale_log2 : -INFINITY;
          mx = fmaxf(mx, p[j]);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 2));
        const float m_new = fmaxf(m_run, mx);
        const float base = (m_new == -INFINITY) ? 0.f : m_new;  // all masked so far: p = 0, alpha = 1
        const float alpha = (m_run == -INFINITY) ? (m_new == -INFINITY ? 1.f : 0.f) : exp2f(m_run - m_new);
        float sum = 0.f;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          p[j] = exp2f(p[j] - base);
          sum += p[j];
        }
        sum += __shfl_xor_sync(0xffffffff, sum, 1);
        sum += __shfl_xor_sync(0xffffffff, sum, 2);
        l_run = l_run * alpha + sum;
        m_run = m_new;
        uint4 packed = make_uint4(ptx::pack_bf16(p[0], p[1]), ptx::pack_bf16(p[2], p[3]), ptx::pack_bf16(p[4], p[5]),
                                  ptx::pack_bf16(p[6], p[7]));
        *reinterpret_cast<uint4*>(&s.p[sm_row][sm_part * 8]) = packed;
        if (sm_part == 0) s.row_a[sm_row] = alpha;
      }
      c.consumer_sync();

      // ---- phase 3: O = O * alpha + P V; warp -> 64 output columns of every row, so V is read once.
      {
#pragma unroll
        for (int i = 0; i < RB; ++i) {
          const float a_lo = s.row_a[i * 16 + grp], a_hi = s.row_a[i * 16 + grp + 8];
#pragma unroll
          for (int n = 0; n < kNT; ++n) {
            o[i][n][0] *= a_lo;
            o[i][n][1] *= a_lo;
            o[i][n][2] *= a_hi;
            o[i][n][3] *= a_hi;
          }
        }
#pragma unroll
        for (int ks = 0; ks < kTile / 16; ++ks) {
          uint32_t pa[RB][4];
#pragma unroll
          for (int i = 0; i < RB; ++i) ptx::ldsm_x4(pa[i], &s.p[i * 16 + (lane & 15)][ks * 16 + (lane >> 4) * 8]);
#pragma unroll
          for (int np = 0; np < kNT / 2; ++np) {
            uint32_t b[4];
            ptx::ldsm_x4_trans(b, &kv[ks * 16 + (lane & 7) + ((lane >> 3) & 1) * 8][o_col0 + np * 16 + (lane >> 4) * 8]);
#pragma unroll
            for (int i = 0; i < RB; ++i) {
              ptx::mma_bf16(o[i][2 * np], pa[i], b[0], b[1]);
              ptx::mma_bf16(o[i][2 * np + 1], pa[i], b[2], b[3]);
            }
          }
        }
      }
      c.consumer_sync();  // every warp is done with this stage, S and P
      if (c.leader) ptx::mbar_arrive(&s.empty[stage]);
      if constexpr (T) {
        if (c.leader) c.rec.record(fmt::KIND_COMPUTE, fmt::ROLE_CONSUMER, instr, t, t0, c.rec.now());
      }
      c.ring.advance();
    }

    // ---- epilogue: normalise and store
    unsigned long long t_store = 0;
    if constexpr (T) {
      if (c.leader) t_store = c.rec.now();
    }
    if (sm_part == 0 && sm_row < rows) {
      const bool empty_row = l_run == 0.f;  // every position of this range is masked for this row
      const float lse = empty_row ? -INFINITY : (m_run + log2f(l_run)) * kLn2;
      s.row_a[sm_row] = empty_row ? 0.f : 1.f / l_run;
      if (in.out_slot == fmt::NO_SLOT) g.out_lse[in.out_row(g, sm_row)] = lse;
      else g.scratch_lse[in.slot_row(in.out_slot, sm_row)] = lse;
    }
    c.consumer_sync();
#pragma unroll
    for (int i = 0; i < RB; ++i) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = i * 16 + grp + half * 8;
        if (r >= rows) continue;
        const float inv = s.row_a[r];
        if (in.out_slot == fmt::NO_SLOT) {
          bf16* dst = g.out + in.out_row(g, r) * fmt::HEAD_DIM_V + o_col0 + quad * 2;
#pragma unroll
          for (int n = 0; n < kNT; ++n)
            *reinterpret_cast<uint32_t*>(dst + n * 8) = ptx::pack_bf16(o[i][n][half * 2] * inv, o[i][n][half * 2 + 1] * inv);
        } else {
          float* dst = g.scratch_o + in.slot_row(in.out_slot, r) * fmt::HEAD_DIM_V + o_col0 + quad * 2;
#pragma unroll
          for (int n = 0; n < kNT; ++n)
            __stcg(reinterpret_cast<float2*>(dst + n * 8), make_float2(o[i][n][half * 2] * inv, o[i][n][half * 2 + 1] * inv));
        }
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
