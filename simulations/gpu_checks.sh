#!/usr/bin/env bash
# Every GPU check in one run, for a lent machine with a short lease: the CUDA path end to end in seconds (benchmark
# smoke preset with the states on the GPU and on the host, DiT-exactness smoke), then the GPU benchmark presets (each
# starts no new cell after BENCH_SECONDS), then the DiT exactness check at full size on the GPU (no new check after
# EXACTNESS_SECONDS, 0 to skip; it prints each check as it finishes). Every finished cell is also stored under
# OUTPUT_DIR/cells, so the cells of a run cut short come back.
# Usage: bash simulations/gpu_checks.sh OUTPUT_DIR [BENCH_SECONDS=150] [EXACTNESS_SECONDS=60] [PRESET...=gpu gpu-compiled]
# The defaults fit one 10-minute call: about 1 minute of smoke checks, then each preset for BENCH_SECONDS plus its
# last cell (a compiled cell compiles its round first, a minute or two), then the exactness check.
# With SD_SECONDS > 0 in the environment, the Stable-Diffusion-sized benchmark (simulations.bench_sd_gpu) runs last,
# starting no new cell after SD_SECONDS.
# Without git on the machine, or with a stale copy of it, set SPECDIFF_COMMIT to the commit the tree was copied from.
set -uo pipefail
out=${1:?usage: gpu_checks.sh OUTPUT_DIR [BENCH_SECONDS] [EXACTNESS_SECONDS] [PRESET...]}
bench_seconds=${2:-150}
exactness_seconds=${3:-60}
shift $(($# < 3 ? $# : 3))
if [ $# -gt 0 ]; then presets=("$@"); else presets=(gpu gpu-compiled); fi
export PYTHONUNBUFFERED=1
mkdir -p "$out"
nvidia-smi -L
python3 -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())"
python3 - <<'PY' >>"$out/smoke.log" 2>&1 || { tail -40 "$out/smoke.log"; exit 1; }
from dataclasses import replace
import torch
from simulations import bench_gpu
smoke = bench_gpu.PRESETS["smoke"]
for placement in ("device", "host"):
    bench_gpu.run(replace(smoke, placement=placement), torch.device("cuda"), seed=0)
PY
python3 -m simulations.dit_exactness --smoke --device cuda --output "$out/dit_exactness_smoke.json" \
    --store "$out/cells/dit_exactness_smoke" >>"$out/smoke.log" 2>&1 || { tail -40 "$out/smoke.log"; exit 1; }
tail -3 "$out/smoke.log"
for preset in "${presets[@]}"; do
    timeout $((bench_seconds + 120)) python3 -m simulations.bench_gpu --preset "$preset" --max-seconds "$bench_seconds" \
        --verbose --output "$out/bench_${preset//-/_}.json" --store "$out/cells/bench_${preset//-/_}" 2>&1 \
        | tee "$out/bench_${preset//-/_}.log"
done
if [ "$exactness_seconds" -gt 0 ]; then
    timeout $((exactness_seconds + 120)) python3 -m simulations.dit_exactness --device cuda --verbose \
        --max-seconds "$exactness_seconds" --store "$out/cells/dit_exactness" --output "$out/dit_exactness.json" 2>&1 \
        | tee "$out/dit_exactness.log"
fi
sd_seconds=${SD_SECONDS:-0}
if [ "$sd_seconds" -gt 0 ]; then
    timeout $((sd_seconds + 120)) python3 -m simulations.bench_sd_gpu --verbose --max-seconds "$sd_seconds" \
        --output "$out/bench_sd_gpu.json" --store "$out/cells/bench_sd_gpu" 2>&1 | tee "$out/bench_sd_gpu.log"
fi
exit 0
