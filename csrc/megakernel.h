// Host-side entry of the megakernel (no device code: the bindings include this with a plain C++ compiler).
#pragma once
#include <cstddef>
#include <cuda_runtime.h>

namespace mlaprof {
struct Globals;
size_t smem_bytes();
cudaError_t launch_megakernel(const Globals& g, int num_blocks, bool timing, cudaStream_t stream);
}  // namespace mlaprof
