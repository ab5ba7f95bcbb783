#!/usr/bin/env bash
# gauntlet on a GPU against gauntlet on the CPU, on the same weights and inputs. For a machine
# with an NVIDIA GPU, the driver and the CUDA toolkit (nvcc; cudarc takes CUDA ≤ 13.x):
#
#   bash benches/gpu_check.sh            # or: just gpu-check
#
# 1. builds gauntlet with `--features cuda` (release);
# 2. runs the device-parameterised tests (`device_tests!`: each test's `cuda` half) of
#    gauntlet-models and gauntlet-attacks on CUDA device 0 — gradients against finite
#    differences, the native-path comparisons, the attack conformance contract;
# 3. compares candle-on-CUDA with the native CPU path on the PyTorch-exported small CNN and
#    ResNet-20: logits within 1e-4 of the largest logit, input-gradient cosine ≥ 0.9999, clean
#    and PGD-10 robust accuracy within 2 images of 256 (`gpu_check models`);
# 4. runs the embedded default suite and the ResNet-20 suite (benches/gpu/resnet20.toml) with
#    `--device cpu` and `--device cuda`, and compares the two results.json: every clean,
#    attack@ε and worst-case figure within 2 images (`gpu_check results`);
# 5. times PGD-10 on ResNet-20 at batch 128, 512 and 1024, CPU native path vs CUDA
#    (`gpu_check throughput`).
#
# Everything it prints goes to target/gpu-check/report.md as well: paste the figures into
# benches/README.md ("GPU"). Exits non-zero at the first comparison outside its tolerance.
#
# GPU_CHECK_DEVICE=cpu runs steps 3–5 against candle's CPU path instead of CUDA and skips the
# CUDA build and tests: that is how this script itself is checked on a machine without a GPU.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."

device="${GPU_CHECK_DEVICE:-cuda}"
out=target/gpu-check
mkdir -p "$out"
report="$out/report.md"
: > "$report"
log() { printf '%s\n' "$*" | tee -a "$report"; }

features=()
if [ "$device" = cuda ]; then
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$report"
  command -v nvcc >/dev/null || { echo "gpu_check: nvcc not found (set PATH/CUDA_HOME)" >&2; exit 2; }
  # Build for the GPU that is here unless told otherwise.
  if [ -z "${CUDA_COMPUTE_CAP:-}" ] && command -v nvidia-smi >/dev/null; then
    CUDA_COMPUTE_CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)
    export CUDA_COMPUTE_CAP
  fi
  features=(--features cuda)
fi

log "## gauntlet gpu-check: device $device, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"

echo "== 1. build (release${features:+, cuda})"
gauntlet_features=()
[ "$device" = cuda ] && gauntlet_features=(--features gauntlet/cuda)
cargo build --release -q -p gauntlet "${gauntlet_features[@]}"
cargo build --release -q -p gauntlet-benches --example gpu_check "${features[@]}"
gauntlet=target/release/gauntlet
check=target/release/examples/gpu_check

if [ "$device" = cuda ]; then
  echo "== 2. device-parameterised tests on CUDA"
  # `::cuda` selects the CUDA half of every `device_tests!` test.
  cargo test --release -q -p gauntlet-models --features cuda -- ::cuda
  cargo test --release -q -p gauntlet-attacks --features cuda -- ::cuda
  log "device-parameterised tests (::cuda) of gauntlet-models and gauntlet-attacks: passed"
else
  echo "== 2. skipped (no CUDA)"
fi

echo "== 3. the PyTorch-exported networks: $device against the native CPU path"
log ""
"$check" models "$device" | tee -a "$report"

echo "== 4. suites on cpu and on $device"
"$check" make-data "$out/resnet20-data" 512
# The second run: CUDA, or with GPU_CHECK_DEVICE=cpu candle's CPU kernels (--candle-kernels), so
# that the comparison is never a path against itself.
other="$device"
other_args=(--device "$device")
if [ "$device" = cpu ]; then
  other=cpu-candle
  other_args=(--device cpu --candle-kernels)
fi
for suite in default resnet20; do
  suite_args=()
  [ "$suite" = resnet20 ] && suite_args=(benches/gpu/resnet20.toml)
  for side in cpu "$other"; do
    side_args=(--device cpu)
    [ "$side" = "$other" ] && side_args=("${other_args[@]}")
    dir="$out/$suite-$side"
    status=0
    "$gauntlet" run "${suite_args[@]}" "${side_args[@]}" --out "$dir" --format json,markdown \
      --overwrite -q > "$dir.stdout" 2>&1 || status=$?
    # 1 (a gate or sanity check failed) is a result like any other here; 2 is not.
    [ "$status" -le 1 ] || { cat "$dir.stdout"; echo "gpu_check: gauntlet run ($suite, $side) exited $status" >&2; exit 2; }
  done
  log ""
  log "### $suite suite: cpu vs $other"
  "$check" results "$out/$suite-cpu/results.json" "$out/$suite-$other/results.json" 2 | tee -a "$report"
done

echo "== 5. PGD-10 throughput on ResNet-20"
log ""
"$check" throughput "$device" "${GPU_CHECK_BATCHES:-128,512,1024}" | tee -a "$report"

echo "gpu_check: every comparison within tolerance; figures in $report"
