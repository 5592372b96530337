"""PyTorch twin of `models::spot::SpotModel` (TCGN-style, models/src/spot.rs) for a steps/s
comparison with `train spot` on the same GPU (issue 18; run by scripts/gpu.sh).

Same layers, sizes and initial-state-independent cost: a stem of 3x3 stride-2 convs (LayerNorm
over channels, GELU), a patch conv (kernel = stride), tokens + a learned position embedding, the
graph block (cosine top-k neighbours of the LayerNormed tokens, detached; mean of the neighbours
through a Linear, added back), pre-LN transformer blocks (separate q/k/v/proj Linears, exact GELU
MLP), mean pool, LayerNorm, linear head. MSE on standardized targets, Adam (lr 1e-3, eps 1e-5 as
burn's AdamConfig). One step = forward, backward, Adam, and the loss read back to the host (as
`train spot` does every step). Inputs are synthetic (normal noise) batches already on the device,
so this times the model step only: `train spot` also augments and normalizes each patch on one CPU
thread and uploads the batch.

usage: spot_torch.py [--config large] [--genes 250] [--batch 8] [--steps 100] [--warmup 10]
                     [--device cuda|cpu] [--attention sdpa|math] [--tf32]
Prints one JSON line.
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = {
    "small": dict(stem=[16, 32], patch=16, dim=64, depth=2, heads=4, mlp=2, k=8),
    "large": dict(stem=[32, 64, 128], patch=16, dim=256, depth=6, heads=8, mlp=4, k=8),
}


class Stem(nn.Module):
    def __init__(self, c_in, c):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(c, eps=1e-5)

    def forward(self, x):
        return F.gelu(self.norm(self.conv(x).permute(0, 2, 3, 1))).permute(0, 3, 1, 2)


class Graph(nn.Module):
    def __init__(self, d, k):
        super().__init__()
        self.norm = nn.LayerNorm(d, eps=1e-5)
        self.linear = nn.Linear(d, d)
        self.k = k

    def forward(self, x):
        b, t, d = x.shape
        h = self.norm(x)
        with torch.no_grad():
            hn = h / h.pow(2).sum(2, keepdim=True).sqrt().clamp_min(1e-6)
            idx = (hn @ hn.transpose(1, 2)).topk(self.k, dim=2).indices
        nb = h.gather(1, idx.reshape(b, t * self.k, 1).expand(b, t * self.k, d)).reshape(b, t, self.k, d).mean(2)
        return x + self.linear(nb)


class Block(nn.Module):
    def __init__(self, d, heads, mlp, attention):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d, eps=1e-5), nn.LayerNorm(d, eps=1e-5)
        self.q, self.k, self.v, self.proj = (nn.Linear(d, d) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(d, d * mlp), nn.Linear(d * mlp, d)
        self.heads, self.attention = heads, attention

    def forward(self, x):
        b, t, d = x.shape
        nh, dh = self.heads, d // self.heads
        h = self.norm1(x)
        q, k, v = (l(h).reshape(b, t, nh, dh).transpose(1, 2) for l in (self.q, self.k, self.v))
        if self.attention == "sdpa":
            o = F.scaled_dot_product_attention(q, k, v)
        else:
            o = torch.softmax(q @ k.transpose(2, 3) * dh**-0.5, dim=3) @ v
        x = x + self.proj(o.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class Spot(nn.Module):
    def __init__(self, cfg, genes, attention, size=224):
        super().__init__()
        chans = [3] + cfg["stem"]
        self.stem = nn.Sequential(*(Stem(a, b) for a, b in zip(chans, chans[1:])))
        pk = cfg["patch"] >> len(cfg["stem"])
        d, grid = cfg["dim"], size // cfg["patch"]
        self.patch = nn.Conv2d(chans[-1], d, pk, stride=pk)
        self.pos = nn.Parameter(torch.randn(1, grid * grid, d) * 0.02)
        self.graph = Graph(d, cfg["k"])
        self.blocks = nn.Sequential(*(Block(d, cfg["heads"], cfg["mlp"], attention) for _ in range(cfg["depth"])))
        self.norm = nn.LayerNorm(d, eps=1e-5)
        self.head = nn.Linear(d, genes)

    def forward(self, x):
        x = self.patch(self.stem(x))
        b, d = x.shape[:2]
        h = x.reshape(b, d, -1).transpose(1, 2) + self.pos
        h = self.blocks(self.graph(h))
        return self.head(self.norm(h.mean(1)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="large", choices=sorted(CONFIGS))
    p.add_argument("--genes", type=int, default=250)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--device", default="cuda")
    p.add_argument("--attention", default="sdpa", choices=["sdpa", "math"])
    p.add_argument("--tf32", action="store_true", help="allow TF32 in matmuls and convs (off: plain fp32, as burn on wgpu)")
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.backends.cudnn.allow_tf32 = a.tf32
    dev = torch.device(a.device)
    torch.manual_seed(0)
    model = Spot(CONFIGS[a.config], a.genes, a.attention).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-5)
    # a fixed pool of synthetic batches on the device (no host work inside the timed loop)
    pool = [(torch.randn(a.batch, 3, 224, 224, device=dev), torch.randn(a.batch, a.genes, device=dev)) for _ in range(8)]
    losses = []

    def step(i):
        x, y = pool[i % len(pool)]
        loss = F.mse_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()  # host read-back, as `train spot` does each step

    for i in range(a.warmup):
        step(i)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(a.steps):
        losses.append(step(i))
    if dev.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    out = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "config": a.config,
        "genes": a.genes,
        "batch": a.batch,
        "attention": a.attention,
        "parameters": sum(p.numel() for p in model.parameters()),
        "warmup_steps": a.warmup,
        "steps": a.steps,
        "seconds": secs,
        "steps_per_s": a.steps / secs,
        "images_per_s": a.steps * a.batch / secs,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "peak_mem_mib": torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None,
        "loss_first_last": [losses[0], losses[-1]] if losses else [],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
