"""Our exported GNNs rebuilt in PyTorch with the ONNX weights copied in: PyTorch Geometric's GCNConv /
GATConv stacks, plain PyTorch eager versions of the same GCN / GAT (index_add_ / scatter_reduce), and
DeepChem's GraphConv model (GraphConv / GraphPool / GraphGather). Each module is first checked against
ONNX Runtime (Python, one thread) on the same inputs: max abs difference of the logits <= tolerance
(default 1e-4). Only if every module agrees are forward passes timed (torch.inference_mode, warm-up
first, 1 thread and all threads).

usage:
  torch_models.py SPEC.json [--check]   (run with the torch venv: bash bench/setup_torch.sh)
      SPEC.json (written by `bench torch`): {"cases": [{"kind": "gcn"|"gat"|"mol", "model": ONNX,
      "graph": label, "batches": [[{"name", "dtype": "float32"|"int64", "shape", "file": raw
      little-endian data}, ...], ...]}], "seconds": s, "threads": [1, 0], "tolerance": 1e-4}
      A pass runs every batch of a case once. --check: agreement only, no timing.
      Prints JSON: versions, and per case the max abs differences, the largest reference logit and
      passes/s per implementation and thread count (0 = all cores).
  torch_models.py featurize CSV BATCH   (run with a Python that has RDKit: $BIOEDGE_PYTHON)
      Times RDKit parsing + DeepChem's 75 atom features (tests/py/rdkit_features.py) + batching into
      the model's four input arrays, over every SMILES in CSV; prints JSON molecules/s.
"""
import json
import os
import re
import sys
import time
import warnings

import numpy as np

# torch_geometric 2.8 on torch 2.15: torch.jit.script deprecation noise at import
warnings.filterwarnings("ignore", category=FutureWarning)


def rate(fn, seconds):
    """Calls of fn per second over about `seconds`, after one warm-up call (at least 3 calls)."""
    fn()
    t0 = time.perf_counter()
    n = 0
    while n < 3 or time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - t0)


# ---------------------------------------------------------------- RDKit featurization (no torch)

def featurize(csv_path, batch):
    import csv
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
    from rdkit import Chem, RDLogger
    import rdkit
    from rdkit_features import atom_features
    RDLogger.DisableLog("rdApp.*")
    with open(csv_path, newline="") as f:
        smiles = [row["smiles"] for row in csv.DictReader(f)]

    def run():
        ok = 0
        for i in range(0, len(smiles), batch):
            feats, src, dst, mem, sizes = [], [], [], [], []
            offset = 0
            for s in smiles[i:i + batch]:
                m = Chem.MolFromSmiles(s)
                if m is None or m.GetNumAtoms() == 0:
                    continue
                feats.extend(atom_features(a) for a in m.GetAtoms())
                for b in m.GetBonds():
                    a, c = b.GetBeginAtomIdx() + offset, b.GetEndAtomIdx() + offset
                    src += [a, c]
                    dst += [c, a]
                mem += [len(sizes)] * m.GetNumAtoms()
                sizes.append(m.GetNumAtoms())
                offset += m.GetNumAtoms()
            np.asarray(feats, dtype=np.float32)
            np.asarray([src, dst], dtype=np.int64)
            np.asarray(mem, dtype=np.int64)
            np.asarray(sizes, dtype=np.int64)
            ok += len(sizes)
        return ok

    t0 = time.perf_counter()
    ok = run()
    dt = time.perf_counter() - t0
    print(json.dumps({"molecules_per_s": len(smiles) / dt, "smiles": len(smiles), "parsed": ok, "rdkit": rdkit.__version__}))


# ---------------------------------------------------------------- weights from the ONNX file

