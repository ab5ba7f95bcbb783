#!/usr/bin/env python3
"""The AutoAttack reference's `standard` version on the shipped model (or the benchmark
ResNet-20), for `benches/compare_standard.sh`.

Runs `pyautoattack` 0.2.0's `AutoAttack(version='standard')` (the authors' package: APGD-CE,
APGD-T with nine targets, FAB-T with nine targets, Square with 5,000 queries, each on what the
earlier ones left) on the shipped Fashion-MNIST small CNN (`models/assets/fashion-mnist-small-cnn.*`,
the same weights loaded into the equivalent PyTorch module, normalisation inside; see
`crosscheck_autoattack.py`) and the first IMAGES test images of DATA (IDX files), at L∞ ε.
With MODEL `resnet20-fashion`, the model is instead `benches/assets/resnet20-fashion.*` (the
`resnet20` module of `make_resnet20_fashion.py`, normalisation from its spec) and DATA is a
folder holding `images.npy` (uint8 N×3×32×32) and `labels.npy`, as that script's `data`
command writes them. Prints one line `reference robust=<n> images=<n> seconds=<s>` (the wall time of
`run_standard_evaluation` alone, model loaded) and, from AutoAttack's own log, what each member
left robust.

    python compare_standard.py IMAGES EPSILON DATA_FOLDER [BATCH [MODEL]]
"""

import logging
import os
import sys
import time
from pathlib import Path

import torch
from pyautoattack import AutoAttack
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crosscheck_autoattack import ASSETS, Normalised, read_idx_gz, small_cnn  # noqa: E402


def main():
    images, epsilon, data = int(sys.argv[1]), float(sys.argv[2]), Path(sys.argv[3])
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 250
    which = sys.argv[5] if len(sys.argv) > 5 else "small-cnn"
    if which == "small-cnn":
        net = small_cnn()
        net.load_state_dict(load_file(ASSETS / "fashion-mnist-small-cnn.safetensors"),
                            strict=True)
        model = Normalised(net, [0.2860], [0.3530]).eval()
        x = read_idx_gz(data / "t10k-images-idx3-ubyte.gz")[:images].float().div(255.0)
        x = x.unsqueeze(1)
        y = read_idx_gz(data / "t10k-labels-idx1-ubyte.gz")[:images].long()
    elif which == "resnet20-fashion":
        import numpy as np
        from make_resnet20_fashion import load_model

        model = load_model()
        x = torch.from_numpy(np.load(data / "images.npy")[:images]).float().div(255.0)
        y = torch.from_numpy(np.load(data / "labels.npy")[:images]).long()
    else:
        raise SystemExit(f"unknown model {which}")
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    logging.basicConfig(level=logging.WARNING, format="reference log: %(message)s")
    logging.getLogger("auto-attack").setLevel(logging.DEBUG)
    attack = AutoAttack(model, norm="Linf", eps=epsilon, version="standard", seed=0, device="cpu")
    start = time.perf_counter()
    adv, _ = attack.run_standard_evaluation(x, y, batch_size=batch)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        clean = model(x).argmax(1) == y
        robust = clean & (model(adv).argmax(1) == y)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {batch}")
    print(f"reference clean={int(clean.sum())} robust={int(robust.sum())} images={images} "
          f"seconds={seconds:.2f}")


if __name__ == "__main__":
    main()
