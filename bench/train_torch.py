"""Plain PyTorch (CPU) training of the same GCN / GAT as `models::node`, for `bench train-nodes`.

Reads a Planetoid-style prefix (PREFIX.edges.tsv, PREFIX.features.coo.tsv.gz, PREFIX.labels.tsv,
PREFIX.splits.tsv) and prints JSON {"ms_per_epoch": ..., "val_acc": ...}. One epoch = one training
step (forward, backward, Adam) + one evaluation forward with the validation loss and accuracy,
exactly what `NodeClassifier::fit` does per epoch. Message passing is index_select + index_add_
(the same gather/scatter the burn model uses).

usage: train_torch.py PREFIX gcn|gat EPOCHS THREADS
"""
import gzip
import json
import sys
import time

import torch
import torch.nn.functional as F

prefix, model_name, epochs, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if threads > 0:
    torch.set_num_threads(threads)
torch.manual_seed(0)


def rows(path, opener=open):
    with opener(path, "rt") as f:
        next(f)
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


labels_rows = rows(prefix + ".labels.tsv")
n = len(labels_rows)
labels = torch.tensor([int(r[1]) for r in labels_rows])
k = int(labels.max()) + 1
feat = rows(prefix + ".features.coo.tsv.gz", gzip.open)
fdim = max(int(r[1]) for r in feat) + 1
x = torch.zeros(n, fdim)
for r in feat:
    x[int(r[0]), int(r[1])] = float(r[2]) if len(r) > 2 else 1.0
x = x / x.sum(1, keepdim=True).clamp(min=1e-12)
edges = [(int(a), int(b)) for a, b in rows(prefix + ".edges.tsv")]
und = {(min(a, b), max(a, b)) for a, b in edges if a != b}
src = [a for a, b in und] + [b for a, b in und]
dst = [b for a, b in und] + [a for a, b in und]
loops = list(range(n))
src = torch.tensor(src + loops)
dst = torch.tensor(dst + loops)
split = {r[0]: r[1] for r in rows(prefix + ".splits.tsv")}
train = torch.tensor([int(i) for i, s in split.items() if s == "train"])
val = torch.tensor([int(i) for i, s in split.items() if s in ("val", "valid", "validation")])

deg = torch.zeros(n).index_add_(0, dst, torch.ones(len(dst)))
w = deg.pow(-0.5)[src] * deg.pow(-0.5)[dst]


def propagate(h, weight):
    return torch.zeros_like(h).index_add_(0, dst, h[src] * weight.unsqueeze(1))


class Gcn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w1 = torch.nn.Linear(fdim, 16, bias=False)
        self.w2 = torch.nn.Linear(16, k, bias=False)
        self.b1 = torch.nn.Parameter(torch.zeros(16))
        self.b2 = torch.nn.Parameter(torch.zeros(k))

    def forward(self, x):
        h = F.relu(propagate(self.w1(F.dropout(x, 0.5, self.training)), w) + self.b1)
        return propagate(self.w2(F.dropout(h, 0.5, self.training)), w) + self.b2


class GatLayer(torch.nn.Module):
    def __init__(self, d_in, heads, out, concat):
        super().__init__()
        self.lin = torch.nn.Linear(d_in, heads * out, bias=False)
        self.a_s = torch.nn.Parameter(torch.randn(heads, out) * 0.1)
        self.a_d = torch.nn.Parameter(torch.randn(heads, out) * 0.1)
        self.bias = torch.nn.Parameter(torch.zeros(heads * out if concat else out))
        self.h, self.f, self.concat = heads, out, concat

    def forward(self, x):
        hx = self.lin(x).view(n, self.h, self.f)
        score = F.leaky_relu((hx * self.a_s).sum(2)[src] + (hx * self.a_d).sum(2)[dst], 0.2)
        mx = torch.full((n, self.h), -1e30).scatter_reduce(0, dst.unsqueeze(1).expand(-1, self.h), score.detach(), "amax")
        p = (score - mx[dst]).exp()
        den = torch.zeros(n, self.h).index_add_(0, dst, p)
        alpha = F.dropout(p / den[dst], 0.6, self.training)
        hv = F.dropout(hx, 0.6, self.training)
        out = torch.zeros(n, self.h, self.f).index_add_(0, dst, hv[src] * alpha.unsqueeze(2))
        out = out.reshape(n, -1) if self.concat else out.mean(1)
        return out + self.bias


class Gat(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = GatLayer(fdim, 8, 8, True)
        self.l2 = GatLayer(64, 1, k, False)

    def forward(self, x):
        h = F.elu(self.l1(F.dropout(x, 0.6, self.training)))
        return self.l2(F.dropout(h, 0.6, self.training))


if model_name == "gcn":
    model = Gcn()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    decay = lambda: 5e-4 * model.w1.weight.pow(2).sum() / 2
else:
    model = Gat()
    opt = torch.optim.Adam(model.parameters(), lr=0.005, weight_decay=5e-4)
    decay = lambda: 0.0


def epoch():
    model.train()
    opt.zero_grad()
    loss = F.cross_entropy(model(x)[train], labels[train]) + decay()
    loss.backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        logits = model(x)[val]
        F.cross_entropy(logits, labels[val]).item()
        return (logits.argmax(1) == labels[val]).float().mean().item()


for _ in range(3):
    epoch()  # warm-up
t0 = time.perf_counter()
acc = 0.0
for _ in range(epochs):
    acc = epoch()
print(json.dumps({"ms_per_epoch": (time.perf_counter() - t0) * 1000 / epochs, "val_acc": acc, "torch": torch.__version__, "threads": torch.get_num_threads()}))
