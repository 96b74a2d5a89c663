// `reduction`: merge up to MAX_FANIN partial results (fp16 O + fp32 LSE in scratch slots, written by other
// SMs) into the final bf16 output + LSE, or into a scratch slot one tree level up. The producer waits on the
// inputs' semaphores (one lane per input, in parallel, often while the consumers still finish earlier work)
// and then hands the consumers a ring stage that carries no data, only the word that every input is
// released. The consumers read the inputs straight from L2: each thread issues all of its 16-byte loads
// (every input, one row of four column blocks) before it merges, so a 16-row chunk of six inputs (96 KB) is
// in flight at once, each warp's load of one input and block 512 contiguous bytes (fmt::SCRATCH_BLOCK_COLS). Bulk copies staged through the ring cost the copy engine ~0.1-0.2 us each (bench/NOTES.md v12), and
// a merge of small fp16 chunks needed a dozen of them.
//
// Counted inputs (fmt::LAYOUT_COUNTED): one reduction merges many inputs (contiguous slots, one semaphore that
// every input adds 1 to) for one query token and one block of V columns. Several such reductions, one per
// column block, replace a whole reduction tree with one level: each reads a slice of every input, and the
// threads that share a 16-byte vector of the output split the inputs between them.
#pragma once
#include "../context.cuh"

namespace mlaprof {

struct ReductionOp {
  static constexpr int kOpcode = fmt::OP_REDUCTION;
  static constexpr int kChunkRows = 16;                                   // rows per pass (one query token)
  static constexpr int kCountedBatch = fmt::COUNTED_BATCH;  // counted inputs a thread loads per round trip (80 registers)

  __device__ static bool counted(const Instr& in) { return __ldg(in.words + fmt::W_INPUT_LAYOUT) == fmt::LAYOUT_COUNTED; }

  // The words a merge addresses its inputs with, read at the top of consume while the producer still waits on
  // the inputs, each load issued right there: read after the stage arrives they cost an L2 round trip before
  // the first input load (~0.3 us per merge, bench/NOTES.md v24).
  struct Operands {
    int slots[fmt::MAX_FANIN];  // listed: each input's slot; counted: slots[0], the first of n contiguous ones
    int col0, cols;             // counted: the block of V columns
    __device__ static Operands load(const Instr& in) {
      Operands o;
#pragma unroll
      for (int i = 0; i < fmt::MAX_FANIN; ++i) o.slots[i] = ptx::ld_nc_here(in.words + fmt::W_INPUT_SLOTS + i);
      o.col0 = ptx::ld_nc_here(in.words + fmt::W_COL_START);
      o.cols = ptx::ld_nc_here(in.words + fmt::W_COL_COUNT);
      return o;
    }
  };

