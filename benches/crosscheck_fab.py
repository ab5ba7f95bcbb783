#!/usr/bin/env python3
"""gauntlet's FAB-T against the AutoAttack reference implementation.

`pyautoattack` 0.2.0 on PyPI is the authors' package (Croce & Hein, MIT licence, homepage
github.com/fra31/auto-attack): its `fab_pt.py` / `fab_base.py` / `fab_projections.py` are the
reference FAB. This script runs its targeted FAB (`FABAttack_PT(targeted=True)`, AutoAttack's
FAB-T: nine target classes, 100 iterations, one restart, alpha_max 0.1, eta 1.05, beta 0.9) on
the shipped model (`models/assets/fashion-mnist-small-cnn.*`, the same weights loaded into the
equivalent PyTorch module, normalisation inside) and the first IMAGES images of the bundled
Fashion-MNIST test subset, at the budgets below, and writes the robust counts and per-image
outcomes to `attacks/tests/fixtures/autoattack/fab_t.json`. The Rust test
`tests/it/autoattack.rs` runs gauntlet's `fab_t` with the same settings on the same images and
compares (no Python needed there). Regenerate with:

    python3 -m venv /tmp/aavenv
    /tmp/aavenv/bin/pip install torch safetensors numpy pyautoattack
    /tmp/aavenv/bin/python benches/crosscheck_fab.py

With one restart FAB-T draws no random numbers, so the two sides differ only by floating-point
rounding (f32 projections there, f64 here; one backward pass of z_t − z_y there, two
cross-entropy gradients here); the tolerance is stated in the Rust test.
"""

import json
import time

import torch
from pyautoattack.fab_pt import FABAttack_PT

from crosscheck_autoattack import ASSETS, FASHION, REPO, Normalised, read_idx_gz, small_cnn
from safetensors.torch import load_file

OUT = REPO / "attacks" / "tests" / "fixtures" / "autoattack" / "fab_t.json"
IMAGES = 200
STEPS = 100
BUDGETS = [("Linf", 0.02), ("Linf", 0.04), ("L2", 0.5), ("L2", 1.0)]

torch.set_num_threads(2)


def main():
    net = small_cnn()
    net.load_state_dict(load_file(ASSETS / "fashion-mnist-small-cnn.safetensors"), strict=True)
    model = Normalised(net, [0.2860], [0.3530]).eval()
    x = read_idx_gz(FASHION / "t10k-images-idx3-ubyte.gz")[:IMAGES].float().div(255.0).unsqueeze(1)
    y = read_idx_gz(FASHION / "t10k-labels-idx1-ubyte.gz")[:IMAGES].long()
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    print(f"torch {torch.__version__}; clean {int(clean.sum())}/{IMAGES}")
    results = {"images": IMAGES, "steps": STEPS, "targets": 9,
               "clean_correct": int(clean.sum()), "runs": []}
    for norm, eps in BUDGETS:
        attack = FABAttack_PT(model, norm=norm, n_restarts=1, n_iter=STEPS, eps=eps,
                              alpha_max=0.1, eta=1.05, beta=0.9, seed=0, targeted=True,
                              device="cpu", n_target_classes=9)
        start = time.perf_counter()
        adv = attack.perturb(x, y)
        seconds = time.perf_counter() - start
        with torch.no_grad():
            robust = clean & (model(adv).argmax(1) == y)
        print(f"fab_t {norm} eps={eps}: robust {int(robust.sum())}/{IMAGES} ({seconds:.1f} s)")
        results["runs"].append({
            "attack": "fab_t", "norm": norm.lower(), "epsilon": eps,
            "robust": int(robust.sum()), "robust_images": robust.int().tolist(),
        })
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
