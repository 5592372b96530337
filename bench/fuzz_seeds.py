"""Seed corpora for the fuzz targets (bench/fuzz.sh), from ../shared/data and small files written
here with the same libraries users write them with (anndata, tifffile, Pillow, onnx).

usage: python fuzz_seeds.py DATA_DIR OUT_DIR [MODEL_DIR]
Each target's seeds go to OUT_DIR/<target>/; the byte layout matches fuzz/fuzz_targets/*.rs."""

import csv
import gzip
import io
import os
import sys
from pathlib import Path

import numpy as np

data, out = Path(sys.argv[1]), Path(sys.argv[2])
models = Path(sys.argv[3]) if len(sys.argv) > 3 else None
rng = np.random.default_rng(0)


def seed(target, name, payload):
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(payload)


def head(path, n, opener=open):
    with opener(path, "rb") as f:
        return b"".join(line for _, line in zip(range(n), f))


# SMILES and the infer mol table
with open(data / "tox21/tox21.csv", newline="") as f:
    rows = list(csv.reader(f))
smiles_col = rows[0].index("smiles")
for i, r in enumerate(rows[1:200:4]):
    seed("smiles", f"tox21-{i}", r[smiles_col].encode())
seed("mol_csv", "tox21-head", head(data / "tox21/tox21.csv", 12))
seed("mol_csv", "quoted", b'id,smiles\n1,"C(=O)O"\n2,"c1ccccc1"\n')

# GMT (plain: first byte even; gzip: odd)
gmt = head(data / "msigdb_hallmark/h.all.v7.0.symbols.gmt", 3)
seed("gmt", "hallmark", b"\x00" + gmt)
seed("gmt", "hallmark-gz", b"\x01" + gmt)

# expression tables: selector byte = ext (csv tsv txt gct) | 4 gzip | 8 label column
leuk = head(data / "gseapy_leukemia/Leukemia_hgu95av2.trim.txt.gz", 6, gzip.open)
leuk = b"\n".join(b"\t".join(line.split(b"\t")[:8]) for line in leuk.splitlines()) + b"\n"
seed("table", "gsea-txt", b"\x02" + leuk)
seed("table", "gsea-txt-gz", b"\x06" + leuk)
seed("table", "gct", b"\x03" + b"#1.2\n5\t6\n" + leuk)
krum = head(data / "scanpy_krumsiek11/krumsiek11.txt", 8)
seed("table", "krumsiek", b"\x01" + krum)
seed("table", "csv-label", b"\x08" + b"sample,label,g1,g2\ns1,a,1.5,2\ns2,b,0,-3e2\n")
seed("table", "tsv", b"\x01" + b"sample\tg1\tg2\ns1\t1\t2\n")
seed("cls", "leukemia", (data / "gseapy_leukemia/Leukemia.cls").read_bytes())

# Planetoid: edges, features, labels, splits joined by 0xFF
pl = data / "planetoid/derived"
parts = [head(pl / "cora.edges.tsv", 20), head(pl / "cora.features.coo.tsv.gz", 30, gzip.open),
         head(pl / "cora.labels.tsv", 20), head(pl / "cora.splits.tsv", 20)]
seed("planetoid", "cora-head", b"\xff".join(parts))
kar = [(data / "karate_club/karate_edges.tsv").read_bytes(), b"row\tcol\tvalue\n0\t0\t1\n33\t1\t1\n", b"", b""]
seed("planetoid", "karate", b"\xff".join(kar))

# spot files: 0 = HER2ST selection, 1 = Visium tissue positions
seed("spots", "her2st", b"\x00" + head(data / "her2st/B4/B4_selection.tsv", 15))
seed("spots", "visium", b"\x01" + head(data / "squidpy_visium_tiny/spatial/tissue_positions_list.csv", 15))

# HDF5: 0 = .h5ad, 1 = .h5
import anndata as ad
import h5py

a = ad.AnnData(X=rng.random((4, 3), dtype=np.float32))
a.obs_names = [f"c{i}" for i in range(4)]
a.var_names = ["g1", "g2", "g3"]
a.obs["label"] = ["x", "y", "x", "y"]
a.obsm["X_pca"] = rng.random((4, 2), dtype=np.float32)
buf = out / "tmp.h5ad"
a.write_h5ad(buf)
seed("hdf5", "dense-h5ad", b"\x00" + buf.read_bytes())
import scipy.sparse as sp

a.X = sp.csr_matrix(a.X)
a.write_h5ad(buf)
seed("hdf5", "csr-h5ad", b"\x00" + buf.read_bytes())
with h5py.File(buf, "w") as f:
    f["expression"] = rng.random((3, 2), dtype=np.float32)
    f["samples"] = np.array([b"s1", b"s2", b"s3"])
    f["genes"] = np.array([b"g1", b"g2"])
seed("hdf5", "layout-h5", b"\x01" + buf.read_bytes())
seed("hdf5", "10x-h5", b"\x01" + (data / "squidpy_visium_tiny/filtered_feature_bc_matrix.h5").read_bytes())
buf.unlink()

# TIFF: tiled pyramid, strips, JPEG tiles
import tifffile

img = (rng.random((96, 80, 3)) * 255).astype(np.uint8)
for name, kw in [("tiled", dict(tile=(32, 32))), ("strips", dict()), ("jpeg-tiles", dict(tile=(32, 32), compression="jpeg"))]:
    b = io.BytesIO()
    with tifffile.TiffWriter(b) as t:
        t.write(img, photometric="rgb", subifds=1 if name == "tiled" else 0, **kw)
        if name == "tiled":
            t.write(img[::2, ::2], photometric="rgb", subfiletype=1, **kw)
    seed("tiff", name, b.getvalue())

# images: 0 png, 1 jpg, 2 tif, 3 bmp (selector's upper bits: the crop side)
from PIL import Image

im = Image.fromarray(img)
for sel, fmt in [(0x40, "PNG"), (0x41, "JPEG"), (0x42, "TIFF"), (0x43, "BMP")]:
    b = io.BytesIO()
    im.save(b, fmt)
    seed("image", fmt.lower(), bytes([sel]) + b.getvalue())
crop = Image.open(data / "skimage_ihc/ihc.png").convert("RGB").crop((0, 0, 48, 48))
b = io.BytesIO()
crop.save(b, "PNG")
seed("image", "ihc", b"\x20" + b.getvalue())

# ONNX: the models in MODEL_DIR (bench/fuzz_models.sh writes small ones of every family) and their cards
import onnx
from onnx import TensorProto, helper

g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
                      [helper.make_tensor("w", TensorProto.FLOAT, [3, 2], rng.random(6).tolist())])
seed("onnx", "matmul", helper.make_model(g).SerializeToString())
if models and models.is_dir():
    for p in sorted(models.glob("*.onnx")):
        if p.stat().st_size <= 1 << 20:
            seed("onnx", p.stem, p.read_bytes())
        m = onnx.load(p, load_external_data=False)
        for e in m.metadata_props:
            if e.key == "model_card":
                seed("card", p.stem, e.value.encode())
seed("card", "minimal", b'{"family":"gene-mlp"}')
