"""Python onnxruntime throughput for one model (bench helper): prints JSON {"runs_per_s": ...}.

usage: ort_python.py MODEL.onnx INPUT.f32 SHAPE(comma) ITERS THREADS
"""
import json
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort

path, data, shape, iters, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
x = np.fromfile(data, dtype="<f4").reshape([int(s) for s in shape.split(",")])
opts = ort.SessionOptions()
m = onnx.load(path, load_external_data=False)
racy = any(n.op_type == "ScatterND" and any(a.name == "reduction" and a.s != b"none" for a in n.attribute) for n in m.graph.node)
if racy:
    threads = 1  # ScatterND reduction is not thread-safe in onnxruntime (as in the Rust runtime)
if threads > 0:
    opts.intra_op_num_threads = threads
sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
name = sess.get_inputs()[0].name
sess.run(None, {name: x})  # warm-up
t0 = time.perf_counter()
for _ in range(iters):
    sess.run(None, {name: x})
dt = time.perf_counter() - t0
print(json.dumps({"runs_per_s": iters / dt, "onnxruntime": ort.__version__}))
