// The MLA decode megakernel: the interpreter instantiated with the MLA ops, with and without timing.
#include <cuda_runtime.h>
#include <cudaTypedefs.h>

#include "interpreter.cuh"
#include "megakernel.h"
#include "ops/partial.cuh"
#include "ops/reduction.cuh"

namespace mlaprof {

using MlaOps = OpList<PartialOp, ReductionOp>;

size_t smem_bytes() { return kSmemBytes; }

template <bool kTiming>
static cudaError_t launch_impl(const Globals& g, int num_blocks, cudaStream_t stream) {
  auto kernel = interpreter_kernel<kTiming, MlaOps>;
  static bool configured = false;  // one attribute call per instantiation and process
  if (!configured) {
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
    if (e != cudaSuccess) return e;
    configured = true;
  }
  kernel<<<num_blocks, kThreads, kSmemBytes, stream>>>(g);
  return cudaGetLastError();
}

// A 2-D bf16 tensor map of [rows, 576] with boxes of box_rows x 64 columns and 128-byte swizzle.
static cudaError_t make_map(CUtensorMap* map, const void* base, unsigned long long rows, unsigned box_rows) {
  static PFN_cuTensorMapEncodeTiled_v12000 encode = nullptr;
  if (encode == nullptr) {
    cudaDriverEntryPointQueryResult found;
    void* fn = nullptr;
    cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found);
    if (e != cudaSuccess || found != cudaDriverEntryPointSuccess) return e != cudaSuccess ? e : cudaErrorNotSupported;
    encode = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(fmt::HEAD_DIM_QK), rows};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(fmt::HEAD_DIM_QK) * 2};
  const cuuint32_t box[2] = {static_cast<cuuint32_t>(kChunkCols), box_rows};
  const cuuint32_t elem_strides[2] = {1, 1};
  CUresult r = encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void*>(base), dims, strides, box,
                      elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                      CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

cudaError_t launch_megakernel(const Globals& args, long long q_rows, long long kv_rows, int num_blocks, bool timing,
                              cudaStream_t stream) {
  Globals g = args;
  cudaError_t e = make_map(&g.q_map, g.q, q_rows, kQRows);
  if (e == cudaSuccess) e = make_map(&g.kv_map, g.kv, kv_rows, kTile);
  if (e != cudaSuccess) return e;
  return timing ? launch_impl<true>(g, num_blocks, stream) : launch_impl<false>(g, num_blocks, stream);
}

}  // namespace mlaprof
