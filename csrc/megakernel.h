// Host-side entry of the megakernel (no device code: the bindings include this with a plain C++ compiler).
#pragma once
#include <cstddef>
#include <cuda_runtime.h>

namespace mlaprof {
struct Globals;
size_t smem_bytes();
// q_rows = b*s_q*16 and kv_rows = pages*64 size the tensor maps the kernel loads Q and KV tiles through.
cudaError_t launch_megakernel(const Globals& g, long long q_rows, long long kv_rows, int num_blocks, bool timing,
                              cudaStream_t stream);
}  // namespace mlaprof
