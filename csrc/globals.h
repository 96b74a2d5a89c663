// Kernel arguments: plain data, so the host bindings (g++) and the device code (nvcc) share one definition.
#pragma once
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace mlaprof {

using bf16 = __nv_bfloat16;

struct KernelStatus {
  int* status;  // [4]: code, sm, instruction, semaphore (the first error wins)
  int* abort;   // nonzero once any SM gave up; every waiter polls it
};

struct Globals {
  CUtensorMap q_map;        // q as [b*s_q*16, 576] bf16, 64x64 boxes, 128-byte swizzle (filled at launch)
  CUtensorMap kv_map;       // kv_cache as [pages*64, 576] bf16, 32x64 boxes, 128-byte swizzle
  const int* instructions;  // [num_sms, max_instr, WORDS]
  int max_instr;
  const bf16* q;            // [b, s_q, h_q, d]
  const bf16* kv;           // [pages, PAGE_SIZE, d]
  const int* block_table;   // [b, bt_stride]
  int bt_stride;
  const int* seqlens;       // [b]
  int batch;
  int s_q;
  bf16* out;                // [b, s_q, h_q, dv]
  float* out_lse;           // [b, s_q, h_q]
  __half* scratch_o;        // [num_slots, MAX_ROWS, dv] fp16: 10-bit mantissa; |O| <= max |V| keeps it in range
  float* scratch_lse;       // [num_slots, MAX_ROWS]
  int num_slots;
  int* sems;                // [num_sems]
  int num_sems;
  float scale_log2;         // softmax scale * log2(e): scores go through exp2
  KernelStatus status;
  long long* events;        // [num_sms, capacity, EVENT_WORDS] (timing builds only)
  int* event_counts;        // [num_sms]
  int event_capacity;
};

}  // namespace mlaprof
