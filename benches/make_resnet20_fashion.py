#!/usr/bin/env python3
"""A CIFAR-size task for `benches/compare_standard.sh`: Fashion-MNIST padded to 3×32×32 and a
ResNet-20 (gauntlet's built-in `resnet20` architecture) trained on it in PyTorch on the CPU.

There is no CIFAR-10 on the benchmark machine, so this makes a real task of the same size:
each 28×28 Fashion-MNIST image is zero-padded by 2 pixels on every side to 32×32 (the
background is 0, so the padding is more background) and repeated to 3 identical channels.

    python make_resnet20_fashion.py train [SECONDS]   # writes benches/assets/resnet20-fashion.*
    python make_resnet20_fashion.py data OUT_DIR [N]  # OUT_DIR/images.npy, OUT_DIR/labels.npy
    python make_resnet20_fashion.py logits OUT_DIR [N]  # OUT_DIR/logits.safetensors (check)

`train` trains `ResNet20` (the module of models/tests/fixtures/pytorch/make_fixtures.py,
verbatim from docs/pytorch-export.md) with the normalisation outside the network (the gauntlet
spec carries mean/std), SGD with Nesterov momentum, one-cycle learning rate, batch 128, for at
most SECONDS of wall time (default 480) or 2 epochs of the 60,000 training images, whichever
comes first (the schedule is laid out for the number of steps the first 20 steps' speed
predicts). It then saves `net.state_dict()` as safetensors plus the spec and prints the clean
accuracy on the 10,000 test images. Training runs on whatever threads torch gets (THREADS,
default 2) and is not bit-reproducible across machines, which is why the weights are committed.

`data` writes the first N (default 1,000) test images as uint8 (N, 3, 32, 32) `images.npy`
(NCHW, what gauntlet's `npy` format reads, scaled by 1/255 on both sides) and int64
`labels.npy`, so gauntlet and the reference read identical pixels.

Needs torch, safetensors and numpy; the Fashion-MNIST IDX files in $DATA (default
/usr/share/datasets/fashion-mnist, Debian's `dataset-fashion-mnist`).
"""

import gzip
import os
import struct
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ASSETS = HERE / "assets"
SPEC = ASSETS / "resnet20-fashion.toml"
WEIGHTS = ASSETS / "resnet20-fashion.safetensors"
DATA = Path(os.environ.get("DATA", "/usr/share/datasets/fashion-mnist"))

sys.path.insert(0, str(REPO / "models" / "tests" / "fixtures" / "pytorch"))
from make_fixtures import ResNet20  # noqa: E402

# make_fixtures pins one thread and deterministic algorithms for its fixtures; undo that here.
torch.use_deterministic_algorithms(False)
torch.set_num_threads(int(os.environ.get("THREADS", "2")))


def read_idx_gz(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = struct.unpack(">I", data[:4])[0] & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4: 4 + 4 * ndim])
    return np.frombuffer(data[4 + 4 * ndim:], dtype=np.uint8).reshape(dims)


def padded(split):
    """uint8 (N, 3, 32, 32) images and int64 (N,) labels of `train` or `t10k`."""
    images = read_idx_gz(DATA / f"{split}-images-idx3-ubyte.gz")
    labels = read_idx_gz(DATA / f"{split}-labels-idx1-ubyte.gz").astype(np.int64)
    images = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    images = np.ascontiguousarray(np.repeat(images[:, None], 3, axis=1))
    return images, labels


class Normalised(nn.Module):
    """net((x - mean) / std) on [0, 1] inputs, as gauntlet applies a spec's mean/std."""

    def __init__(self, net, mean, std):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).reshape(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).reshape(1, -1, 1, 1), persistent=False)

    def forward(self, x):
        return self.net((x - self.mean) / self.std)


def read_spec_normalisation():
    mean = std = None
    for line in SPEC.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "mean":
            mean = [float(v) for v in value.strip(" []").split(",")]
        if key.strip() == "std":
            std = [float(v) for v in value.strip(" []").split(",")]
    return mean, std


