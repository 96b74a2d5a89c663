// `partial`: attention of q_count query tokens x 16 heads over the KV range [kv_start, kv_end) of one
// sequence. Producer: TMA-loads Q (64 rows, padded) and KV tiles of kTile tokens (aligned blocks of a page, found
// through the block table) as 128-byte-swizzled boxes. Consumers: two warpgroups; each computes the full
// 64 x kTile score tile S = Q K^T with wgmma (redundantly: cheaper than exchanging P), runs the online softmax in
// registers, and accumulates its half of O (256 of the 512 V columns) with P taken from registers. Then the
// output (final bf16 + LSE) or an fp16 partial + fp32 LSE into a scratch slot, and the release of its semaphore.
#pragma once
#include "../context.cuh"

namespace mlaprof {

struct PartialOp {
  static constexpr int kOpcode = fmt::OP_PARTIAL;
  static constexpr int kKSteps = fmt::HEAD_DIM_QK / 16;               // k16 steps of Q K^T
  static constexpr int kStepsPerChunk = kChunkCols / 16;               // 4 k16 steps per 128-byte row
  static constexpr int kColsPerWarpgroup = fmt::HEAD_DIM_V / kConsumerWarpgroups;  // 256
  static constexpr int kONTiles = kColsPerWarpgroup / 8;              // 32 n8 tiles of accumulators
  static constexpr int kSNTiles = kTile / 8;                           // n8 tiles of the score tile
  static constexpr int kSRegs = kSNTiles * 4;                          // score accumulators per thread
  static constexpr int kPVSteps = kTile / 16;                          // k16 steps of P V

  // The checks that need no memory: with them the block table reads stay inside the sequence's row.
  __device__ static bool shape_ok(const Globals& g, const Instr& in) {
    if (!in.common_ok(g) || in.num_inputs != 0) return false;
    if (!(in.kv_start >= 0 && in.kv_start < in.kv_end && in.kv_end <= g.bt_stride * fmt::PAGE_SIZE)) return false;
    return in.steal_members == 0 || (in.steal_member >= 0 && in.steal_member < in.steal_members &&
                                     in.steal_members <= num_tiles(in) && in.steal_sem >= 0 && in.steal_sem < g.num_sems);
  }
  __device__ static bool operands_ok(const Globals& g, const Instr& in) {
    return shape_ok(g, in) && in.kv_end <= __ldg(g.seqlens + in.seq);
  }
  // Tiles are the aligned kTile-token blocks that overlap the range: always inside one page.
  __device__ static int first_tile(const Instr& in) { return in.kv_start / kTile; }
  __device__ static int num_tiles(const Instr& in) { return (in.kv_end + kTile - 1) / kTile - first_tile(in); }
  // Tile t of the range through the block table: its page, loaded ahead of its use, then the cache row.
  __device__ static int tile_page(const int* table, const Instr& in, int t) {
    return ld_pinned(table + (first_tile(in) + t) * kTile / fmt::PAGE_SIZE);
  }
  // A load issued where ld_pinned is and its value first used where use_pinned is (an empty asm that
  // rewrites it), so that the producer waits for it only there, after the copies it can issue meanwhile.
  __device__ static __forceinline__ int ld_pinned(const int* p) { return ptx::ld_nc_here(p); }
  __device__ static __forceinline__ int use_pinned(int v) {
    asm volatile("" : "+r"(v));
    return v;
  }
  __device__ static int row_of(int page, const Instr& in, int t) {
    return use_pinned(page) * fmt::PAGE_SIZE + (first_tile(in) + t) * kTile % fmt::PAGE_SIZE;
  }

