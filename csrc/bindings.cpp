// Python entry: checks every tensor argument, fills Globals and launches on torch's current stream.
#include <torch/extension.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

#include "format.h"
#include "globals.h"
#include "megakernel.h"

namespace {

void check(const at::Tensor& t, const char* name, at::ScalarType dtype, int dims) {
  TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
  TORCH_CHECK(t.scalar_type() == dtype, name, " has dtype ", t.scalar_type(), ", expected ", dtype);
  TORCH_CHECK(t.dim() == dims, name, " must have ", dims, " dimensions, got ", t.dim());
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

void launch(const at::Tensor& instructions, const at::Tensor& q, const at::Tensor& kv_cache,
            const at::Tensor& block_table, const at::Tensor& seqlens, at::Tensor& out, at::Tensor& out_lse,
            at::Tensor& scratch_o, at::Tensor& scratch_lse, at::Tensor& sems, at::Tensor& status,
            at::Tensor& events, at::Tensor& event_counts, double softmax_scale, bool timing) {
  namespace fmt = mlaprof::fmt;
  check(instructions, "instructions", at::kInt, 3);
  TORCH_CHECK(instructions.size(2) == fmt::WORDS_PER_INSTRUCTION, "instructions: last dim must be ",
              fmt::WORDS_PER_INSTRUCTION);
  check(q, "q", at::kBFloat16, 4);
  TORCH_CHECK(q.size(2) == fmt::NUM_HEADS_Q && q.size(3) == fmt::HEAD_DIM_QK, "q must be [b, s_q, 16, 576]");
  TORCH_CHECK(q.size(1) >= 1 && q.size(1) <= fmt::MAX_S_Q, "s_q must be 1..", fmt::MAX_S_Q);
  check(kv_cache, "kv_cache", at::kBFloat16, 3);
  TORCH_CHECK(kv_cache.size(1) == fmt::PAGE_SIZE && kv_cache.size(2) == fmt::HEAD_DIM_QK,
              "kv_cache must be [pages, 64, 576]");
  check(block_table, "block_table", at::kInt, 2);
  check(seqlens, "cache_seqlens", at::kInt, 1);
  const int64_t b = q.size(0);
  TORCH_CHECK(block_table.size(0) == b && seqlens.size(0) == b, "block_table and cache_seqlens need b rows");
  check(out, "out", at::kBFloat16, 4);
  TORCH_CHECK(out.size(0) == b && out.size(1) == q.size(1) && out.size(2) == fmt::NUM_HEADS_Q &&
                  out.size(3) == fmt::HEAD_DIM_V, "out must be [b, s_q, 16, 512]");
  check(out_lse, "out_lse", at::kFloat, 3);
  check(scratch_o, "scratch_o", at::kHalf, 3);
  TORCH_CHECK(scratch_o.size(1) == fmt::MAX_ROWS && scratch_o.size(2) == fmt::HEAD_DIM_V, "scratch_o: [slots, 64, 512]");
  check(scratch_lse, "scratch_lse", at::kFloat, 2);
  check(sems, "sems", at::kInt, 1);
  check(status, "status", at::kInt, 1);
  TORCH_CHECK(status.size(0) >= 5, "status needs 5 ints");
  if (timing) {
    check(events, "events", at::kLong, 3);
    check(event_counts, "event_counts", at::kInt, 1);
    TORCH_CHECK(events.size(0) == instructions.size(0) && events.size(2) == fmt::EVENT_WORDS &&
                    event_counts.size(0) == instructions.size(0), "events must be [num_sms, capacity, 4]");
  }

  const c10::cuda::CUDAGuard guard(q.device());
  mlaprof::Globals g{};
  g.instructions = instructions.data_ptr<int>();
  g.max_instr = static_cast<int>(instructions.size(1));
  g.q = reinterpret_cast<const mlaprof::bf16*>(q.data_ptr());
  g.kv = reinterpret_cast<const mlaprof::bf16*>(kv_cache.data_ptr());
  g.block_table = block_table.data_ptr<int>();
  g.bt_stride = static_cast<int>(block_table.size(1));
  g.seqlens = seqlens.data_ptr<int>();
  g.batch = static_cast<int>(b);
  g.s_q = static_cast<int>(q.size(1));
  g.out = reinterpret_cast<mlaprof::bf16*>(out.data_ptr());
  g.out_lse = out_lse.data_ptr<float>();
  g.scratch_o = reinterpret_cast<__half*>(scratch_o.data_ptr());
  g.scratch_lse = scratch_lse.data_ptr<float>();
  g.num_slots = static_cast<int>(scratch_o.size(0));
  g.sems = sems.data_ptr<int>();
  g.num_sems = static_cast<int>(sems.size(0));
  g.scale_log2 = static_cast<float>(softmax_scale * 1.4426950408889634);
  g.status = mlaprof::KernelStatus{status.data_ptr<int>(), status.data_ptr<int>() + 4};
  if (timing) {
    g.events = reinterpret_cast<long long*>(events.data_ptr<int64_t>());
    g.event_counts = event_counts.data_ptr<int>();
    g.event_capacity = static_cast<int>(events.size(1));
  }
  auto stream = c10::cuda::getCurrentCUDAStream();
  cudaError_t err = mlaprof::launch_megakernel(g, b * q.size(1) * fmt::NUM_HEADS_Q, kv_cache.size(0) * fmt::PAGE_SIZE,
                                                 static_cast<int>(instructions.size(0)), timing, stream);
  TORCH_CHECK(err == cudaSuccess, "megakernel launch failed: ", cudaGetErrorString(err));
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("launch", &launch, "Launch the MLA decode megakernel");
  m.def("smem_bytes", &mlaprof::smem_bytes, "Dynamic shared memory per block");
}