def load_model():
    """The committed weights in the equivalent PyTorch module, normalisation inside, eval mode."""
    from safetensors.torch import load_file

    net = ResNet20(3, 10)
    net.load_state_dict(load_file(WEIGHTS), strict=True)
    mean, std = read_spec_normalisation()
    return Normalised(net, mean, std).eval()


def accuracy(model, x, y, batch=500):
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(x[i: i + batch]).float().div(255.0)
            correct += int((model(xb).argmax(1) == torch.from_numpy(y[i: i + batch])).sum())
    return correct


def train(seconds):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x, y = padded("train")
    xt, yt = padded("t10k")
    mean = float(x.mean() / 255.0)
    std = float((x / 255.0).std())
    mean3, std3 = [round(mean, 4)] * 3, [round(std, 4)] * 3
    net = ResNet20(3, 10)
    model = Normalised(net, mean3, std3)
    batch, epochs = 128, 2
    steps_per_epoch = len(x) // batch
    optimiser = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                                weight_decay=5e-4)

    def batches():
        for _ in range(epochs):
            order = rng.permutation(len(x))
            for s in range(steps_per_epoch):
                idx = order[s * batch: (s + 1) * batch]
                xb = torch.from_numpy(x[idx]).float().div(255.0)
                yield xb, torch.from_numpy(y[idx])

    start = time.perf_counter()
    model.train()
    it = batches()
    probe = 20
    for s in range(probe):
        xb, yb = next(it)
        loss = F.cross_entropy(model(xb), yb)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    per_step = (time.perf_counter() - start) / probe
    total = min(epochs * steps_per_epoch, probe + int((seconds - per_step * probe) / per_step))
    print(f"{per_step:.3f} s/step; training {total} steps of {batch} "
          f"({total * batch / len(x):.2f} epochs)", flush=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=0.1,
                                                   total_steps=total - probe + 1)
    for s in range(probe, total):
        xb, yb = next(it)
        loss = F.cross_entropy(model(xb), yb)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if s % 100 == 0:
            print(f"step {s}/{total} loss {loss.item():.3f} "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    model.eval()
    clean = accuracy(model, xt, yt)
    ASSETS.mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, WEIGHTS)
    SPEC.write_text(
        "# ResNet-20 trained on Fashion-MNIST padded to 3×32×32 by benches/make_resnet20_fashion.py\n"
        f"# ({total} steps of {batch}, {time.perf_counter() - start:.0f} s on the CPU; clean "
        f"accuracy {clean}/{len(xt)} on the padded test set).\n"
        'architecture = "resnet20"\ninput_shape = [3, 32, 32]\nnum_classes = 10\n'
        f"mean = {mean3}\nstd = {std3}\n"
    )
    print(f"clean accuracy {clean}/{len(xt)} = {clean / len(xt):.4f}; "
          f"{time.perf_counter() - start:.0f} s; wrote {SPEC} and {WEIGHTS}")


def write_data(out, n):
    out.mkdir(parents=True, exist_ok=True)
    x, y = padded("t10k")
    np.save(out / "images.npy", x[:n])
    np.save(out / "labels.npy", y[:n])


def write_logits(out, n):
    """OUT/logits.safetensors: `inputs` (the first N padded test images, f32 in [0, 1]) and
    PyTorch's float32 `logits` of the committed model on them, for a logit comparison."""
    from safetensors.torch import save_file

    x, _ = padded("t10k")
    inputs = torch.from_numpy(x[:n]).float().div(255.0)
    with torch.no_grad():
        logits = load_model()(inputs)
    out.mkdir(parents=True, exist_ok=True)
    save_file({"inputs": inputs.contiguous(), "logits": logits.contiguous()},
              out / "logits.safetensors")


def main():
    command = sys.argv[1]
    if command == "train":
        train(float(sys.argv[2]) if len(sys.argv) > 2 else 480.0)
    elif command == "data":
        write_data(Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 1000)
    elif command == "logits":
        write_logits(Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 1000)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
