"""Read `infer slide` outputs with the third-party tools they are for (test-only).

usage: check_slide_outputs.py CSV IMAGE OUTDIR [--h5ad F] [--geojson F] [--gene G] [--classify GENE>T]
       [--top-genes N] [--squidpy-png F]
  - h5ad: anndata.read_h5ad; X (float32) equals the CSV values, obs names / obsm["spatial"] equal the
    CSV ids and pixel positions; uns["spatial"] images agree with the slide (a box-downscaled copy
    at the recorded scale factor, checked around the first spots: not flipped or shifted);
    scanpy.pl.spatial and squidpy.pl.spatial_scatter render a PNG of gene G into OUTDIR;
    squidpy.gr.spatial_neighbors + spatial_autocorr (Moran's I) run;
  - GeoJSON: RFC 7946 structure, one closed counter-clockwise Polygon per spot, valid for shapely,
    inside the image, measurements equal the CSV (the N most variable genes with --top-genes),
    classification as --classify says.
Prints one JSON line with the findings; any failed check raises.
"""
import argparse
import csv
import json
import os
import sys

os.environ.setdefault("MPLBACKEND", "Agg")
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

Image.MAX_IMAGE_PIXELS = None


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    genes = rows[0][3:]
    ids = [r[0] for r in rows[1:]]
    xy = np.array([[float(r[1]), float(r[2])] for r in rows[1:]])
    values = np.array([[float(v) for v in r[3:]] for r in rows[1:]], dtype=np.float64)
    return genes, ids, xy, values


def check_h5ad(path, genes, ids, xy, values, image, gene, outdir, squidpy_png, found):
    import anndata
    import matplotlib.pyplot as plt
    import scanpy as sc

    a = anndata.read_h5ad(path)
    assert a.X.dtype == np.float32, a.X.dtype
    assert a.shape == values.shape, (a.shape, values.shape)
    assert list(a.obs_names) == ids and list(a.var_names) == genes
    assert np.abs(a.X - values).max() <= 1e-5, np.abs(a.X - values).max()
    sp = a.obsm["spatial"]
    assert sp.dtype == np.float64 and sp.shape == (len(ids), 2)
    assert np.abs(sp - xy).max() <= 0.006, np.abs(sp - xy).max()
    assert np.allclose(a.obs["pixel_x"], sp[:, 0]) and np.allclose(a.obs["pixel_y"], sp[:, 1])
    tf = a.obs["tissue_fraction"].to_numpy()
    assert ((tf >= 0) & (tf <= 1)).all()
    (lib,) = a.uns["spatial"].keys()
    entry = a.uns["spatial"][lib]
    sf = entry["scalefactors"]
    full = np.asarray(Image.open(image).convert("RGB"))
    h, w = full.shape[:2]
    for key, side in [("hires", 2000), ("lowres", 600)]:
        img = entry["images"][key]
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, (key, img.shape)
        assert max(img.shape[:2]) <= side, (key, img.shape)
        s = sf[f"tissue_{key}_scalef"]
        f = round(1 / s)
        assert abs(img.shape[0] - np.ceil(h / f)) <= 1 and abs(img.shape[1] - np.ceil(w / f)) <= 1, (key, img.shape, f)
        # around the first spots: the copy is the box average of the slide at the spot's position
        for x, y in xy[:5]:
            cx, cy = int(x * s), int(y * s)
            want = full[cy * f:(cy + 1) * f, cx * f:(cx + 1) * f].reshape(-1, 3).mean(0)
            got = img[cy, cx].astype(float)
            assert np.abs(want - got).max() <= 2.0, (key, x, y, want, got)
    assert sf["spot_diameter_fullres"] > 0
    card = json.loads(a.uns["bioedge"]["model_card"])
    assert card["genes"] == genes
    found["h5ad"] = {"shape": list(a.shape), "library_id": lib, "hires": list(entry["images"]["hires"].shape),
                     "obs": list(a.obs.columns), "var": list(a.var.columns)}

    sc.pl.spatial(a, color=gene, show=False)
    plt.savefig(os.path.join(outdir, "scanpy_spatial.png"), dpi=80)
    plt.close("all")
    try:
        import squidpy as sq
    except ImportError as e:  # reported, not hidden
        found["squidpy"] = f"not installed: {e}"
        return
    sq.pl.spatial_scatter(a, color=gene, library_id=lib, img_res_key="hires")
    png = squidpy_png or os.path.join(outdir, "squidpy_spatial.png")
    plt.savefig(png, dpi=110, bbox_inches="tight")
    plt.close("all")
    sq.gr.spatial_neighbors(a, coord_type="generic", n_neighs=6)
    sq.gr.spatial_autocorr(a, mode="moran", genes=list(a.var_names), n_perms=None)
    moran = a.uns["moranI"]
    assert set(moran.index) == set(genes)
    found["squidpy"] = {"png": png, "moranI": {g: round(float(moran.loc[g, "I"]), 4) for g in genes[:5]}}