  // ---------------------------------------------------------------- producer (one warp)
  // Tile t of the range (cache row `row`) into the next ring stage, once the consumers freed it. The stage's
  // tile_of tells the consumers which tile it is and whether it is the last: for a steal group that is known
  // only after the next claim, so the stage's barrier expects the bytes first and the producer arrives after
  // writing tile_of (the claim's round trip is far shorter than the copy's).
  template <bool T>
  __device__ static void issue_tile(Ctx<T>& c, int t, int row, bool arrive) {
    Smem& s = c.s;
    const int stage = c.ring.stage;
    if (c.lane == 0) {
      if constexpr (T) s.issue_ts[stage] = ptx::globaltimer();
      if (arrive) ptx::mbar_arrive_expect_tx(&s.full[stage], kChunks * kKVChunkBytes);
      else ptx::mbar_expect_tx(&s.full[stage], kChunks * kKVChunkBytes);
    }
    __syncwarp();
#ifdef MLAPROF_KV_L2_NORMAL  // A/B switch: KV lines kept like any other (bench/NOTES.md v22)
    if (c.lane < kChunks) wg::tma_load_2d(&s.kv[stage][c.lane][0][0], &c.g.kv_map, c.lane * kChunkCols, row, &s.full[stage]);
#else
    if (c.lane < kChunks)
      wg::tma_load_2d(&s.kv[stage][c.lane][0][0], &c.g.kv_map, c.lane * kChunkCols, row, &s.full[stage], ptx::l2_evict_first());
#endif
  }

  template <bool T>
  __device__ static bool produce(Ctx<T>& c, const Instr& in, int) {
    const Globals& g = c.g;
    Smem& s = c.s;
    const int* table = g.block_table + static_cast<long long>(in.seq) * g.bt_stride;
    const int tiles = num_tiles(in);
    if (!shape_ok(g, in)) return false;
    // The sequence's length, the first page and Q's copy go out together; the length is checked after Q is
    // issued (a copy of any rows is safe: the tensor map bounds it), which saves a round trip before the
    // first copy of every launch.
    const int len = ld_pinned(g.seqlens + in.seq);
    int next = in.steals() ? in.steal_member : 0;  // a steal group's member m starts with tile m
    int next_page = tile_page(table, in, next);     // looked up while Q is issued
    if (!c.producer_wait(&s.q_empty, c.q_phase ^ 1)) return false;
    if (c.lane == 0) {
      if constexpr (T) s.issue_ts[kStages] = ptx::globaltimer();
      ptx::mbar_arrive_expect_tx(&s.q_full, kChunks * kQChunkBytes);
    }
    __syncwarp();
    const int q_row = (in.seq * g.s_q + in.q_start) * fmt::NUM_HEADS_Q;  // rows past the tensor are zero-filled
    if (c.lane < kChunks) wg::tma_load_2d(&s.q[c.lane][0][0], &g.q_map, c.lane * kChunkCols, q_row, &s.q_full);
    c.q_phase ^= 1;
    if (in.kv_end > use_pinned(len)) return false;  // the consumers report it (operands_ok)

    if (!in.steals()) {
      for (int t = 0; t < tiles; ++t) {
        const int page = next_page;
        if (t + 1 < tiles) next_page = tile_page(table, in, t + 1);  // in flight while this stage frees
        if (!c.producer_wait(&s.empty[c.ring.stage], c.ring.phase ^ 1)) return false;
        if (c.lane == 0) s.tile_of[c.ring.stage] = t | (t + 1 == tiles ? kLastTile : 0);
        issue_tile(c, t, row_of(page, in, t), true);
        c.ring.advance();
      }
      return true;
    }
    // Steal group: after each tile, a member claims the group's next one (members + the counter's old value)
    // and looks up its row while the stage it goes to is still computed on. Every member makes exactly one
    // claim past the range, so `tiles` claims are made in all: the last one resets the counter.
    int* counter = g.sems + in.steal_sem;
    for (;;) {
      if (!c.producer_wait(&s.empty[c.ring.stage], c.ring.phase ^ 1)) return false;
      const int t = next;
      issue_tile(c, t, row_of(next_page, in, t), false);
      int claim = 0;
      if (c.lane == 0) claim = atomicAdd(counter, 1);
      claim = __shfl_sync(0xffffffff, claim, 0);
      next = in.steal_members + claim;
      if (c.lane == 0) {
        if (claim == tiles - 1) atomicExch(counter, 0);  // ready for the next launch
        s.tile_of[c.ring.stage] = t | (next >= tiles ? kLastTile : 0);
        ptx::mbar_arrive(&s.full[c.ring.stage]);
      }
      __syncwarp();
      c.ring.advance();
      if (next >= tiles) return true;
      next_page = tile_page(table, in, next);
    }
  }