  __device__ static bool operands_ok(const Globals& g, const Instr& in) {
    if (!in.common_ok(g) || in.steals()) return false;  // only partials share tiles
    if (counted(in)) {
      const int n = in.num_inputs, slot0 = __ldg(in.words + fmt::W_INPUT_SLOTS), sem = __ldg(in.words + fmt::W_INPUT_SEMS);
      const int col0 = __ldg(in.words + fmt::W_COL_START), cols = __ldg(in.words + fmt::W_COL_COUNT);
      const bool block_ok = (cols == 16 || cols == 32 || cols == 64 || cols == 128) && col0 % cols == 0 &&
                            col0 >= 0 && col0 + cols <= fmt::HEAD_DIM_V;
      const bool slots_ok = slot0 >= 0 && slot0 + n <= g.num_slots &&
                            (in.out_slot == fmt::NO_SLOT || in.out_slot < slot0 || in.out_slot >= slot0 + n);
      return n >= 1 && n <= fmt::MAX_COUNTED_INPUTS && in.q_count == 1 && block_ok && slots_ok && sem >= 0 &&
             sem < g.num_sems && __ldg(in.words + fmt::W_COUNTER_READERS) >= 1;
    }
    if (in.num_inputs < 1 || in.num_inputs > fmt::MAX_FANIN) return false;
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
    if (!operands_ok(g, in)) return false;
    const bool by_count = counted(in);
    const int k = by_count ? 1 : in.num_inputs;  // semaphores to wait on
    // One lane per input waits, all at once: serial waits cost a round trip to L2 each even when the inputs
    // are long done.
    bool ok = true;
    unsigned long long t0 = 0, t1 = 0;
    if (c.lane < k) {
      const int sem = __ldg(in.words + fmt::W_INPUT_SEMS + c.lane);
      t0 = ptx::globaltimer();
      ok = by_count ? semaphore_wait_count(g.sems + sem, in.num_inputs, g.status, instr, sem)
                    : semaphore_wait(g.sems + sem, g.status, instr, sem);
      t1 = ptx::globaltimer();
    }
    ok = __all_sync(0xffffffff, ok);
    if (!ok) {
      s.abort = 1;
      return false;
    }
    const int stage = c.ring.stage;
    if (!c.producer_wait(&s.empty[stage], c.ring.phase ^ 1)) return false;
    // The wait times travel with the stage: written only once its previous reader is done with it.
    if (c.lane < k) {
      s.wait_ts[stage][c.lane][0] = t0;
      s.wait_ts[stage][c.lane][1] = t1;
    }
    __syncwarp();  // every lane's acquire and wait_ts writes precede lane 0's arrival
    if (c.lane == 0) ptx::mbar_arrive(&s.full[stage]);  // release.cta: the consumers' loads follow the acquires
    c.ring.advance();
    // after the consumers are on their way: this round trip is only the counter's reset for the next launch
    if (by_count && c.lane == 0) {
      const int sem = __ldg(in.words + fmt::W_INPUT_SEMS);
      semaphore_count_seen(g.sems + sem, in.num_inputs, __ldg(in.words + fmt::W_COUNTER_READERS));
    }
    return true;
  }

  // ---------------------------------------------------------------- consumers
  // Thread layout over one query token (16 rows) of a column block of fmt::SCRATCH_BLOCK_COLS (16) columns:
  // lane -> row lane / 2, 8-column half lane % 2, so a warp's 16-byte loads of one input cover the block's
  // 512 contiguous bytes in scratch (four whole lines; fmt::SCRATCH_BLOCK_COLS says why the layout).
  static constexpr int kBlockCols = fmt::SCRATCH_BLOCK_COLS;
  static constexpr int kBlocks = fmt::HEAD_DIM_V / kBlockCols;                 // 32 per row
  static constexpr int kBlocksPerWarp = kBlocks / kConsumerWarps;             // 4: a listed merge's vectors per thread
  static_assert(kChunkRows * 2 == 32 && kBlockCols == 16, "a warp covers one block of one query token");

  // One merged 8-column vector to the output (bf16, row-major) or a scratch slot (fp16, column blocks),
  // and the row's LSE once (by the thread holding columns 0..7).
  __device__ static __forceinline__ void store_vec(const Globals& g, const Instr& in, int r, int col,
                                                   const float* acc, float inv, float lse) {
    uint4 packed;
    uint32_t* w = reinterpret_cast<uint32_t*>(&packed);
    if (in.out_slot == fmt::NO_SLOT) {
#pragma unroll
      for (int e = 0; e < 4; ++e) w[e] = ptx::pack_bf16(acc[2 * e] * inv, acc[2 * e + 1] * inv);
      *reinterpret_cast<uint4*>(g.out + in.out_row(g, r) * fmt::HEAD_DIM_V + col) = packed;
      if (col == 0) g.out_lse[in.out_row(g, r)] = lse;
    } else {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const __half2 h2 = __floats2half2_rn(acc[2 * e] * inv, acc[2 * e + 1] * inv);
        w[e] = *reinterpret_cast<const uint32_t*>(&h2);
      }
      __stcg(reinterpret_cast<uint4*>(g.scratch_o + in.scratch_o_index(in.out_slot, r, col)), packed);
      if (col == 0) __stcg(g.scratch_lse + in.slot_row(in.out_slot, r), lse);
    }
  }

