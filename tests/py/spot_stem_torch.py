"""PyTorch twin of the spot model's stem for the bring-your-own-weights parity test
(tests/tests/spot_init.rs): per stem layer Conv2d 3x3 stride 2 pad 1 -> LayerNorm over channels
-> exact (erf) GELU, then the patch conv (kernel = stride). Named as a PyTorch user would name it
(`encoder.0.conv.weight`, `encoder.0.norm.weight`, `proj.weight`), with a Linear head `fc` and an
unrelated `aux` head. Seeds random weights (LayerNorm too), saves the state dict as .pt (zip and
legacy, and inside a {"state_dict": ..., "epoch": 3} checkpoint) and as .safetensors (written by
hand: the format is an 8-byte header length, a JSON header, raw data),
runs a fixed input and writes input, stem+patch output and fc.weight as raw little-endian f32.

usage: spot_stem_torch.py OUT_DIR --stem 16,32 --dim 64 --patch-kernel 4 --size 224 --genes 7
"""

import argparse
import json
import struct
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F


class StemConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(cout, eps=1e-5)

    def forward(self, x):
        y = self.norm(self.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return F.gelu(y)  # approximate="none": erf


class Encoder(nn.Module):
    def __init__(self, stem, dim, pk, genes):
        super().__init__()
        chans = [3] + stem
        self.encoder = nn.ModuleList(StemConv(a, b) for a, b in zip(chans, chans[1:]))
        self.proj = nn.Conv2d(chans[-1], dim, pk, stride=pk)
        self.fc = nn.Linear(dim, genes)
        self.aux = nn.Linear(dim, 3)

    def features(self, x):
        for layer in self.encoder:
            x = layer(x)
        return self.proj(x)


def save_safetensors(state, path):
    header, blobs, offset = {}, [], 0
    for name, t in state.items():
        data = t.detach().contiguous().cpu().to(torch.float32).numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def raw(path, t):
    path.write_bytes(t.detach().contiguous().cpu().to(torch.float32).numpy().astype("<f4").tobytes())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("--stem", default="16,32")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--patch-kernel", type=int, default=4)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--genes", type=int, default=7)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    m = Encoder([int(c) for c in a.stem.split(",")], a.dim, a.patch_kernel, a.genes).eval()
    with torch.no_grad():
        for layer in m.encoder:
            layer.norm.weight.normal_(1.0, 0.2)
            layer.norm.bias.normal_(0.0, 0.2)
    x = torch.randn(a.batch, 3, a.size, a.size)
    with torch.no_grad():
        y = m.features(x)
    a.out.mkdir(parents=True, exist_ok=True)
    state = m.state_dict()
    torch.save(state, a.out / "encoder.pt")
    # the pre-1.6 (non-zip) format, and a training checkpoint with the state dict inside
    torch.save(state, a.out / "encoder_legacy.pt", _use_new_zipfile_serialization=False)
    torch.save({"state_dict": state, "epoch": 3}, a.out / "checkpoint.pt")
    save_safetensors(state, a.out / "encoder.safetensors")
    raw(a.out / "input.f32", x)
    raw(a.out / "features.f32", y)
    raw(a.out / "fc_weight.f32", m.fc.weight)
    meta = {"input": list(x.shape), "features": list(y.shape), "fc_weight": list(m.fc.weight.shape), "keys": list(state)}
    (a.out / "meta.json").write_text(json.dumps(meta))
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