  // ---------------------------------------------------------------- epilogue stores
  // This thread's output value pair for n8 tile n of its row r0 (half 0) or r1 (half 1), normalised and packed
  // as the destination wants it (bf16 output, fp16 scratch).
  __device__ static __forceinline__ uint32_t packed_pair(const float* o, int n, int half, float inv, bool final_out) {
    const float x = o[n * 4 + half * 2] * inv, y = o[n * 4 + half * 2 + 1] * inv;
    if (final_out) return ptx::pack_bf16(x, y);
    const __half2 h2 = __floats2half2_rn(x, y);
    return *reinterpret_cast<const uint32_t*>(&h2);
  }
  // Where the runtime part `col` of a thread's columns of local row r goes (the output, row-major; or the
  // scratch slot, in column blocks), and how far a compile-time step of 8 columns moves it there. Computed
  // once per row: per-store address arithmetic with the final/scratch choice made the epilogue spill.
  static constexpr long long kScratchBlockStride = fmt::MAX_ROWS * fmt::SCRATCH_BLOCK_COLS;  // elements
  __device__ static __forceinline__ __half* scratch_ptr(const Globals& g, const Instr& in, int r, int col) {
    return g.scratch_o + in.scratch_o_index(in.out_slot, r, col);
  }
  // element offset of columns +8k (k compile-time) from a runtime column that starts a 16-column block + 0/2/4/6
  __device__ static __forceinline__ constexpr long long scratch_step(int k) {
    return (k / 2) * kScratchBlockStride + (k % 2) * 8;
  }

  // Each thread writes its two columns of every n8 tile: 4-byte stores, 16 bytes per row and quad.
  __device__ static __forceinline__ void store_pairs(const Globals& g, const Instr& in, const float* o, float inv0,
                                                     float inv1, int r0, int r1, int rows, int quad, int wg_idx) {
    const bool final_out = in.out_slot == fmt::NO_SLOT;
    const int col = wg_idx * kColsPerWarpgroup + quad * 2;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = half ? r1 : r0;
      if (r >= rows) continue;
      const float inv = half ? inv1 : inv0;
      if (final_out) {
        bf16* dst = g.out + in.out_row(g, r) * fmt::HEAD_DIM_V + col;
#pragma unroll
        for (int n = 0; n < kONTiles; ++n)
          *reinterpret_cast<uint32_t*>(dst + n * 8) = packed_pair(o, n, half, inv, true);
      } else {
        __half* dst = scratch_ptr(g, in, r, col);
#pragma unroll
        for (int n = 0; n < kONTiles; ++n)
          __stcg(reinterpret_cast<unsigned int*>(dst + scratch_step(n)), packed_pair(o, n, half, inv, false));
      }
    }
  }

