"""Test fixture: a tiled, pyramidal TIFF (levels 1, 1/4, 1/16) from a crop of an image, plus
the same crop as a lossless PNG.

usage: make_pyramid.py SRC OUT_TIF [--png OUT_PNG] [--crop X Y W H] [--tile 256]
                       [--compression zlib|lzw|jpeg|none] [--bigtiff] [--subifds]
                       [--aperio] [--mpp UM] [--decoded-png OUT_PNG]

--subifds     levels 1/4 and 1/16 as SubIFDs of level 0 (OME-TIFF style), not main-chain pages
--aperio      an Aperio ImageDescription, so OpenSlide reads the file as an SVS slide
--mpp         microns per pixel: Aperio's `MPP = ` with --aperio, else X/YResolution in px/cm
--decoded-png level 0 as tifffile decodes it back (libjpeg-turbo for JPEG tiles)
"""
import argparse

import numpy as np
import tifffile
from PIL import Image

Image.MAX_IMAGE_PIXELS = None  # HER2ST sections are ~92 Mpx

ap = argparse.ArgumentParser()
ap.add_argument("src")
ap.add_argument("out")
ap.add_argument("--png")
ap.add_argument("--crop", type=int, nargs=4, metavar=("X", "Y", "W", "H"))
ap.add_argument("--tile", type=int, default=256)
ap.add_argument("--compression", default="zlib")
ap.add_argument("--bigtiff", action="store_true")
ap.add_argument("--subifds", action="store_true")
ap.add_argument("--aperio", action="store_true")
ap.add_argument("--mpp", type=float)
ap.add_argument("--decoded-png")
a = ap.parse_args()

img = Image.open(a.src).convert("RGB")
if a.crop:
    x, y, w, h = a.crop
    img = img.crop((x, y, x + w, y + h))
if a.png:
    img.save(a.png)
levels = [img, img.reduce(4), img.reduce(16)]  # box average
comp = None if a.compression == "none" else a.compression
w, h = img.size
with tifffile.TiffWriter(a.out, bigtiff=a.bigtiff) as tw:
    for i, level in enumerate(levels):
        kw = dict(photometric="rgb", tile=(a.tile, a.tile), compression=comp, metadata=None)
        if a.mpp and not a.aperio:
            px_per_cm = 1e4 / a.mpp / (4 ** i)
            kw.update(resolution=(px_per_cm, px_per_cm), resolutionunit="CENTIMETER")
        if a.aperio:
            mpp = f"|MPP = {a.mpp}" if a.mpp else ""
            kw["description"] = (f"Aperio Image Library v12.0.15\n{w}x{h} [0,0 {w}x{h}] ({a.tile}x{a.tile}) "
                                 f"{a.compression.upper()}/RGB|AppMag = 20{mpp}" if i == 0 else "Aperio Image Library v12.0.15\n")
        if a.subifds and i == 0:
            kw["subifds"] = len(levels) - 1
        tw.write(np.asarray(level), subfiletype=0 if i == 0 else 1, **kw)
if a.decoded_png:
    Image.fromarray(tifffile.imread(a.out, key=0)).save(a.decoded_png)
