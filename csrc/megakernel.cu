// The MLA decode megakernel: the interpreter instantiated with the MLA ops, with and without timing.
#include <cuda_runtime.h>

#include "interpreter.cuh"
#include "megakernel.h"
#include "ops/partial.cuh"
#include "ops/reduction.cuh"

namespace mlaprof {

using MlaOps = OpList<PartialOp, ReductionOp>;

size_t smem_bytes() { return sizeof(Smem); }

template <bool kTiming>
static cudaError_t launch_impl(const Globals& g, int num_blocks, cudaStream_t stream) {
  auto kernel = interpreter_kernel<kTiming, MlaOps>;
  static bool configured = false;  // one attribute call per instantiation and process
  if (!configured) {
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, sizeof(Smem));
    if (e != cudaSuccess) return e;
    configured = true;
  }
  kernel<<<num_blocks, kThreads, sizeof(Smem), stream>>>(g);
  return cudaGetLastError();
}

cudaError_t launch_megakernel(const Globals& g, int num_blocks, bool timing, cudaStream_t stream) {
  return timing ? launch_impl<true>(g, num_blocks, stream) : launch_impl<false>(g, num_blocks, stream);
}

}  // namespace mlaprof