class Weights:
    """The initializers of an exported model by name, without the exporter's `_<n>` suffix."""

    def __init__(self, path):
        import onnx
        from onnx import numpy_helper
        self.model = onnx.load(path)
        self.path = path
        self.t = {}
        for init in self.model.graph.initializer:
            key = re.sub(r"_\d+$", "", init.name)
            self.t.setdefault(key, []).append(numpy_helper.to_array(init))

    def __call__(self, name):
        import torch
        if name not in self.t:
            raise SystemExit(f"{self.path}: no initializer `{name}` (have: {', '.join(sorted(self.t))})")
        if len(self.t[name]) != 1:
            raise SystemExit(f"{self.path}: {len(self.t[name])} initializers named `{name}`")
        return torch.from_numpy(self.t[name][0].copy())

    def attr(self, op, name):
        """The attribute `name` of the graph's nodes of type `op` (all the same)."""
        vals = {a.f for n in self.model.graph.node if n.op_type == op for a in n.attribute if a.name == name}
        if len(vals) != 1:
            raise SystemExit(f"{self.path}: expected one `{name}` over the {op} nodes, found {sorted(vals)}")
        return vals.pop()


# ---------------------------------------------------------------- node models

def looped(edge_index, n):
    """Input self-loops dropped, one loop per node appended (as models::node::LoopedEdges)."""
    import torch
    src, dst = edge_index[0], edge_index[1]
    keep = src != dst
    loops = torch.arange(n, dtype=src.dtype)
    return torch.cat([src[keep], loops]), torch.cat([dst[keep], loops])


def row_normalize(x):
    s = x.sum(1, keepdim=True)
    return x / s.masked_fill(s == 0, 1.0)


def gcn_weights(w):
    return w("conv1.weight"), w("bias1"), w("conv2.weight"), w("bias2")


def eager_gcn(w):
    import torch
    W1, b1, W2, b2 = gcn_weights(w)

    def propagate(h, src, dst, norm):
        return torch.zeros_like(h).index_add_(0, dst, h[src] * norm[:, None])

    def forward(x, edge_index):
        n = x.shape[0]
        x = row_normalize(x)
        src, dst = looped(edge_index, n)
        deg = torch.zeros(n).index_add_(0, dst, torch.ones(dst.shape[0]))
        dinv = deg.pow(-0.5)
        norm = dinv[src] * dinv[dst]
        h = torch.relu(propagate(x @ W1, src, dst, norm) + b1)
        return propagate(h @ W2, src, dst, norm) + b2

    return forward


def pyg_gcn(w):
    import torch
    import torch_geometric.transforms as T
    from torch_geometric.data import Data
    from torch_geometric.nn import GCNConv
    W1, b1, W2, b2 = gcn_weights(w)
    # our model: degree normalization with one self-loop per node (input loops replaced), bias after
    # propagation = GCNConv's defaults
    convs = []
    for W, b in [(W1, b1), (W2, b2)]:
        c = GCNConv(W.shape[0], W.shape[1], add_self_loops=True, normalize=True, bias=True)
        c.lin.weight.data = W.t().contiguous()
        c.bias.data = b
        convs.append(c.eval())
    # NormalizeFeatures: (x - min) / max(rowsum, 1) = our x / rowsum for 0/1 features (Cora, the bench graphs)
    norm = T.NormalizeFeatures()

    def forward(x, edge_index):
        x = norm(Data(x=x)).x
        h = torch.relu(convs[0](x, edge_index))
        return convs[1](h, edge_index)

    return forward


def gat_layers(w):
    import torch
    layers = []
    for name, concat in [("layer1", True), ("layer2", False)]:
        # both attention vectors as one block-diagonal [H·F, 2H] matrix (models::node GatConv::export)
        A = w(f"{name}.att")
        heads = A.shape[1] // 2
        c = A.shape[0] // heads
        a_s = torch.stack([A[j * c:(j + 1) * c, j] for j in range(heads)]).unsqueeze(0)
        a_d = torch.stack([A[j * c:(j + 1) * c, heads + j] for j in range(heads)]).unsqueeze(0)
        layers.append((w(f"{name}.linear.weight"), a_s, a_d, w(f"{name}.bias"), concat))
    return layers, w.attr("LeakyRelu", "alpha")


