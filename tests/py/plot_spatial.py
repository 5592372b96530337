"""Plot `infer slide` predictions over the tissue with squidpy, next to the measured expression.

usage: plot_spatial.py SLIDE.h5ad COUNTS.tsv.gz GENE OUT.png
  SLIDE.h5ad: written by `infer slide --spots ... --out SLIDE.h5ad` on a HER2ST section;
  COUNTS.tsv.gz: that section's HER2ST count matrix (spots `XxY` × genes), normalized here as the
  model's targets: log1p(count / library size × 1e4).
Draws `squidpy.pl.spatial_scatter` of GENE predicted and measured (two panels, the section's hires
image underneath), prints the Pearson r between them and where a known spot lands on the image.
"""
import os
import sys

os.environ.setdefault("MPLBACKEND", "Agg")
import anndata  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import squidpy as sq  # noqa: E402


def main():
    h5ad, counts_path, gene, out = sys.argv[1:5]
    a = anndata.read_h5ad(h5ad)
    counts = pd.read_csv(counts_path, sep="\t", index_col=0)
    norm = np.log1p(counts.div(counts.sum(axis=1), axis=0) * 1e4)
    measured = norm[gene].reindex(a.obs_names)
    a.obs[f"{gene} measured"] = measured.to_numpy()
    pred = a[:, gene].X.ravel()
    ok = ~np.isnan(measured.to_numpy())
    r = np.corrcoef(pred[ok], measured.to_numpy()[ok])[0, 1]
    (lib,) = a.uns["spatial"].keys()
    s = a.uns["spatial"][lib]["scalefactors"]["tissue_hires_scalef"]
    x, y = a.obsm["spatial"][0]
    print(f"{gene}: Pearson r predicted vs measured over {ok.sum()} spots = {r:.3f}; "
          f"spot {a.obs_names[0]} at pixel ({x:.1f}, {y:.1f}) → hires ({x * s:.1f}, {y * s:.1f})")
    sq.pl.spatial_scatter(
        a,
        color=[gene, f"{gene} measured"],
        library_id=lib,
        img_res_key="hires",
        title=[f"{gene} predicted ({lib}, held out)", f"{gene} measured, log1p CPT (r = {r:.2f})"],
        cmap="viridis",
        alpha=0.9,
        size=1.0,
    )
    plt.savefig(out, dpi=90, bbox_inches="tight")


if __name__ == "__main__":
    main()