def check_geojson(path, genes, ids, values, image, top, rule, found):
    from shapely.geometry import LinearRing, shape

    with open(path) as f:
        fc = json.load(f)
    assert fc["type"] == "FeatureCollection" and isinstance(fc["features"], list)
    assert len(fc["features"]) == len(ids)
    w, h = Image.open(image).size
    keep = list(range(len(genes)))
    if top:
        var = values.var(axis=0)
        keep = sorted(sorted(range(len(genes)), key=lambda g: (-var[g], g))[:top])
    classes = {}
    for i, feat in enumerate(fc["features"]):
        assert feat["type"] == "Feature" and set(feat) >= {"type", "geometry", "properties"}
        geom = feat["geometry"]
        assert geom["type"] == "Polygon" and len(geom["coordinates"]) == 1
        ring = geom["coordinates"][0]
        assert len(ring) >= 4 and ring[0] == ring[-1], ring
        assert LinearRing(ring).is_ccw, ring
        poly = shape(geom)
        assert poly.is_valid and poly.area > 0, ring
        x0, y0, x1, y1 = poly.bounds
        assert 0 <= x0 and 0 <= y0 and x1 <= w and y1 <= h, (poly.bounds, w, h)
        p = feat["properties"]
        assert p["objectType"] == "tile" and p["name"] == ids[i]
        m = p["measurements"]
        assert isinstance(m, dict) and list(m) == [genes[g] for g in keep], list(m)
        for g in keep:
            assert abs(m[genes[g]] - values[i, g]) <= 1e-5, (ids[i], genes[g], m[genes[g]], values[i, g])
        if rule:
            gene, t = rule.split(">")
            want = f"{gene} high" if values[i, genes.index(gene)] > float(t) else f"{gene} low"
            # the CSV rounds to 6 decimals: skip values at the threshold
            if abs(values[i, genes.index(gene)] - float(t)) > 1e-5:
                assert p["classification"]["name"] == want, (p["classification"], want)
            c = p["classification"]["color"]
            assert len(c) == 3 and all(0 <= v <= 255 for v in c)
            classes[p["classification"]["name"]] = classes.get(p["classification"]["name"], 0) + 1
    found["geojson"] = {"features": len(fc["features"]), "measurements": len(keep), "classes": classes}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("image")
    ap.add_argument("outdir")
    ap.add_argument("--h5ad")
    ap.add_argument("--geojson")
    ap.add_argument("--gene")
    ap.add_argument("--classify")
    ap.add_argument("--top-genes", type=int)
    ap.add_argument("--squidpy-png")
    a = ap.parse_args()
    genes, ids, xy, values = read_csv(a.csv)
    found = {}
    if a.h5ad:
        check_h5ad(a.h5ad, genes, ids, xy, values, a.image, a.gene or genes[0], a.outdir, a.squidpy_png, found)
    if a.geojson:
        check_geojson(a.geojson, genes, ids, values, a.image, a.top_genes, a.classify, found)
    print(json.dumps(found))


if __name__ == "__main__":
    sys.exit(main())