def eager_gat(w):
    import torch
    import torch.nn.functional as F
    layers, slope = gat_layers(w)

    def layer(x, src, dst, W, a_s, a_d, b, concat):
        n = x.shape[0]
        _, heads, c = a_s.shape
        hx = (x @ W).view(n, heads, c)
        e = F.leaky_relu((hx * a_s).sum(-1)[src] + (hx * a_d).sum(-1)[dst], slope)
        # softmax over each target's incoming edges, per head
        m = torch.full((n, heads), float("-inf")).scatter_reduce(0, dst[:, None].expand(-1, heads), e, "amax")
        p = (e - m[dst]).exp()
        den = torch.zeros(n, heads).index_add_(0, dst, p)
        out = torch.zeros(n, heads, c).index_add_(0, dst, hx[src] * (p / den[dst])[:, :, None])
        return (out.reshape(n, heads * c) if concat else out.mean(1)) + b

    def forward(x, edge_index):
        x = row_normalize(x)
        src, dst = looped(edge_index, x.shape[0])
        h = F.elu(layer(x, src, dst, *layers[0]))
        return layer(h, src, dst, *layers[1])

    return forward


def pyg_gat(w):
    import torch.nn.functional as F
    import torch_geometric.transforms as T
    from torch_geometric.data import Data
    from torch_geometric.nn import GATConv
    layers, slope = gat_layers(w)
    convs = []
    for W, a_s, a_d, b, concat in layers:
        _, heads, c = a_s.shape
        # add_self_loops=True removes input loops and adds one per node, as our model does
        conv = GATConv(W.shape[0], c, heads=heads, concat=concat, negative_slope=slope, dropout=0.0, add_self_loops=True, bias=True)
        conv.lin.weight.data = W.t().contiguous()
        conv.att_src.data = a_s
        conv.att_dst.data = a_d
        conv.bias.data = b
        convs.append(conv.eval())
    norm = T.NormalizeFeatures()

    def forward(x, edge_index):
        x = norm(Data(x=x)).x
        return convs[1](F.elu(convs[0](x, edge_index)), edge_index)

    return forward


# ---------------------------------------------------------------- DeepChem GraphConv (models::mol)

MAX_DEGREE = 10


def eager_mol(w):
    """DeepChem's GraphConvModel as exported: per-degree weights applied to each degree's atoms
    only (as DeepChem's GraphConv layer does), batch norm from running statistics, GraphPool (max over
    the atom and its neighbours), dense + batch norm, GraphGather (per-molecule sum and max), tanh."""
    import torch
    convs = []
    i = 0
    # per degree d: conv{i}.w{d} [2·in, out] (self rows, then neighbour rows) and conv{i}.b{d};
    # degree 0 (no neighbours) has the self rows only, [in, out]
    while f"conv{i}.w0" in w.t:
        per_degree = []
        half = w(f"conv{i}.w1").shape[0] // 2
        for d in range(MAX_DEGREE + 1):
            wd = w(f"conv{i}.w{d}")
            if wd.shape[0] == half:
                per_degree.append((wd.contiguous(), torch.zeros_like(wd), w(f"conv{i}.b{d}")))
            else:
                per_degree.append((wd[:half].contiguous(), wd[half:].contiguous(), w(f"conv{i}.b{d}")))
        convs.append((per_degree, w(f"norm{i}.scale"), w(f"norm{i}.shift")))
        i += 1
    if not convs:
        raise SystemExit(f"{w.path}: no conv0.w0 initializer: not a mol-graphconv export")
    Wd, bd, ds, dsh = w("dense.weight"), w("dense.bias"), w("dense_norm.scale"), w("dense_norm.shift")
    Wo, bo = w("out.weight"), w("out.bias")

    def graph_pool(h, src, dst):
        return h.scatter_reduce(0, dst[:, None].expand(-1, h.shape[1]), h[src], "amax", include_self=True)

    def forward(x, edge_index, membership, sizes):
        n, m = x.shape[0], sizes.shape[0]
        src, dst = edge_index[0], edge_index[1]
        deg = torch.bincount(dst, minlength=n).clamp_(max=MAX_DEGREE)
        groups = [(d, (deg == d).nonzero().squeeze(1)) for d in deg.unique().tolist()]
        h = x
        for per_degree, scale, shift in convs:
            nb = torch.zeros_like(h).index_add_(0, dst, h[src])
            out = torch.empty(n, per_degree[0][0].shape[1])
            for d, idx in groups:
                ws, wr, b = per_degree[d]
                out[idx] = h[idx] @ ws + nb[idx] @ wr + b
            h = graph_pool(torch.relu(out) * scale + shift, src, dst)
        h = torch.relu(h @ Wd + bd) * ds + dsh
        c = h.shape[1]
        s = torch.zeros(m, c).index_add_(0, membership, h)
        mx = torch.full((m, c), -1e30).scatter_reduce(0, membership[:, None].expand(-1, c), h, "amax")
        return torch.tanh(torch.cat([s, mx], 1)) @ Wo + bo

    return forward