  // One query token x a column block of C columns over n counted inputs: warp w takes block w % (C / 16) and
  // every G-th input (G = 8 / (C / 16) groups of warps), kCountedBatch per round trip, merged online
  // (running max, sum and weighted vector); the groups then combine through shared memory: the stage this
  // reduction holds carries no data, so its KV buffer is free until the stage is released.
  template <bool T>
  __device__ static void merge_counted(Ctx<T>& c, const Instr& in, const Operands& a, int stage) {
    const Globals& g = c.g;
    const int n = in.num_inputs, slot0 = a.slots[0];
    const int nb = a.cols / kBlockCols, groups = kConsumerWarps / nb;
    const int warp = c.ctid / 32, group = warp / nb;
    const int r = c.lane / 2, col = a.col0 + (warp % nb) * kBlockCols + (c.lane % 2) * 8;
    float m = -INFINITY, l = 0.f, acc[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[e] = 0.f;
    for (int first = group; first < n; first += groups * kCountedBatch) {
      uint4 raw[kCountedBatch];
      float lse[kCountedBatch];
      // Only this thread's inputs are loaded, every load issued before any is used: a position past the last
      // input keeps O 0 and LSE -inf (weight 0). `i < n ? load : 0` made the compiler zero the register a
      // pending load writes, which waits for it, so the loads went out one round trip at a time (6.7 us per
      // merge, v20); loads of the last input again in those positions cost a merge of 11 inputs 2.0 us for
      // its one round against 0.8-1.0 us for 16 distinct inputs (v24). Predicated loads do neither.
#pragma unroll
      for (int j = 0; j < kCountedBatch; ++j) {  // O first, LSE after (as in the listed merge)
        const int i = first + j * groups;
        raw[j] = make_uint4(0, 0, 0, 0);
        ptx::ld_cg_if(raw[j], g.scratch_o + in.scratch_o_index(slot0 + min(i, n - 1), r, col), i < n);
      }
#pragma unroll
      for (int j = 0; j < kCountedBatch; ++j) {
        const int i = first + j * groups;
        lse[j] = -INFINITY;
        ptx::ld_cg_if(lse[j], g.scratch_lse + in.slot_row(slot0 + min(i, n - 1), r), i < n);
      }
      asm volatile("" ::: "memory");  // every load of the round above the merge
      float mx = m;
#pragma unroll
      for (int j = 0; j < kCountedBatch; ++j) mx = fmaxf(mx, lse[j]);
      const float base = mx == -INFINITY ? 0.f : mx;
      const float rescale = __expf(m - base);  // 0 while nothing was seen (m = -inf)
      l *= rescale;
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[e] *= rescale;
#pragma unroll
      for (int j = 0; j < kCountedBatch; ++j) {
        const float w = __expf(lse[j] - base);
        const __half2* h = reinterpret_cast<const __half2*>(&raw[j]);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float2 v = __half22float2(h[e]);
          acc[2 * e] += w * v.x;
          acc[2 * e + 1] += w * v.y;
        }
        l += w;
      }
      m = mx;
    }
    if (groups > 1) {  // uniform: every consumer thread reaches both barriers
      constexpr int kState = 10;  // m, l, acc[8]
      float* red = reinterpret_cast<float*>(&c.s.kv[stage][0][0][0]);
      float* mine = red + c.ctid * kState;
      mine[0] = m;
      mine[1] = l;
#pragma unroll
      for (int e = 0; e < 8; ++e) mine[2 + e] = acc[e];
      c.consumer_sync();
      if (group == 0) {
        for (int o = 1; o < groups; ++o) {
          const float* other = red + (c.ctid + o * nb * 32) * kState;
          const float om = other[0], mx = fmaxf(m, om), base = mx == -INFINITY ? 0.f : mx;
          const float s1 = __expf(m - base), s2 = __expf(om - base);
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[e] = acc[e] * s1 + other[2 + e] * s2;
          l = l * s1 + other[1] * s2;
          m = mx;
        }
      }
      ptx::fence_proxy_async();  // these generic accesses, then the copy engine may write the stage again
    }
    if (group != 0) return;
    store_vec(g, in, r, col, acc, l > 0.f ? 1.f / l : 0.f, l > 0.f ? (m == -INFINITY ? 0.f : m) + __logf(l) : -INFINITY);
  }

