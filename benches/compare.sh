#!/usr/bin/env bash
# gauntlet against PyTorch + torchattacks on this machine, back to back: the same two
# architectures (small CNN at 1×28×28, ResNet-20 at 3×32×32), batch 128, CPU, both with the
# machine's two threads, median of the same number of runs. Prints both tables and the
# throughput ratios gauntlet / PyTorch.
#
#   bash benches/compare.sh            # uses (or creates) a venv in $TORCH_VENV
#
# The venv needs only `torch` and `torchattacks` from PyPI (CPU wheels are enough).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${TORCH_VENV:-${TMPDIR:-/tmp}/gauntlet-torch-venv}
if ! "$venv/bin/python" -c 'import torch, torchattacks' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet torch torchattacks
fi

echo "$(date -u +%Y-%m-%d), $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')"
cargo build --release --quiet -p gauntlet-benches --benches
gauntlet=$(cargo bench --quiet -p gauntlet-benches --bench ratios 2>/dev/null | grep '^|')
torch=$("$venv/bin/python" benches/compare_torch.py)
echo
echo "gauntlet (cargo bench --bench ratios):"
echo "$gauntlet"
echo
echo "$torch"
echo

GAUNTLET="$gauntlet" TORCH="$torch" python3 - <<'EOF'
import os

def rows(table):
    out = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 5 or cells[0] in ("model",) or cells[0].startswith("---"):
            continue
        try:
            out[cells[0]] = [float(c) for c in cells[1:5]]
        except ValueError:
            pass
    return out

ours, theirs = rows(os.environ["GAUNTLET"]), rows(os.environ["TORCH"])
print("gauntlet / PyTorch throughput (higher is faster):")
print("| model | forward | fwd+bwd | FGSM | PGD-10 |")
print("|---|---|---|---|---|")
for model, values in ours.items():
    if model in theirs:
        ratios = [f"{a / b:.2f}×" for a, b in zip(values, theirs[model])]
        print(f"| {model} | " + " | ".join(ratios) + " |")
EOF
