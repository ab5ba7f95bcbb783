#!/usr/bin/env bash
# gauntlet's `standard` ensemble against the AutoAttack reference (`pyautoattack` 0.2.0,
# `AutoAttack(version='standard')`), back to back on this machine: $MODEL on the first $IMAGES
# test images, L∞ at $EPSILON, the reference's settings on both sides (100 steps, nine targets
# for APGD-T and FAB-T, 5,000 Square queries, each member only on what the earlier ones left).
# Prints robust accuracy and wall time of each, and the time ratio reference / gauntlet (above
# 1: gauntlet is faster).
#
# MODEL is one of
#   small-cnn (default)  the shipped Fashion-MNIST small CNN (models/assets/fashion-mnist-small-cnn.*)
#                        on the 28×28 Fashion-MNIST test images (IDX); ε default 0.03
#   resnet20-fashion     a CIFAR-size task: gauntlet's `resnet20` trained on Fashion-MNIST padded
#                        to 3×32×32 (benches/assets/resnet20-fashion.*, made by
#                        benches/make_resnet20_fashion.py), on the same padded test images written
#                        as uint8 NCHW .npy (generated into a temporary folder, read by both
#                        sides); ε default 8/255
#
#   bash benches/compare_standard.sh                       # small CNN, 1,000 images, ε = 0.03
#   IMAGES=200 EPSILON=0.01 bash benches/compare_standard.sh
#   MODEL=resnet20-fashion IMAGES=200 bash benches/compare_standard.sh   # ε = 8/255
#
# Needs a venv with torch, safetensors and pyautoattack ($AA_VENV, default /tmp/aavenv:
# `python3 -m venv /tmp/aavenv && /tmp/aavenv/bin/pip install torch safetensors numpy
# pyautoattack`) and the Fashion-MNIST test IDX files in $DATA (default
# /usr/share/datasets/fashion-mnist; the bundled datasets/data/fashion-mnist-test-1k has the
# same first 1,000 images). Both sides use the machine's cores ($THREADS, default nproc).
# gauntlet's time is the whole `gauntlet run` process (model and data loading, clean pass,
# reports) and, separately, its attack time from results.json; the reference's is
# `run_standard_evaluation` alone.
set -euo pipefail
cd "$(dirname "$0")/.."

model=${MODEL:-small-cnn}
images=${IMAGES:-1000}
case "$model" in
small-cnn) epsilon=${EPSILON:-0.03} ;;
resnet20-fashion) epsilon=${EPSILON:-0.03137254901960784} ;; # 8/255
*) echo "MODEL must be small-cnn or resnet20-fashion, not $model" >&2; exit 2 ;;
esac
data=${DATA:-/usr/share/datasets/fashion-mnist}
venv=${AA_VENV:-/tmp/aavenv}
threads=${THREADS:-$(nproc)}
batch=${BATCH:-250}
export THREADS=$threads RAYON_NUM_THREADS=$threads

echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')"
echo "standard, $model, L∞ ε = $epsilon, $images images, batch $batch, $threads threads"
uptime
cargo build --release --quiet -p gauntlet
target=${CARGO_TARGET_DIR:-target}

work=$(mktemp -d)
# KEEP=folder: copy the suite, gauntlet's log and report folder and the reference's log there.
trap '[ -z "${KEEP:-}" ] || { mkdir -p "$KEEP" && cp -r "$work"/suite.toml "$work"/*.log "$work"/*.out "$work"/out "$KEEP"/ 2>/dev/null; }; rm -rf "$work"' EXIT
root=$(pwd)
if [ "$model" = small-cnn ]; then
    spec=$root/models/assets/fashion-mnist-small-cnn.toml
    weights=$root/models/assets/fashion-mnist-small-cnn.safetensors
    dataset="format = \"idx\"
images = \"$data/t10k-images-idx3-ubyte.gz\"
labels = \"$data/t10k-labels-idx1-ubyte.gz\""
    reference_data=$data
else
    spec=$root/benches/assets/resnet20-fashion.toml
    weights=$root/benches/assets/resnet20-fashion.safetensors
    DATA=$data "$venv/bin/python" benches/make_resnet20_fashion.py data "$work/data" "$images"
    dataset="format = \"npy\"
images = \"$work/data/images.npy\"
labels = \"$work/data/labels.npy\""
    reference_data=$work/data
fi
cat >"$work/suite.toml" <<TOML
version = 1
name = "standard vs AutoAttack reference"
seed = 0
device = "cpu"
batch_size = $batch

[model]
spec = "$spec"
weights = "$weights"

[dataset]
$dataset
limit = $images

[[attack]]
name = "standard"
epsilons = [$epsilon]

[report]
formats = ["json"]
out = "$work/out"
TOML

echo "gauntlet from $(date -u +%H:%M:%S)"
start=$(date +%s.%N)
"$target/release/gauntlet" run "$work/suite.toml" >"$work/gauntlet.log" 2>&1 || {
    status=$?
    # Exit 1 is a failed gate or sanity check: the numbers are still there.
    [ "$status" -eq 1 ] || { cat "$work/gauntlet.log"; exit "$status"; }
}
end=$(date +%s.%N)
gauntlet_seconds=$(echo "$end - $start" | bc)

echo "reference from $(date -u +%H:%M:%S)"
"$venv/bin/python" benches/compare_standard.py "$images" "$epsilon" "$reference_data" "$batch" "$model" \
    2>"$work/reference.log" | tee "$work/reference.out"
grep -E "robust accuracy|initial accuracy" "$work/reference.log" | sed 's/^/  /' || true

python3 - "$work/out/results.json" "$gauntlet_seconds" "$work/reference.out" <<'PY'
import json
import re
import sys

results = json.load(open(sys.argv[1]))
wall = float(sys.argv[2])
run = results["attacks"][0]
robust = run["robust_accuracy"]
credit = ", ".join(f"{c['member']} {c['broken']}" for c in run.get("broken_by", []))
reference = open(sys.argv[3]).read()
ref = dict(re.findall(r"(\w+)=([\d.]+)", reference.splitlines()[-1]))
ref_seconds = float(ref["seconds"])
ref_robust = int(ref["robust"])
images = int(ref["images"])
print()
print("| | robust | robust accuracy | seconds |")
print("|---|---:|---:|---:|")
print(f"| gauntlet `standard` (whole run) | {robust['successes']} | {robust['value']:.3f} | {wall:.1f} |")
print(f"| gauntlet `standard` (attack only) | | | {run['seconds']:.1f} |")
print(f"| pyautoattack `AutoAttack(version='standard')` | {ref_robust} | {ref_robust / images:.3f} | {ref_seconds:.1f} |")
print()
print(f"gauntlet: clean {results['clean']['accuracy']['successes']}/{images}; broken by member: {credit}")
print(f"time ratio reference / gauntlet: {ref_seconds / wall:.2f} (whole run), "
      f"{ref_seconds / run['seconds']:.2f} (attack only)")
PY