  // The final output (row-major bf16) when every row is valid: a quad's four threads hold 2 columns each of
  // every n8 tile of a row; four tiles at a time, a 4x4 transpose across the quad gives each thread all 8
  // columns of one tile, so one 16-byte store per thread and 64 contiguous bytes per quad replace four
  // 4-byte stores 1 KB apart.
  __device__ static __forceinline__ void store_exchanged(const Globals& g, const Instr& in, const float* o, float inv0,
                                                         float inv1, int r0, int r1, int quad, int wg_idx) {
    const int col = wg_idx * kColsPerWarpgroup + quad * 8;  // + 32 per group of four tiles
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      bf16* out = g.out + in.out_row(g, half ? r1 : r0) * fmt::HEAD_DIM_V + col;
#pragma unroll
      for (int g4 = 0; g4 < kONTiles / 4; ++g4) {
        uint32_t a[4], b[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) a[j] = b[j] = packed_pair(o, g4 * 4 + j, half, half ? inv1 : inv0, true);
        // b[i] becomes thread i's pair of tile g4 * 4 + quad: send partner p what it needs (our a[p])
#pragma unroll
        for (int x = 1; x < 4; ++x) {
          const int p = quad ^ x;
          const uint32_t got = __shfl_xor_sync(0xffffffff, p == 0 ? a[0] : p == 1 ? a[1] : p == 2 ? a[2] : a[3], x);
#pragma unroll
          for (int i = 0; i < 4; ++i) b[i] = p == i ? got : b[i];
        }
        const uint32_t own = quad == 0 ? a[0] : quad == 1 ? a[1] : quad == 2 ? a[2] : a[3];
#pragma unroll
        for (int i = 0; i < 4; ++i) b[i] = quad == i ? own : b[i];
        *reinterpret_cast<uint4*>(out + g4 * 32) = make_uint4(b[0], b[1], b[2], b[3]);
      }
    }
  }

  // ---------------------------------------------------------------- consumers (two warpgroups)
  template <bool T>
  __device__ static bool consume(Ctx<T>& c, const Instr& in, int instr) {
    const Globals& g = c.g;
    Smem& s = c.s;
    const int wg_idx = c.ctid / 128, wt = c.ctid % 128;
    const int lane = c.lane, quad = lane & 3;
    const int r0 = (wt / 32) * 16 + (lane >> 2), r1 = r0 + 8;  // this thread's two accumulator rows
    const int rows = in.rows();
    const int len = __ldg(g.seqlens + in.seq);
    const int t0 = first_tile(in);
    // causal: the last position a row may see; rows past `rows` are padding and see nothing
    const int limit0 = r0 < rows ? len - g.s_q + in.q_start + r0 / fmt::NUM_HEADS_Q : -1;
    const int limit1 = r1 < rows ? len - g.s_q + in.q_start + r1 / fmt::NUM_HEADS_Q : -1;

    float o[kONTiles * 4];
#pragma unroll
    for (int i = 0; i < kONTiles * 4; ++i) o[i] = 0.f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;

    if (!c.consumer_wait(&s.q_full, c.q_phase)) return false;
    c.q_phase ^= 1;
    if constexpr (T) {
      if (c.leader) c.record_load(instr, -1, s.issue_ts[kStages], c.rec.now());
    }

    // The producer says which tile of the range each stage holds and which is the last (Smem::tile_of): in
    // order for most partials, as claimed for a steal group's member.
    for (bool last = false; !last;) {
      const int stage = c.ring.stage;
      if (!c.consumer_wait(&s.full[stage], c.ring.phase)) return false;
      const int word = *reinterpret_cast<volatile int*>(&s.tile_of[stage]);
      const int t = word & (kLastTile - 1);
      last = word & kLastTile;
      unsigned long long tc = 0;
      if constexpr (T) {
        if (c.leader) {
          tc = c.rec.now();
          c.record_load(instr, t, s.issue_ts[stage], tc);
        }
      }
      const int tok0 = (t0 + t) * kTile;

      // ---- S = Q K^T (64 x kTile), both operands K-major in swizzled shared memory: one chain of 36 k16
      // steps (two independent chains spilled registers and measured slower, bench/NOTES.md v5).
      // Descriptors advance by adding (byte offset >> 4) to the start-address field. The bases are made opaque
      // each tile so the compiler cannot hoist 72 loop-invariant 64-bit descriptors into registers.
      float sc[kSRegs];
      uint64_t qd = wg::desc_sw128(&s.q[0][0][0], 16, wg::kSwizzleAtomBytes);
      uint64_t kd = wg::desc_sw128(&s.kv[stage][0][0][0], 16, wg::kSwizzleAtomBytes);
      asm volatile("" : "+l"(qd), "+l"(kd));
      wg::fence();
#pragma unroll
      for (int ks = 0; ks < kKSteps; ++ks) {
        const int chunk = ks / kStepsPerChunk, off = (ks % kStepsPerChunk) * 32;
        wg::mma_64x64(sc, qd + ((chunk * kQChunkBytes + off) >> 4), kd + ((chunk * kKVChunkBytes + off) >> 4), ks > 0);
      }
      wg::commit();
      wg::wait<0>();
#pragma unroll
      for (int i = 0; i < kSRegs; ++i) wg::fence_operand(sc[i]);
      if (last && wt == 0) ptx::mbar_arrive(&s.q_empty);  // Q no longer read: the next Q may land

      // ---- online softmax in registers: sc[n*4 + {0,1}] is row r0, cols n*8 + 2*quad + {0,1}; {2,3} row r1
      float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
      for (int n = 0; n < kSNTiles; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int pos = tok0 + n * 8 + quad * 2 + e;
          const bool in_range = pos >= in.kv_start && pos < in.kv_end;
          sc[n * 4 + e] = (in_range && pos <= limit0) ? sc[n * 4 + e] * g.scale_log2 : -INFINITY;
          sc[n * 4 + 2 + e] = (in_range && pos <= limit1) ? sc[n * 4 + 2 + e] * g.scale_log2 : -INFINITY;
          mx0 = fmaxf(mx0, sc[n * 4 + e]);
          mx1 = fmaxf(mx1, sc[n * 4 + 2 + e]);
        }
      }
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffff, mx0, 1));
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffff, mx0, 2));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffff, mx1, 1));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffff, mx1, 2));
      const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
      // all masked so far: p = 0 and nothing to rescale
      const float b0 = mn0 == -INFINITY ? 0.f : mn0, b1 = mn1 == -INFINITY ? 0.f : mn1;
      const float alpha0 = m0 == -INFINITY ? 1.f : exp2f(m0 - mn0), alpha1 = m1 == -INFINITY ? 1.f : exp2f(m1 - mn1);
      float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
      for (int n = 0; n < kSNTiles; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          sc[n * 4 + e] = exp2f(sc[n * 4 + e] - b0);
          sc[n * 4 + 2 + e] = exp2f(sc[n * 4 + 2 + e] - b1);
          sum0 += sc[n * 4 + e];
          sum1 += sc[n * 4 + 2 + e];
        }
      }
      sum0 += __shfl_xor_sync(0xffffffff, sum0, 1);
      sum0 += __shfl_xor_sync(0xffffffff, sum0, 2);
      sum1 += __shfl_xor_sync(0xffffffff, sum1, 1);
      sum1 += __shfl_xor_sync(0xffffffff, sum1, 2);
      l0 = l0 * alpha0 + sum0;
      l1 = l1 * alpha1 + sum1;
      m0 = mn0;
      m1 = mn1;
