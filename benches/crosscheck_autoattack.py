#!/usr/bin/env python3
"""gauntlet's APGD-CE, APGD-DLR and APGD-T against the AutoAttack reference implementation.

`pyautoattack` 0.2.0 on PyPI is the authors' package (Croce & Hein, MIT licence, homepage
github.com/fra31/auto-attack): its `autopgd_base.py` is the reference APGD. This script runs it
on the shipped model (`models/assets/fashion-mnist-small-cnn.*`, the same weights loaded into
the equivalent PyTorch module, normalisation inside) and the first IMAGES images of the bundled
Fashion-MNIST test subset, and writes the robust accuracies and the per-image outcome to
`attacks/tests/fixtures/autoattack/reference.json`. The Rust test `tests/it/autoattack.rs`
runs gauntlet's attacks with the same settings on the same images and compares (no Python
needed there). Regenerate with:

    python3 -m venv /tmp/aavenv
    /tmp/aavenv/bin/pip install torch safetensors numpy pyautoattack
    /tmp/aavenv/bin/python benches/crosscheck_autoattack.py

Both sides draw their random starts from different generators, so robust accuracy can differ
by noise only; the tolerance is stated in the Rust test.
"""

import gzip
import json
import struct
import time
from pathlib import Path

import torch
import torch.nn as nn
from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "models" / "assets"
FASHION = REPO / "datasets" / "data" / "fashion-mnist-test-1k"
OUT = REPO / "attacks" / "tests" / "fixtures" / "autoattack" / "reference.json"
IMAGES = 200
STEPS = 100
# (norm, ε): budgets where the undefended model keeps some accuracy, so the comparison means
# something.
BUDGETS = [("Linf", 0.02), ("Linf", 0.04), ("L2", 0.5), ("L2", 1.0)]

torch.set_num_threads(2)


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
    )


class Normalised(nn.Module):
    def __init__(self, net, mean, std):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).reshape(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).reshape(1, -1, 1, 1), persistent=False)

    def forward(self, x):
        return self.net((x - self.mean) / self.std)


def read_idx_gz(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = struct.unpack(">I", data[:4])[0] & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4: 4 + 4 * ndim])
    return torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8).reshape(dims)


def main():
    spec = (ASSETS / "fashion-mnist-small-cnn.toml").read_text()
    assert "mean = [0.2860]" in spec and "std = [0.3530]" in spec, spec
    net = small_cnn()
    net.load_state_dict(load_file(ASSETS / "fashion-mnist-small-cnn.safetensors"), strict=True)
    model = Normalised(net, [0.2860], [0.3530]).eval()
    x = read_idx_gz(FASHION / "t10k-images-idx3-ubyte.gz")[:IMAGES].float().div(255.0).unsqueeze(1)
    y = read_idx_gz(FASHION / "t10k-labels-idx1-ubyte.gz")[:IMAGES].long()
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    print(f"torch {torch.__version__}; clean {int(clean.sum())}/{IMAGES}")
    results = {"images": IMAGES, "steps": STEPS, "clean_correct": int(clean.sum()), "runs": []}
    for norm, eps in BUDGETS:
        for name, attack in [
            ("apgd_ce", APGDAttack(model, norm=norm, eps=eps, n_iter=STEPS, n_restarts=1,
                                   loss="ce", seed=0, device="cpu")),
            ("apgd_dlr", APGDAttack(model, norm=norm, eps=eps, n_iter=STEPS, n_restarts=1,
                                    loss="dlr", seed=0, device="cpu")),
            ("apgd_t", APGDAttack_targeted(model, norm=norm, eps=eps, n_iter=STEPS,
                                           n_restarts=1, n_target_classes=9, seed=0,
                                           device="cpu")),
        ]:
            start = time.perf_counter()
            adv = attack.perturb(x, y)
            seconds = time.perf_counter() - start
            with torch.no_grad():
                robust = clean & (model(adv).argmax(1) == y)
            print(f"{name} {norm} eps={eps}: robust {int(robust.sum())}/{IMAGES} ({seconds:.1f} s)")
            results["runs"].append({
                "attack": name, "norm": norm.lower(), "epsilon": eps,
                "robust": int(robust.sum()), "robust_images": robust.int().tolist(),
            })
            # After every run, so a long run interrupted keeps what it finished.
            OUT.parent.mkdir(parents=True, exist_ok=True)
            OUT.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
