"""One launch of the megakernel on a named workload, for Nsight Compute:

    ncu --section WarpStateStats -k regex:interpreter -c 1 python3 bench/ncu_target.py b132-4096-q4 static
"""

import sys

import numpy as np
import torch

from mlaprof.kernel import Megakernel
from mlaprof.schedule import make_schedule
from mlaprof.schedule.encode import encode
from mlaprof.workloads import NAMED, build_tensors

name = sys.argv[1] if len(sys.argv) > 1 else "b132-4096-q4"
scheduler = sys.argv[2] if len(sys.argv) > 2 else "static"
w = NAMED[name]
t = build_tensors(w, "cuda")
enc = encode(make_schedule(w, torch.cuda.get_device_properties(0).multi_processor_count, scheduler))
mk = Megakernel(torch.from_numpy(np.ascontiguousarray(enc.instructions)), t, enc.num_slots, enc.num_sems, timing=False)
mk.run()
torch.cuda.synchronize()