#pragma unroll
      for (int n = 0; n < kONTiles; ++n) {
        o[n * 4 + 0] *= alpha0;
        o[n * 4 + 1] *= alpha0;
        o[n * 4 + 2] *= alpha1;
        o[n * 4 + 3] *= alpha1;
      }
      // P as the A operand of k16 step j: {row r0 k 0-7, row r1 k 0-7, row r0 k 8-15, row r1 k 8-15} pairs
      uint32_t pa[kPVSteps][4];
#pragma unroll
      for (int j = 0; j < kPVSteps; ++j) {
        pa[j][0] = ptx::pack_bf16(sc[(2 * j) * 4 + 0], sc[(2 * j) * 4 + 1]);
        pa[j][1] = ptx::pack_bf16(sc[(2 * j) * 4 + 2], sc[(2 * j) * 4 + 3]);
        pa[j][2] = ptx::pack_bf16(sc[(2 * j + 1) * 4 + 0], sc[(2 * j + 1) * 4 + 1]);
        pa[j][3] = ptx::pack_bf16(sc[(2 * j + 1) * 4 + 2], sc[(2 * j + 1) * 4 + 3]);
      }

      // Rows past the end of the sequence hold whatever the cache page holds (maybe NaN): P is 0 there, but
      // 0 * NaN is NaN, so this warpgroup zeroes its V rows there (128-byte rows: the swizzle stays inside).
      if (tok0 + kTile > len) {
        const int dead0 = max(len - tok0, 0);
        const int vecs = (kTile - dead0) * kVChunks / kConsumerWarpgroups * (kChunkCols * 2 / 16);
        for (int v = wt; v < vecs; v += 128) {
          const int per_chunk = (kTile - dead0) * 8;
          const int chunk = wg_idx * (kVChunks / kConsumerWarpgroups) + v / per_chunk;
          const int r = dead0 + (v % per_chunk) / 8, col = (v % 8) * 8;
          *reinterpret_cast<uint4*>(&s.kv[stage][chunk][r][col]) = make_uint4(0, 0, 0, 0);
        }
        ptx::fence_proxy_async();  // generic stores, then the tensor cores read them
        ptx::named_barrier(kWarpgroupBarrier0 + wg_idx, 128);
      }

      // ---- O[:, this warpgroup's 256 columns] += P V; V is MN-major (dv contiguous) in the same tile
      wg::fence();