  // A listed merge, one query token at a time: thread (warp w, lane) holds row lane / 2 of blocks w + 8j.
  template <bool T>
  __device__ static void merge_listed(Ctx<T>& c, const Instr& in, const Operands& a) {
    const Globals& g = c.g;
    const int k = in.num_inputs;
    const int warp = c.ctid / 32, r = c.lane / 2, half = c.lane % 2;
    int slots[fmt::MAX_FANIN];
#pragma unroll
    for (int i = 0; i < fmt::MAX_FANIN; ++i) slots[i] = i < k ? a.slots[i] : 0;
    for (int ch = 0; ch < in.q_count; ++ch) {
      const int row = ch * kChunkRows + r;
      // every load of this chunk first (L2 latency once), then the merge
      uint4 raw[fmt::MAX_FANIN][kBlocksPerWarp];
      float lse[fmt::MAX_FANIN];
      // O first, LSE after: the merge's first instructions wait on the LSEs, and the compiler keeps loads in
      // source order, so every O load is in flight before anything waits
      // addresses: one base per input (this thread's row and first block), then compile-time block steps
#pragma unroll
      for (int i = 0; i < fmt::MAX_FANIN; ++i) {
        const uint4* base = reinterpret_cast<const uint4*>(g.scratch_o + in.scratch_o_index(slots[i], row, warp * kBlockCols + half * 8));
#pragma unroll
        for (int j = 0; j < kBlocksPerWarp; ++j)
          raw[i][j] = i < k ? __ldcg(base + j * kConsumerWarps * fmt::MAX_ROWS * kBlockCols / 8) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int i = 0; i < fmt::MAX_FANIN; ++i) lse[i] = i < k ? __ldcg(g.scratch_lse + in.slot_row(slots[i], row)) : -INFINITY;
      asm volatile("" ::: "memory");  // keep every load above the merge: one L2 round trip per chunk
      float mx = -INFINITY;
#pragma unroll
      for (int i = 0; i < fmt::MAX_FANIN; ++i) mx = fmaxf(mx, lse[i]);
      // branch-free (a branch here let the compiler sink the other rows' loads below this row's merge):
      // absent inputs and rows that see nothing have LSE -inf and weight 0
      const float base = mx == -INFINITY ? 0.f : mx;
      float w[fmt::MAX_FANIN], sum = 0.f;
#pragma unroll
      for (int i = 0; i < fmt::MAX_FANIN; ++i) {
        w[i] = __expf(lse[i] - base);
        sum += w[i];
      }
      const float inv = sum > 0.f ? 1.f / sum : 0.f;
      const float out_lse = sum > 0.f ? base + __logf(sum) : -INFINITY;
      // this thread's vector of block warp + 8j, weighted over the inputs
      auto merged = [&](int j, float* acc) {
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[e] = 0.f;
#pragma unroll
        for (int i = 0; i < fmt::MAX_FANIN; ++i) {
          const __half2* h = reinterpret_cast<const __half2*>(&raw[i][j]);
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const float2 v = __half22float2(h[e]);
            acc[2 * e] += w[i] * v.x;
            acc[2 * e + 1] += w[i] * v.y;
          }
        }
      };
      // the destination once per chunk and compile-time steps per block (per-store address arithmetic and
      // the output/scratch choice inside the loop spilled registers)
      const int col = warp * kBlockCols + half * 8;
      float acc[8];
      uint4 packed;
      uint32_t* pw = reinterpret_cast<uint32_t*>(&packed);
      if (in.out_slot == fmt::NO_SLOT) {
        uint4* dst = reinterpret_cast<uint4*>(g.out + in.out_row(g, row) * fmt::HEAD_DIM_V + col);
#pragma unroll
        for (int j = 0; j < kBlocksPerWarp; ++j) {
          merged(j, acc);
#pragma unroll
          for (int e = 0; e < 4; ++e) pw[e] = ptx::pack_bf16(acc[2 * e] * inv, acc[2 * e + 1] * inv);
          dst[j * kConsumerWarps * kBlockCols / 8] = packed;
        }
        if (col == 0) g.out_lse[in.out_row(g, row)] = out_lse;
      } else {
        uint4* dst = reinterpret_cast<uint4*>(g.scratch_o + in.scratch_o_index(in.out_slot, row, col));
#pragma unroll
        for (int j = 0; j < kBlocksPerWarp; ++j) {
          merged(j, acc);
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const __half2 h2 = __floats2half2_rn(acc[2 * e] * inv, acc[2 * e + 1] * inv);
            pw[e] = *reinterpret_cast<const uint32_t*>(&h2);
          }
          __stcg(dst + j * kConsumerWarps * fmt::MAX_ROWS * kBlockCols / 8, packed);
        }
        if (col == 0) __stcg(g.scratch_lse + in.slot_row(in.out_slot, row), out_lse);
      }
    }
  }

  template <bool T>
  __device__ static bool consume(Ctx<T>& c, const Instr& in, int instr) {
    Smem& s = c.s;
    const bool by_count = counted(in);
    const Operands a = Operands::load(in);
    const int stage = c.ring.stage;
    if (!c.consumer_wait(&s.full[stage], c.ring.phase)) return false;
    // Every warp of this warpgroup has seen the stage's phase before its leader frees the stage. The stage
    // carries no data, so the producer refills it as soon as it is freed; with the next reduction's inputs
    // ready, two phases could then complete while a late warp still polled for the first, and that warp
    // would see the parity flip back and wait for a phase that never comes (1 launch in ~5,000 of
    // b64-rand256to1024-q4's static schedule, where an SM runs 3-5 reductions in a row: bench/NOTES.md).
    ptx::named_barrier(kWarpgroupBarrier0 + c.ctid / 128, 128);
    const unsigned long long t_full = c.leader ? c.rec.now() : 0;
    // A listed merge frees the stage at once, a counted one after its stores (it combines through the
    // stage's buffer); with timing on, the leader frees it after the release, once it has recorded the waits
    // from the stage's wait_ts (recorded inside the merge, their state spilled registers; and a release
    // waits for the leader's earlier event stores).
    if (!by_count && c.ctid % 128 == 0 && !(T && c.leader)) ptx::mbar_arrive(&s.empty[stage]);
    c.ring.advance();
    if (by_count) merge_counted(c, in, a, stage);
    else merge_listed(c, in, a);
    const unsigned long long t_store = c.leader ? c.rec.now() : 0;
    c.consumer_sync();  // every thread's stores precede the leader's gpu-scope release (cf. grid sync)
    if (by_count && c.ctid % 128 == 0 && !(T && c.leader)) ptx::mbar_arrive(&s.empty[stage]);
    if (c.leader && in.signal_sem != fmt::NO_SEM) semaphore_signal(c.g.sems + in.signal_sem, in.signal_count);
    if constexpr (T) {
      // recorded after the release, which would otherwise wait for these event stores too
      if (c.leader) {
        const int waits = by_count ? 1 : in.num_inputs;  // a counted merge waits once, on its counter
        for (int i = 0; i < waits; ++i) c.record_wait(instr, i, s.wait_ts[stage][i][0], s.wait_ts[stage][i][1]);
        ptx::mbar_arrive(&s.empty[stage]);
        // the merge starts when the consumers see the stage, or when the last wait ends if that is later
        const unsigned long long t_compute = c.last_ctrl_end > t_full ? c.last_ctrl_end : t_full;
        c.rec.record(fmt::KIND_COMPUTE, fmt::ROLE_CONSUMER, instr, -1, t_compute, t_store);
        c.rec.record(fmt::KIND_STORE, fmt::ROLE_CONSUMER, instr, -1, t_store, c.rec.now());
      }
    }
    return true;
  }
};

}  // namespace mlaprof
