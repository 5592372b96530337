"""Python baseline for `infer slide`, end to end, as a user would write it: open/decode the image
(Pillow for JPEG/PNG, openslide-python for whole-slide files), a tissue mask (box downscale + Otsu,
as `infer`), crops + resize + normalize on a thread pool (Pillow and OpenSlide release the GIL),
onnxruntime on all cores, same spots and batch size as `infer`.

usage: slide_python.py MODEL.onnx IMAGE POSITIONS.csv PATCH_SIDE BATCH
                       [--reader pillow|openslide] [--workers N] [--threads N] [--out OUT.csv]

POSITIONS.csv: a CSV written by `infer slide` (columns id,pixel_x,pixel_y,<genes>), so both run
the same spots. Crop rules as infer's crop_square (edge pixels repeated), Pillow BILINEAR resize
to the card's size, ImageNet normalization, CHW. Prints one JSON line: seconds per stage, spots/s
of the prediction and end to end (from the first import to the last prediction), whether the
mask's grid gives the CSV's spots, and the max abs difference to the CSV's values.
"""
import time

T0 = time.perf_counter()
import argparse  # noqa: E402
import concurrent.futures as cf  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
from collections import deque  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from PIL import Image  # noqa: E402

Image.MAX_IMAGE_PIXELS = None
MASK_SIDE, MIN_TISSUE = 1024, 0.5

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("image")
ap.add_argument("positions")
ap.add_argument("side", type=float)
ap.add_argument("batch", type=int)
ap.add_argument("--reader", choices=["pillow", "openslide"], default="pillow")
ap.add_argument("--workers", type=int, default=min(8, max(1, (os.cpu_count() or 1) // 4)))
ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: all cores)")
ap.add_argument("--out")
a = ap.parse_args()
T_IMPORT = time.perf_counter() - T0

with open(a.positions) as f:
    rows = list(csv.reader(f))
header, rows = rows[0], rows[1:]
ids = [r[0] for r in rows]
xy = [(float(r[1]), float(r[2])) for r in rows]
want = np.array([[float(v) for v in r[3:]] for r in rows], np.float32)

card = json.loads({p.key: p.value for p in onnx.load(a.model, load_external_data=False).metadata_props}["model_card"])
prep = card["preprocessing"]["image"]  # typed card (docs/model-card.schema.json): kind spot-image
size = int(prep["size"])
mean = np.array(prep["mean"], np.float32).reshape(3, 1, 1)
std = np.array(prep["std"], np.float32).reshape(3, 1, 1)
# the grid steps by the spot spacing: the patch side over the card's patch span (2 for a model
# that also reads the neighbours; 1 for cards without it)
step = a.side / float(card["preprocessing"].get("patch_span", 1.0))


def box_downscale(pil, max_side):
    """Box average to a long side <= max_side (integer factor; Pillow's reduce, as infer)."""
    f = max(1, -(-max(pil.size) // max_side))
    return np.asarray(pil.reduce(f) if f > 1 else pil), f


def otsu(g):
    hist = np.bincount(g.ravel(), minlength=256).astype(np.float64)
    total, levels = hist.sum(), np.arange(256, dtype=np.float64)
    w0, s0 = np.cumsum(hist)[:-1], np.cumsum(hist * levels)[:-1]
    w1 = total - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        v = w0 * w1 * (s0 / w0 - (s0[-1] + hist[-1] * 255 - s0) / w1) ** 2
    v[(w0 == 0) | (w1 == 0)] = -1
    return int(np.argmax(v)) + 1 if v.max() > 0 else 0


def grid(mask, fx, fy, w, h, side):
    """Grid spots every `side` px whose cell is at least half tissue: [(x, y)]."""
    mh, mw = mask.shape
    out = []
    for r in range(max(1, int(h // side))):
        for c in range(max(1, int(w // side))):
            x, y = (c + 0.5) * side, (r + 0.5) * side
            if x >= w or y >= h:
                continue
            x0, y0 = min(int(max(x - side / 2, 0) / fx), mw - 1), min(int(max(y - side / 2, 0) / fy), mh - 1)
            x1, y1 = min(math.ceil((x + side / 2) / fx), mw), min(math.ceil((y + side / 2) / fy), mh)
            m = mask[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]
            if m.sum() >= MIN_TISSUE * m.size:
                out.append((x, y))
    return out


def rust_round(v):
    return math.copysign(math.floor(abs(v) + 0.5), v)


s = max(1, int(rust_round(a.side)))
t = time.perf_counter()
if a.reader == "pillow":
    pil = Image.open(a.image).convert("RGB")
    img = np.asarray(pil)
    h, w, _ = img.shape

    def region(left, top, rw, rh):
        return img[top:top + rh, left:left + rw]
else:
    import openslide

    slide = openslide.OpenSlide(a.image)
    w, h = slide.dimensions

    def region(left, top, rw, rh):
        return np.asarray(slide.read_region((left, top), 0, (rw, rh)).convert("RGB"))
decode_s = time.perf_counter() - t

t = time.perf_counter()
if a.reader == "pillow":
    small, f = box_downscale(pil, MASK_SIDE)
    fx = fy = float(f)
else:
    level = max([i for i, (lw, lh) in enumerate(slide.level_dimensions) if max(lw, lh) >= MASK_SIDE] or [0])
    lw, lh = slide.level_dimensions[level]
    small, f = box_downscale(slide.read_region((0, 0), level, (lw, lh)).convert("RGB"), MASK_SIDE)
    fx, fy = f * w / lw, f * h / lh
sm = small.astype(np.uint32)
grey = ((299 * sm[..., 0] + 587 * sm[..., 1] + 114 * sm[..., 2] + 500) // 1000).astype(np.uint8)
mask = grey < otsu(grey)
same_spots = [(round(x, 2), round(y, 2)) for x, y in grid(mask, fx, fy, w, h, step)] == [(round(x, 2), round(y, 2)) for x, y in xy]
mask_s = time.perf_counter() - t


def crop(x, y):
    """The s × s patch centred at (x, y); pixels off the image repeat the edge."""
    left, top = int(rust_round(x - s / 2)), int(rust_round(y - s / 2))
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + s, w), min(top + s, h)
    p = region(x0, y0, x1 - x0, y1 - y0)
    if (x1 - x0, y1 - y0) != (s, s):
        p = np.pad(p, ((y0 - top, top + s - y1), (x0 - left, left + s - x1), (0, 0)), mode="edge")
    return p


def tensors(spots):
    out = np.empty((len(spots), 3, size, size), np.float32)
    for i, (x, y) in enumerate(spots):
        p = Image.fromarray(np.ascontiguousarray(crop(x, y)))
        if p.size != (size, size):
            p = p.resize((size, size), Image.BILINEAR)
        out[i] = (np.asarray(p, np.float32).transpose(2, 0, 1) / 255.0 - mean) / std
    return out


t = time.perf_counter()
opts = ort.SessionOptions()
if a.threads > 0:
    opts.intra_op_num_threads = a.threads
sess = ort.InferenceSession(a.model, opts, providers=["CPUExecutionProvider"])
session_s = time.perf_counter() - t

t = time.perf_counter()
got = []
batches = [xy[i:i + a.batch] for i in range(0, len(xy), a.batch)]
with cf.ThreadPoolExecutor(a.workers) as pool:
    pending = deque()
    for b in batches[:a.workers + 2]:  # a few batches ahead of the model
        pending.append(pool.submit(tensors, b))
    nxt = len(pending)
    while pending:
        x = pending.popleft().result()
        if nxt < len(batches):
            pending.append(pool.submit(tensors, batches[nxt]))
            nxt += 1
        got.append(sess.run(["expression"], {"image": x})[0])
predict_s = time.perf_counter() - t
total_s = time.perf_counter() - T0
got = np.concatenate(got)
if a.out:
    with open(a.out, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(header)
        for i, r in enumerate(got):
            wr.writerow([ids[i], f"{xy[i][0]:.2f}", f"{xy[i][1]:.2f}"] + [f"{v:.6f}" for v in r])
r3 = lambda v: round(v, 3)  # noqa: E731
print(json.dumps({
    "reader": a.reader, "spots": len(xy), "batch": a.batch, "workers": a.workers, "threads": a.threads,
    "seconds": {"import": r3(T_IMPORT), "decode": r3(decode_s), "mask": r3(mask_s), "session": r3(session_s),
                "predict": r3(predict_s), "total": r3(total_s)},
    "spots_per_s": round(len(xy) / predict_s, 2), "end_to_end_spots_per_s": round(len(xy) / total_s, 2),
    "same_spots_as_grid": same_spots,
    "max_abs_diff_vs_positions_csv": float(np.abs(got - want).max()) if want.shape == got.shape else None,
}))
