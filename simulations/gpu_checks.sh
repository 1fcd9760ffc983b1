#!/usr/bin/env bash
# Every GPU check in one run, for a lent machine with a short lease: the CUDA path end to end in seconds (benchmark
# smoke preset with the states on the GPU and on the host, DiT-exactness smoke), then replayed CUDA graphs against
# the rounds run as they are (simulations.graph_check: no new cell after GRAPH_SECONDS, default 45), then the GPU
# benchmark presets (each starts no new cell after BENCH_SECONDS), then the DiT exactness check at full size on the GPU
# (no new check after EXACTNESS_SECONDS, 0 to skip; it prints each check as it finishes). Every finished cell is also
# stored under OUTPUT_DIR/cells.
# Usage: bash simulations/gpu_checks.sh OUTPUT_DIR [BENCH_SECONDS=120] [EXACTNESS_SECONDS=45]
#     [PRESET...=gpu-compiled gpu]
# The whole script ends within TOTAL_SECONDS (default 540, under a lease's 600-second command limit): each step runs
# under `timeout` up to the deadline, keeping 60 seconds for each later benchmark preset and the exactness check; a
# step cut off by its timeout has its results file assembled from its stored cells (a rerun that starts no cell); a
# step with under 40 seconds left is skipped with a line that says so. With the defaults it takes about 8 minutes.
# GPU_CHECKS_DEVICE=cpu runs the same steps on the CPU (no nvidia-smi): the tests use it to check the script itself.
# With SD_SECONDS > 0 in the environment, the Stable-Diffusion-sized benchmark (simulations.bench_sd_gpu) runs last,
# starting no new cell after SD_SECONDS (give it a TOTAL_SECONDS of its own: the deadline holds for it too).
# Without git on the machine, or with a stale copy of it, set SPECDIFF_COMMIT to the commit the tree was copied from.
# step NAME CAP RESERVE MODULE ARGUMENT...: python3 -m MODULE ARGUMENT... with its results in OUTPUT_DIR/NAME.json,
# its cells in OUTPUT_DIR/cells/NAME and its log in OUTPUT_DIR/NAME.log. No new cell after CAP seconds, nor after
# two thirds of the time left before the deadline less RESERVE (the seconds kept for later steps); killed 20 seconds
# before that point, and then its results file is assembled from its stored cells (a rerun that starts no cell).
step() {
    local name=$1 cap=$2 reserve=$3
    shift 3
    local left=$((deadline - SECONDS - reserve))
    if [ "$left" -lt 40 ]; then
        echo "gpu_checks: $name skipped: ${left} s left before the deadline (TOTAL_SECONDS=$total_seconds)" \
            | tee "$out/$name.log"
        return 0
    fi
    local budget=$((cap < 2 * left / 3 ? cap : 2 * left / 3))
    local files=(--output "$out/$name.json" --store "$out/cells/$name")
    timeout $((left - 20)) python3 -m "$@" --max-seconds "$budget" "${files[@]}" 2>&1 | tee "$out/$name.log"
    if [ "${PIPESTATUS[0]}" -eq 124 ]; then
        echo "gpu_checks: $name was cut off at the deadline: its results file holds the cells it finished" \
            | tee -a "$out/$name.log"
        timeout 20 python3 -m "$@" --max-seconds 1e-6 "${files[@]}" 2>&1 | tail -3 | tee -a "$out/$name.log"
    fi
}

# Sourced (the tests call `step` alone), the script only defines it; it reads the globals out, deadline and
# total_seconds.
if [ "${BASH_SOURCE[0]}" != "$0" ]; then return 0; fi
set -uo pipefail
out=${1:?usage: gpu_checks.sh OUTPUT_DIR [BENCH_SECONDS] [EXACTNESS_SECONDS] [PRESET...]}
bench_seconds=${2:-120}
exactness_seconds=${3:-45}
device=${GPU_CHECKS_DEVICE:-cuda}
shift $(($# < 3 ? $# : 3))
if [ $# -gt 0 ]; then presets=("$@"); else presets=(gpu-compiled gpu); fi
total_seconds=${TOTAL_SECONDS:-540}
deadline=$((SECONDS + total_seconds))
export PYTHONUNBUFFERED=1
mkdir -p "$out"

if [ "$device" = cuda ]; then
    nvidia-smi -L
    python3 -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())"
fi
GPU_CHECKS_DEVICE=$device timeout $((deadline - SECONDS)) python3 - <<'PY' >>"$out/smoke.log" 2>&1 \
    || { tail -40 "$out/smoke.log"; exit 1; }
import os
from dataclasses import replace
import torch
from simulations import bench_gpu
smoke = bench_gpu.PRESETS["smoke"]
for placement in ("device", "host"):
    bench_gpu.run(replace(smoke, placement=placement), torch.device(os.environ["GPU_CHECKS_DEVICE"]), seed=0)
PY
timeout $((deadline - SECONDS)) python3 -m simulations.dit_exactness --smoke --device "$device" \
    --output "$out/dit_exactness_smoke.json" --store "$out/cells/dit_exactness_smoke" >>"$out/smoke.log" 2>&1 \
    || { tail -40 "$out/smoke.log"; exit 1; }
tail -3 "$out/smoke.log"
# The seconds kept for the steps after the graph check: 60 for each preset and for the exactness check.
later=$((60 * ${#presets[@]} + (exactness_seconds > 0 ? 60 : 0)))
step graph_check "${GRAPH_SECONDS:-45}" "$later" simulations.graph_check --device "$device"
for preset in "${presets[@]}"; do
    later=$((later - 60))
    step "bench_${preset//-/_}" "$bench_seconds" "$later" simulations.bench_gpu --preset "$preset" \
        --device "$device" --verbose
done
if [ "$exactness_seconds" -gt 0 ]; then
    step dit_exactness "$exactness_seconds" 0 simulations.dit_exactness --device "$device" --verbose
fi
sd_seconds=${SD_SECONDS:-0}
if [ "$sd_seconds" -gt 0 ]; then
    step bench_sd_gpu "$sd_seconds" 0 simulations.bench_sd_gpu --verbose
fi
exit 0
