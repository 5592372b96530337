"""Rewrite a spot model's channel LayerNorms (Transpose → LayerNormalization(axis -1) → Transpose
back) into the same normalization in NCHW without transposes (ReduceMean over the channel axis,
Sub, Mul, Sqrt, Div, scale and shift), check the outputs agree on ONNX Runtime, and save the copy.
Used to ask whether tract runs that form faster (README, "Speed: where we stand"):

    python bench/layernorm_nchw.py out/spot-small.onnx /tmp/nchw.onnx
    $CARGO_TARGET_DIR/release/bench roofline out/spot-small.onnx /tmp/nchw.onnx
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

src, dst = sys.argv[1], sys.argv[2]
m = onnx.load(src)
g = m.graph
inits = {i.name: i for i in g.initializer}
nodes, out, new = list(g.node), [], [numpy_helper.from_array(np.array([1], np.int64), "ln_axes1")]
i = k = 0
while i < len(nodes):
    n = nodes[i]
    if (n.op_type == "Transpose" and i + 2 < len(nodes) and nodes[i + 1].op_type == "LayerNormalization"
            and nodes[i + 2].op_type == "Transpose" and list(helper.get_attribute_value(n.attribute[0])) == [0, 2, 3, 1]):
        ln, x, y = nodes[i + 1], n.input[0], nodes[i + 2].output[0]
        eps = next((helper.get_attribute_value(a) for a in ln.attribute if a.name == "epsilon"), 1e-5)
        p = f"lnx{k}"
        k += 1
        for name, arr in ((p + "_g", numpy_helper.to_array(inits[ln.input[1]])), (p + "_b", numpy_helper.to_array(inits[ln.input[2]]))):
            new.append(numpy_helper.from_array(arr.reshape(1, -1, 1, 1).astype(np.float32), name))
        new.append(numpy_helper.from_array(np.array(eps, np.float32), p + "_eps"))
        out += [
            helper.make_node("ReduceMean", [x, "ln_axes1"], [p + "_mean"], keepdims=1),
            helper.make_node("Sub", [x, p + "_mean"], [p + "_d"]),
            helper.make_node("Mul", [p + "_d", p + "_d"], [p + "_d2"]),
            helper.make_node("ReduceMean", [p + "_d2", "ln_axes1"], [p + "_var"], keepdims=1),
            helper.make_node("Add", [p + "_var", p + "_eps"], [p + "_ve"]),
            helper.make_node("Sqrt", [p + "_ve"], [p + "_sd"]),
            helper.make_node("Div", [p + "_d", p + "_sd"], [p + "_n"]),
            helper.make_node("Mul", [p + "_n", p + "_g"], [p + "_ng"]),
            helper.make_node("Add", [p + "_ng", p + "_b"], [y]),
        ]
        i += 3
    else:
        out.append(n)
        i += 1
used = {name for n in out for name in n.input}
kept = [t for t in g.initializer if t.name in used]
del g.node[:]
g.node.extend(out)
del g.initializer[:]
g.initializer.extend(kept + new)
onnx.checker.check_model(m)
onnx.save(m, dst)
card = json.loads({p.key: p.value for p in m.metadata_props}["model_card"])
size = int(card["preprocessing"]["image"]["size"])
x = np.random.RandomState(0).randn(2, 3, size, size).astype(np.float32)
a = ort.InferenceSession(src).run(None, {g.input[0].name: x})[0]
b = ort.InferenceSession(dst).run(None, {g.input[0].name: x})[0]
print(f"rewrote {k} LayerNorms; max |original - rewrite| on ONNX Runtime {abs(a - b).max():.2e}; wrote {dst}")