#pragma unroll
      for (int j = 0; j < kPVSteps; ++j) {
        const char* vb = reinterpret_cast<const char*>(&s.kv[stage][wg_idx * (kVChunks / kConsumerWarpgroups)][j * 16][0]);
        wg::mma_64x256_rs(o, pa[j], wg::desc_sw128(vb, kKVChunkBytes, wg::kSwizzleAtomBytes));
      }
      wg::commit();
      wg::wait<0>();
#pragma unroll
      for (int i = 0; i < kONTiles * 4; ++i) wg::fence_operand(o[i]);
      if (wt == 0) ptx::mbar_arrive(&s.empty[stage]);
      if constexpr (T) {
        if (c.leader) c.rec.record(fmt::KIND_COMPUTE, fmt::ROLE_CONSUMER, instr, t, tc, c.rec.now());
      }
      c.ring.advance();
    }

    // ---- epilogue: normalise and store this warpgroup's columns
    unsigned long long t_store = 0;
    if constexpr (T) {
      if (c.leader) t_store = c.rec.now();
    }
    const float inv0 = l0 > 0.f ? 1.f / l0 : 0.f, inv1 = l1 > 0.f ? 1.f / l1 : 0.f;
    if (wg_idx == 0 && quad == 0) {  // an all-masked row of this range has LSE -inf and O 0
      const float lse0 = l0 > 0.f ? (m0 + log2f(l0)) * kLn2 : -INFINITY;
      const float lse1 = l1 > 0.f ? (m1 + log2f(l1)) * kLn2 : -INFINITY;
      if (in.out_slot == fmt::NO_SLOT) {
        if (r0 < rows) g.out_lse[in.out_row(g, r0)] = lse0;
        if (r1 < rows) g.out_lse[in.out_row(g, r1)] = lse1;
      } else {
        if (r0 < rows) __stcg(g.scratch_lse + in.slot_row(in.out_slot, r0), lse0);
        if (r1 < rows) __stcg(g.scratch_lse + in.slot_row(in.out_slot, r1), lse1);
      }
    }
    // Scratch (column blocks: a warp's pair stores fill 256 contiguous bytes per block and n8 tile pair) takes
    // 4-byte pairs at any row count: 1.4 us per 64-row partial against 3.7 through the quad exchange
    // (bench/NOTES.md v22). The row-major output takes the exchange's 16-byte stores when all 64 rows are
    // valid (3.4 us on b132 against 3.8 with pairs, whose rows are 1 KB apart).
    if (rows == kQRows && in.out_slot == fmt::NO_SLOT) store_exchanged(g, in, o, inv0, inv1, r0, r1, quad, wg_idx);
    else store_pairs(g, in, o, inv0, inv1, r0, r1, rows, quad, wg_idx);
    c.consumer_sync();  // every thread's stores precede the leader's gpu-scope release (cf. grid sync)
    if (c.leader && in.signal_sem != fmt::NO_SEM) semaphore_signal(g.sems + in.signal_sem, in.signal_count);
    if constexpr (T) {
      if (c.leader) c.rec.record(fmt::KIND_STORE, fmt::ROLE_CONSUMER, instr, -1, t_store, c.rec.now());
    }
    return true;
  }
};

}  // namespace mlaprof
