#!/usr/bin/env bash
# gauntlet against PyTorch + torchattacks on this machine, back to back: the same two
# architectures (small CNN at 1×28×28, ResNet-20 at 3×32×32), batch 128, CPU, both with the
# machine's two threads, median of the same number of runs.
#
# Shared machines drift by tens of percent from minute to minute, so the two are run in
# alternation for $ROUNDS rounds (default 3): each round times gauntlet
# (`cargo bench --bench ratios`) and then PyTorch (`benches/compare_torch.py`). Prints every
# table and, per round and as the median over rounds, the throughput ratios gauntlet / PyTorch.
#
#   bash benches/compare.sh            # uses (or creates) a venv in $TORCH_VENV
#
# The venv needs only `torch` and `torchattacks` from PyPI (CPU wheels are enough).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${TORCH_VENV:-${TMPDIR:-/tmp}/gauntlet-torch-venv}
rounds=${ROUNDS:-3}
if ! "$venv/bin/python" -c 'import torch, torchattacks' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet torch torchattacks
fi

echo "$(date -u +%Y-%m-%d), $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')"
cargo build --release --quiet -p gauntlet-benches --benches
tables=$(mktemp -d)
trap 'rm -rf "$tables"' EXIT
for round in $(seq 1 "$rounds"); do
    echo
    echo "## round $round: gauntlet (cargo bench --bench ratios)"
    cargo bench --quiet -p gauntlet-benches --bench ratios 2>/dev/null | grep '^|' |
        tee "$tables/gauntlet-$round"
    echo
    "$venv/bin/python" benches/compare_torch.py >"$tables/torch-$round"
    echo "## round $round: $(head -1 "$tables/torch-$round")"
    grep '^|' "$tables/torch-$round"
done
echo

python3 - "$tables" "$rounds" <<'EOF'
import statistics
import sys
from pathlib import Path

folder, rounds = Path(sys.argv[1]), int(sys.argv[2])
COLUMNS = ["forward", "fwd+bwd", "FGSM", "PGD-10"]


def rows(path):
    out = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        try:
            out[cells[0]] = [float(c) for c in cells[1:5]]
        except (ValueError, IndexError):
            pass  # header and separator lines
    return out


ratios = {}
for r in range(1, rounds + 1):
    ours, theirs = rows(folder / f"gauntlet-{r}"), rows(folder / f"torch-{r}")
    for model, values in ours.items():
        if model in theirs:
            ratios.setdefault(model, []).append([a / b for a, b in zip(values, theirs[model])])

print("gauntlet / PyTorch throughput (higher is faster), per round:")
print("| model | round | " + " | ".join(COLUMNS) + " |")
print("|---|---|" + "---|" * len(COLUMNS))
for model, per_round in ratios.items():
    for r, values in enumerate(per_round, 1):
        print(f"| {model} | {r} | " + " | ".join(f"{v:.2f}×" for v in values) + " |")
print()
print(f"median over {rounds} rounds:")
print("| model | " + " | ".join(COLUMNS) + " |")
print("|---|" + "---|" * len(COLUMNS))
for model, per_round in ratios.items():
    medians = [statistics.median(column) for column in zip(*per_round)]
    print(f"| {model} | " + " | ".join(f"{v:.2f}×" for v in medians) + " |")
EOF
