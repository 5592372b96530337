"""Python baseline for `infer slide`: Pillow + numpy + onnxruntime, same patches and batch size.

usage: slide_python.py MODEL.onnx IMAGE POSITIONS.csv PATCH_SIDE BATCH [THREADS] [OUT.csv]
POSITIONS.csv: a CSV written by `infer slide` (columns id,pixel_x,pixel_y,...), so both run the
same spots. Crop rules as infer::image_prep::crop_square (edge pixels repeated), Pillow BILINEAR
resize to the card's size, ImageNet normalization, CHW. Prints JSON with spots/s (crop + run,
decoding excluded) and the max abs difference to the values in POSITIONS.csv.
"""
import csv
import json
import math
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image

Image.MAX_IMAGE_PIXELS = None

model, image, positions, side, batch = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
threads = int(sys.argv[6]) if len(sys.argv) > 6 else 0
out_path = sys.argv[7] if len(sys.argv) > 7 else None

card = json.loads({p.key: p.value for p in onnx.load(model).metadata_props}["model_card"])
prep = card["preprocessing"]["image"]  # typed card (docs/model-card.schema.json): kind spot-image
size = int(prep["size"])
mean = np.array(prep["mean"], np.float32).reshape(3, 1, 1)
std = np.array(prep["std"], np.float32).reshape(3, 1, 1)

with open(positions) as f:
    rows = list(csv.reader(f))
header, rows = rows[0], rows[1:]
ids = [r[0] for r in rows]
xy = [(float(r[1]), float(r[2])) for r in rows]
want = np.array([[float(v) for v in r[3:]] for r in rows], np.float32)

t0 = time.perf_counter()
img = np.asarray(Image.open(image).convert("RGB"))
decode_s = time.perf_counter() - t0
h, w, _ = img.shape


def rust_round(v):
    return math.copysign(math.floor(abs(v) + 0.5), v)


def crop(x, y):
    s = max(1, int(rust_round(side)))
    left = int(rust_round(x - s / 2))
    top = int(rust_round(y - s / 2))
    if left >= 0 and top >= 0 and left + s <= w and top + s <= h:
        return img[top:top + s, left:left + s]
    ys = np.clip(np.arange(top, top + s), 0, h - 1)
    xs = np.clip(np.arange(left, left + s), 0, w - 1)
    return img[ys[:, None], xs[None, :]]


def tensor(x, y):
    p = Image.fromarray(np.ascontiguousarray(crop(x, y)))
    if p.size != (size, size):
        p = p.resize((size, size), Image.BILINEAR)
    a = np.asarray(p, np.float32).transpose(2, 0, 1) / 255.0
    return (a - mean) / std


opts = ort.SessionOptions()
if threads > 0:
    opts.intra_op_num_threads = threads
sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
t0 = time.perf_counter()
got = []
for i in range(0, len(xy), batch):
    x = np.stack([tensor(px, py) for px, py in xy[i:i + batch]]).astype(np.float32)
    got.append(sess.run(["expression"], {"image": x})[0])
run_s = time.perf_counter() - t0
got = np.concatenate(got)
if out_path:
    with open(out_path, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(header)
        for i, r in enumerate(got):
            wr.writerow([ids[i], f"{xy[i][0]:.2f}", f"{xy[i][1]:.2f}"] + [f"{v:.6f}" for v in r])
print(json.dumps({
    "spots": len(xy), "batch": batch, "decode_s": round(decode_s, 3), "predict_s": round(run_s, 3),
    "spots_per_s": round(len(xy) / run_s, 2),
    "max_abs_diff_vs_positions_csv": float(np.abs(got - want).max()) if want.shape == got.shape else None,
}))