BUILDERS = {"gcn": {"eager": eager_gcn, "pyg": pyg_gcn}, "gat": {"eager": eager_gat, "pyg": pyg_gat}, "mol": {"eager": eager_mol}}


def load_batches(case):
    out = []
    for batch in case["batches"]:
        arrays = []
        for t in batch:
            dtype = "<i8" if t["dtype"] == "int64" else "<f4"
            arrays.append((t["name"], np.fromfile(t["file"], dtype=dtype).reshape(t["shape"])))
        out.append(arrays)
    return out


def bench(spec_path, check_only):
    import onnxruntime as ort
    import torch
    import torch_geometric
    spec = json.load(open(spec_path))
    tol = spec.get("tolerance", 1e-4)
    cores = os.cpu_count() or 1
    report = {"torch": torch.__version__, "torch_geometric": torch_geometric.__version__, "onnxruntime": ort.__version__,
              "tolerance": tol, "cores": cores, "cases": []}
    failed = []
    prepared = []
    for case in spec["cases"]:
        batches = load_batches(case)
        w = Weights(case["model"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # the reference: ScatterND reductions race on several threads
        sess = ort.InferenceSession(case["model"], opts, providers=["CPUExecutionProvider"])
        refs = [sess.run(["logits"], dict(b))[0] for b in batches]
        tensors = [[torch.from_numpy(a.copy()) for _, a in b] for b in batches]
        impls = {k: build(w) for k, build in BUILDERS[case["kind"]].items()}
        r = {"kind": case["kind"], "model": case["model"], "graph": case["graph"],
             "ref_max_abs": float(max(np.abs(x).max() for x in refs)), "max_abs_diff": {}, "runs_per_s": {}}
        torch.set_num_threads(1)
        with torch.inference_mode():
            for name, f in impls.items():
                d = max(float(np.abs(f(*t).numpy() - ref).max()) for t, ref in zip(tensors, refs))
                r["max_abs_diff"][name] = d
                print(f"{case['kind']} {case['graph']}: {name} vs onnxruntime max abs diff {d:.2e}", file=sys.stderr)
                if not d <= tol:
                    failed.append(f"{case['kind']} on {case['graph']}: {name} differs from onnxruntime by {d:.2e} > {tol:g}")
        report["cases"].append(r)
        prepared.append((r, impls, tensors))
    if failed:
        print(json.dumps(report))
        raise SystemExit("refusing to time, the PyTorch modules disagree with the export:\n" + "\n".join(failed))
    if not check_only:
        for r, impls, tensors in prepared:
            for name, f in impls.items():
                r["runs_per_s"][name] = {}
                for threads in spec.get("threads", [1, 0]):
                    torch.set_num_threads(threads if threads > 0 else cores)

                    def one_pass():
                        for t in tensors:
                            f(*t)

                    with torch.inference_mode():
                        r["runs_per_s"][name][str(threads)] = rate(one_pass, spec.get("seconds", 2.0))
                    print(f"{r['kind']} {r['graph']}: {name} {threads or cores} threads "
                          f"{r['runs_per_s'][name][str(threads)]:.2f} passes/s", file=sys.stderr)
    print(json.dumps(report))


def main():
    args = sys.argv[1:]
    if len(args) == 3 and args[0] == "featurize":
        featurize(args[1], int(args[2]))
    elif len(args) in (1, 2) and (len(args) == 1 or args[1] == "--check"):
        bench(args[0], len(args) == 2)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
