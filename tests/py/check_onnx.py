"""Cross-check an exported model with the official tools (test-only; the product needs no Python).

usage: check_onnx.py MODEL.onnx [CASE.json]
  - onnx.checker.check_model(full_check=True) must pass;
  - with CASE.json ({"inputs": {name: {"shape", "data"}}, "output": name, "expected": [...],
    "tolerance": t}), Python onnxruntime must reproduce `expected` within `tolerance`.
Prints one JSON line with the findings; exits 1 on any failure.
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main():
    path = sys.argv[1]
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    report = {"model": path, "checker": "ok", "opset": max(o.version for o in model.opset_import),
              "ir_version": model.ir_version,
              "metadata_keys": sorted(p.key for p in model.metadata_props)}
    ok = True
    if len(sys.argv) > 2:
        case = json.load(open(sys.argv[2]))
        feeds = {}
        for name, t in case["inputs"].items():
            dtype = np.int64 if t.get("dtype") == "int64" else np.float32
            feeds[name] = np.asarray(t["data"], dtype=dtype).reshape(t["shape"])
        opts = ort.SessionOptions()
        # our exports have no ScatterND reduction (it races on several threads; see README); an older
        # model that has one runs on one thread
        if any(n.op_type == "ScatterND" and any(a.name == "reduction" and a.s != b"none" for a in n.attribute)
               for n in model.graph.node):
            opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        out = sess.run([case["output"]], feeds)[0]
        expected = np.asarray(case["expected"], dtype=np.float32).reshape(out.shape)
        diff = float(np.max(np.abs(out - expected))) if out.size else 0.0
        report["onnxruntime_version"] = ort.__version__
        report["max_abs_diff"] = diff
        ok = diff <= case["tolerance"]
    print(json.dumps(report))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
