"""Time the same attacks in PyTorch + torchattacks, for comparison with `--bench ratios`.

Same architectures as benches/src/lib.rs (small CNN at 1x28x28, ResNet-20 at 3x32x32), batch 128,
random weights, uniform random inputs, CPU, 2 threads; median of 7 samples (4 for PGD) after one
warm-up, each sample as many calls as fill about 100 ms, exactly like ratios.rs. Run:

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch torchattacks
    /tmp/torchvenv/bin/python benches/compare_torch.py
"""

import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchattacks

torch.set_num_threads(2)
torch.manual_seed(0)
BATCH = 128
STEPS = 10


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
    )


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for cout, stride in [(16, 1), (32, 2), (64, 2)]:
            blocks = []
            for i in range(3):
                blocks.append(BasicBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(64, 10)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def median_time(repeats, work):
    """Median time of one call over `repeats` samples after a warm-up call; like ratios.rs, a
    sample times as many back-to-back calls as fill about 100 ms."""
    start = time.perf_counter()
    work()
    calls = min(1000, max(1, math.ceil(0.1 / (time.perf_counter() - start))))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            work()
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def row(name, model, shape):
    model.eval()
    x = torch.rand(BATCH, *shape)
    y = torch.randint(0, 10, (BATCH,))

    def forward():
        with torch.no_grad():
            model(x)

    def forward_backward():
        # The input gradient only, as torchattacks asks for it (autograd.grad with respect to
        # the images): no weight gradients, like gauntlet's pass.
        xv = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xv), y, reduction="sum"), xv)

    fgsm = torchattacks.FGSM(model, eps=0.03)
    pgd = torchattacks.PGD(model, eps=0.03, alpha=2.5 * 0.03 / STEPS, steps=STEPS, random_start=True)
    t_fwd = median_time(7, forward)
    t_fb = median_time(7, forward_backward)
    t_fgsm = median_time(7, lambda: fgsm(x, y))
    t_pgd = median_time(4, lambda: pgd(x, y))
    rate = lambda t: BATCH / t
    print(f"| {name} | {rate(t_fwd):.0f} | {rate(t_fb):.0f} | {rate(t_fgsm):.0f} | {rate(t_pgd):.1f} | {t_pgd / (STEPS * t_fb):.3f} |")


print(f"PyTorch {torch.__version__}, torchattacks {torchattacks.__version__}, batch {BATCH}, CPU, {torch.get_num_threads()} threads")
print(f"| model | forward img/s | fwd+bwd img/s | FGSM img/s | PGD-{STEPS} img/s | PGD-{STEPS} / ({STEPS} × fwd+bwd) |")
print("|---|---|---|---|---|---|")
row("small_cnn", small_cnn(), (1, 28, 28))
row("resnet20", ResNet20(), (3, 32, 32))
