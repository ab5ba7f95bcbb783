#!/usr/bin/env bash
# Builds and tests gauntlet's TorchScript support (cargo feature `torch`, docs/models.md):
# PyTorch 2.13.0 from PyPI in a venv (the version tch 0.26 is built for), libtorch linked from
# it (LIBTORCH_USE_PYTORCH=1), then the feature's tests in gauntlet-models and the harness.
# .ci/run calls it last with CARGO_TARGET_DIR=target (about 5 minutes after the workspace
# build); alone it builds in target/torch (docs/models.md has the measurements).
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${GAUNTLET_TORCH_VENV:-${TMPDIR:-/tmp}/gauntlet-torch-2.13.0}"
if ! "$venv/bin/python" -c 'import sys, torch; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null; then
  echo "== PyTorch 2.13.0 from PyPI into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check torch==2.13.0
fi

# torch-sys runs the venv's `python` to find libtorch's headers, libraries and C++ ABI.
export VIRTUAL_ENV="$venv"
export PATH="$venv/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
# The test binaries load libtorch's shared libraries from the venv at run time.
torch_lib="$(python -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Its own target folder: the feature and its build-script inputs would otherwise rebuild the
# default one.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/torch}"

echo "== TorchScript model tests (gauntlet-models --features torch)"
cargo test -p gauntlet-models --features torch --test it torchscript
echo "== TorchScript suites (gauntlet --features torch)"
cargo test -p gauntlet --features torch --test it torchscript
