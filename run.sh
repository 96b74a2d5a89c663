#!/usr/bin/env bash
# The main job. With an sm_90 GPU: record a measured trace for every named workload and both schedulers
# into traces/, then open the dashboard on them. Without one: open the dashboard on the bundled traces/.
set -euo pipefail
cd "$(dirname "$0")"
python3 -c "import torch" 2>/dev/null || python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e .
if python3 -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() and torch.cuda.get_device_capability()[0] == 9 else 1)"; then
  for w in seed-representative b1-65536-q1 b64-rand256to1024-q4 b64-512-q2 b132-4096-q4; do
    for s in static makespan; do
      mlaprof run --workload "$w" --scheduler "$s" --repeat 20 --out "traces/${w}__${s}.arrow"
    done
  done
else
  echo "no sm_90 GPU here: opening the dashboard on the bundled traces/ (recorded on an H100)"
fi
exec mlaprof dash traces "$@"
