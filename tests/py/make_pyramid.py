"""Test fixture: a tiled, pyramidal TIFF (levels 1, 1/4, 1/16 as pages of the main IFD chain)
from a crop of an image, plus the same crop as a lossless PNG.

usage: make_pyramid.py SRC OUT_TIF [--png OUT_PNG] [--crop X Y W H] [--tile 256]
                       [--compression zlib|lzw|none] [--bigtiff]
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
a = ap.parse_args()

img = Image.open(a.src).convert("RGB")
if a.crop:
    x, y, w, h = a.crop
    img = img.crop((x, y, x + w, y + h))
if a.png:
    img.save(a.png)
comp = None if a.compression == "none" else a.compression
with tifffile.TiffWriter(a.out, bigtiff=a.bigtiff) as tw:
    level = img
    for i in range(3):
        if i > 0:
            level = level.reduce(4)  # box average
        tw.write(np.asarray(level), photometric="rgb", tile=(a.tile, a.tile), compression=comp,
                 subfiletype=0 if i == 0 else 1, metadata=None)
