#!/usr/bin/env bash
# Every GPU check in one run, for a lent machine with a short lease: the CUDA path end to end in seconds (benchmark
# and DiT-exactness smoke presets), then the GPU benchmark (no new cell after BENCH_SECONDS), then the DiT exactness
# check at full size on the GPU (stopped after EXACTNESS_SECONDS; it prints each check as it finishes).
# Usage: bash simulations/gpu_checks.sh OUTPUT_DIR [BENCH_SECONDS=330] [EXACTNESS_SECONDS=150]
# Without git on the machine, set SPECDIFF_COMMIT to the commit the tree was copied from.
set -uo pipefail
out=${1:?usage: gpu_checks.sh OUTPUT_DIR [BENCH_SECONDS] [EXACTNESS_SECONDS]}
bench_seconds=${2:-330}
exactness_seconds=${3:-150}
export PYTHONUNBUFFERED=1
mkdir -p "$out"
nvidia-smi -L
python3 -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())"
for smoke in "bench_gpu --preset smoke --output $out/bench_smoke.json" \
    "dit_exactness --smoke --device cuda --output $out/dit_exactness_smoke.json"; do
    # shellcheck disable=SC2086
    python3 -m simulations.$smoke >>"$out/smoke.log" 2>&1 || { tail -40 "$out/smoke.log"; exit 1; }
done
tail -3 "$out/smoke.log"
timeout $((bench_seconds + 120)) python3 -m simulations.bench_gpu --preset gpu --max-seconds "$bench_seconds" \
    --output "$out/bench_gpu.json" 2>&1 | tee "$out/bench.log"
timeout "$exactness_seconds" python3 -m simulations.dit_exactness --device cuda \
    --output "$out/dit_exactness.json" 2>&1 | tee "$out/dit_exactness.log"
exit 0
