#!/usr/bin/env bash
# Every GPU check in one run, for a lent machine with a short lease: the CUDA path end to end in seconds (benchmark
# smoke preset with the states on the GPU and on the host, DiT-exactness smoke), then replayed CUDA graphs against
# the rounds run as they are (simulations.graph_check: no new cell after GRAPH_SECONDS, default 60), then the GPU
# benchmark presets (each starts no new cell after BENCH_SECONDS), then the DiT exactness check at full size on the GPU
# (no new check after EXACTNESS_SECONDS, 0 to skip; it prints each check as it finishes). Every finished cell is also
# stored under OUTPUT_DIR/cells, so the cells of a run cut short come back.
# Usage: bash simulations/gpu_checks.sh OUTPUT_DIR [BENCH_SECONDS=120] [EXACTNESS_SECONDS=45] [PRESET...=gpu gpu-compiled]
# With the defaults it takes about 11 minutes: about 1 minute of smoke checks, the graph check for GRAPH_SECONDS plus
# its last cell, then each preset for BENCH_SECONDS plus its last cell (a compiled cell first compiles its round, a
# minute or two), then the exactness check.
# GPU_CHECKS_DEVICE=cpu runs the same steps on the CPU (no nvidia-smi): the tests use it to check the script itself.
# With SD_SECONDS > 0 in the environment, the Stable-Diffusion-sized benchmark (simulations.bench_sd_gpu) runs last,
# starting no new cell after SD_SECONDS.
# Without git on the machine, or with a stale copy of it, set SPECDIFF_COMMIT to the commit the tree was copied from.
set -uo pipefail
out=${1:?usage: gpu_checks.sh OUTPUT_DIR [BENCH_SECONDS] [EXACTNESS_SECONDS] [PRESET...]}
bench_seconds=${2:-120}
exactness_seconds=${3:-45}
device=${GPU_CHECKS_DEVICE:-cuda}
shift $(($# < 3 ? $# : 3))
if [ $# -gt 0 ]; then presets=("$@"); else presets=(gpu gpu-compiled); fi
export PYTHONUNBUFFERED=1
mkdir -p "$out"
if [ "$device" = cuda ]; then
    nvidia-smi -L
    python3 -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())"
fi
GPU_CHECKS_DEVICE=$device python3 - <<'PY' >>"$out/smoke.log" 2>&1 || { tail -40 "$out/smoke.log"; exit 1; }
import os
from dataclasses import replace
import torch
from simulations import bench_gpu
smoke = bench_gpu.PRESETS["smoke"]
for placement in ("device", "host"):
    bench_gpu.run(replace(smoke, placement=placement), torch.device(os.environ["GPU_CHECKS_DEVICE"]), seed=0)
PY
python3 -m simulations.dit_exactness --smoke --device "$device" --output "$out/dit_exactness_smoke.json" \
    --store "$out/cells/dit_exactness_smoke" >>"$out/smoke.log" 2>&1 || { tail -40 "$out/smoke.log"; exit 1; }
tail -3 "$out/smoke.log"
graph_seconds=${GRAPH_SECONDS:-60}
timeout $((graph_seconds + 240)) python3 -m simulations.graph_check --device "$device" --max-seconds "$graph_seconds" \
    --output "$out/graph_check.json" --store "$out/cells/graph_check" 2>&1 | tee "$out/graph_check.log"
for preset in "${presets[@]}"; do
    timeout $((bench_seconds + 240)) python3 -m simulations.bench_gpu --preset "$preset" --max-seconds "$bench_seconds" \
        --device "$device" --verbose --output "$out/bench_${preset//-/_}.json" \
        --store "$out/cells/bench_${preset//-/_}" 2>&1 | tee "$out/bench_${preset//-/_}.log"
done
if [ "$exactness_seconds" -gt 0 ]; then
    timeout $((exactness_seconds + 120)) python3 -m simulations.dit_exactness --device "$device" --verbose \
        --max-seconds "$exactness_seconds" --store "$out/cells/dit_exactness" --output "$out/dit_exactness.json" 2>&1 \
        | tee "$out/dit_exactness.log"
fi
sd_seconds=${SD_SECONDS:-0}
if [ "$sd_seconds" -gt 0 ]; then
    timeout $((sd_seconds + 120)) python3 -m simulations.bench_sd_gpu --verbose --max-seconds "$sd_seconds" \
        --output "$out/bench_sd_gpu.json" --store "$out/cells/bench_sd_gpu" 2>&1 | tee "$out/bench_sd_gpu.log"
fi
exit 0
