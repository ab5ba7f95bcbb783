#!/usr/bin/env bash
# Proves that `--features cuda` compiles, on a machine without a GPU: installs the CUDA 13.0
# compiler, headers and runtime from PyPI into a venv, points CUDA_HOME at them, and runs
# `cargo check --features gauntlet/cuda --all-targets` over the workspace in its own target
# folder. Nothing is linked (linking needs the driver's libcuda, which only a GPU machine has),
# so this catches type errors in `#[cfg(feature = "cuda")]` code and candle's CUDA kernels
# (nvcc compiles them to PTX for compute capability 9.0 in candle-kernels' build script).
#
# The toolkit stays at 13.0.x: cudarc (candle's CUDA binding) rejects toolkits newer than it
# knows, and the five wheels must share one version.
#
# Environment: GAUNTLET_CUDA_VENV (default $TMPDIR/gauntlet-cuda-toolkit) for the venv,
# GAUNTLET_CUDA_TARGET_DIR (default target/cuda-check) for cargo's output.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."

toolkit=13.0.*
venv="${GAUNTLET_CUDA_VENV:-${TMPDIR:-/tmp}/gauntlet-cuda-toolkit}"
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  "nvidia-cuda-nvcc==$toolkit" "nvidia-cuda-crt==$toolkit" "nvidia-cuda-runtime==$toolkit" \
  "nvidia-cuda-cccl==$toolkit" "nvidia-nvvm==$toolkit"

# The wheels unpack into one tree, site-packages/nvidia/cu13 (bin/nvcc, include/, lib/, nvvm/).
# Build scripts look for lib64/ as well, so CUDA_HOME is a folder of links with both.
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
tree="$site/nvidia/cu13"
[ -x "$tree/bin/nvcc" ] || { echo "cuda-check: no nvcc under $tree" >&2; exit 1; }
home="$venv/cuda-home"
rm -rf "$home"
mkdir -p "$home"
for part in bin include lib nvvm; do ln -s "$tree/$part" "$home/$part"; done
ln -s "$tree/lib" "$home/lib64"

export CUDA_HOME="$home" CUDA_PATH="$home" CUDA_ROOT="$home"
export PATH="$home/bin:$PATH"
# No GPU to ask (candle-kernels would run nvidia-smi): build for Hopper (H100/H200).
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CARGO_TARGET_DIR="${GAUNTLET_CUDA_TARGET_DIR:-target/cuda-check}"
export CARGO_INCREMENTAL=0

nvcc --version | tail -1
cargo check --workspace --all-targets --features gauntlet/cuda --quiet
echo "cuda-check: \`cargo check --features cuda --all-targets\` passed (CUDA $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), compute capability $CUDA_COMPUTE_CAP)"
