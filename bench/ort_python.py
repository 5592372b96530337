"""Python onnxruntime throughput for one model (bench helper): prints JSON {"runs_per_s": ...}.

usage: ort_python.py MODEL.onnx INPUTS.json ITERS THREADS
INPUTS.json: [{"name", "dtype": "float32"|"int64", "shape": [...], "file": raw little-endian data}]
"""
import json
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort

path, spec, iters, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
feeds = {}
for t in json.load(open(spec)):
    dtype = "<i8" if t["dtype"] == "int64" else "<f4"
    feeds[t["name"]] = np.fromfile(t["file"], dtype=dtype).reshape(t["shape"])
opts = ort.SessionOptions()
m = onnx.load(path, load_external_data=False)
racy = any(n.op_type == "ScatterND" and any(a.name == "reduction" and a.s != b"none" for a in n.attribute) for n in m.graph.node)
if racy:
    threads = 1  # ScatterND reduction is not thread-safe in onnxruntime (as in the Rust runtime)
if threads > 0:
    opts.intra_op_num_threads = threads
sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
sess.run(None, feeds)  # warm-up
t0 = time.perf_counter()
for _ in range(iters):
    sess.run(None, feeds)
dt = time.perf_counter() - t0
print(json.dumps({"runs_per_s": iters / dt, "onnxruntime": ort.__version__}))
