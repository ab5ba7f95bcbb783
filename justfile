# Thin aliases over cargo; CI runs `bash .ci/run` and never needs `just`.

# Run the embedded default suite (bundled data and model).
run *ARGS:
    cargo run --release -p gauntlet -- run {{ARGS}}

# The README's test command.
test:
    cargo test --workspace

lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Criterion benches (release); see benches/README.md.
bench *ARGS:
    cargo bench -p gauntlet-benches {{ARGS}}

# gauntlet against PyTorch + torchattacks on this machine (creates a venv); see benches/README.md.
compare:
    bash benches/compare.sh

# Regenerate docs/attacks.md from the attack registry and the rule table of docs/scanner.md from
# the scanner's rule registry.
docs:
    cargo run -q -p gauntlet -- list attacks --markdown > docs/attacks.md
    GAUNTLET_BLESS_DOCS=1 cargo test -q -p gauntlet-artifact docs

ci:
    bash .ci/run

# The pip wheel (maturin, `bindings = "bin"`): build it, install it into a fresh venv, run the
# embedded default from it, then test the GitHub Action (action.yml) with it; docs/distribution.md.
# `just wheel release` builds the release profile.
wheel profile="dev":
    GAUNTLET_WHEEL_PROFILE={{profile}} bash .ci/wheel-test.sh

# Build and test with CUDA (needs a GPU machine with the CUDA toolkit).
cuda-test:
    cargo test --workspace --features gauntlet/cuda

# gauntlet's APGD against the AutoAttack reference (pyautoattack) on the shipped model; rewrites
# attacks/tests/fixtures/autoattack/reference.json (creates a venv with torch, minutes on CPU).
crosscheck-autoattack:
    python3 -m venv /tmp/aavenv
    /tmp/aavenv/bin/pip install torch safetensors numpy pyautoattack
    /tmp/aavenv/bin/python benches/crosscheck_autoattack.py
    cargo test -p gauntlet-attacks --test it autoattack -- --nocapture

# gauntlet's FAB-T against the reference's (attacks/tests/fixtures/autoattack/fab_t.json, made by
# benches/crosscheck_fab.py): the ignored test, in release (minutes; far longer in debug).
crosscheck-fab:
    cargo test --release -p gauntlet-attacks --test it fab_t_agrees_with_the_reference -- --ignored --nocapture

# gauntlet's `standard` against AutoAttack's standard version (pyautoattack) on the shipped model:
# robust accuracy, wall time and their ratio (needs the venv of crosscheck-autoattack; about
# half an hour for 1,000 images on 2 cores); see benches/README.md. `just compare-standard
# resnet20-fashion 200`: the same on the CIFAR-size ResNet-20 (Fashion-MNIST padded to 3×32×32,
# benches/make_resnet20_fashion.py) at ε = 8/255, on 200 images.
compare-standard model="small-cnn" images="1000":
    MODEL={{model}} IMAGES={{images}} bash benches/compare_standard.sh

# TorchScript through libtorch (`--features torch`): PyTorch 2.13.0 from PyPI in a venv (about
# 4.7 GB), then the feature's tests in target/torch; see docs/models.md.
torch-test:
    bash .ci/torch-test.sh

# Type-check `--features cuda` without a GPU (CUDA 13.0 compiler from PyPI); see docs/ci.md.
cuda-check:
    bash .ci/cuda-check.sh

# On a GPU machine: CUDA tests, CPU-vs-GPU comparisons and PGD-10 throughput; see docs/ci.md.
gpu-check:
    bash benches/gpu_check.sh
