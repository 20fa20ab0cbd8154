#!/usr/bin/env python3
"""Write a MuseTalk model pair whose batch cost has a GPU's shape, for benchmarks on a CPU.

On a GPU a batch of MuseTalk frames costs a large fixed part and a small part per frame
(an H200: about 35 ms for one frame, 47 ms for four); on a CPU the real models cost about
the sum of their frames, so a CPU cannot show what batching across sessions does for a GPU.
This pair can: `unet.onnx` is the tiny test UNet (make_test_models.py, same contract) plus
a side branch whose cost does not depend on the batch (a chain of `--chain` MatMuls of
`--side` x `--side`, fed by a mean of the audio features and added to the output times
zero, so that the runtime cannot fold it away and the output stays the tiny UNet's);
`vae_decoder.onnx` is the tiny test decoder, a few ms per frame. With the defaults a batch
costs about 50 ms plus 7 ms a frame on two cores (`livetalk bench sessions --driver
musetalk --model-dir DIR` prints the figures of the machine it runs on).

Usage: make_fixed_cost_models.py --out DIR [--chain 30] [--side 512] [--seed 0]
"""

import argparse
import os
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_test_models as tiny  # noqa: E402


def add_fixed_cost(model, chain, side, seed):
    """Adds to `model` (the tiny UNet) a branch costing `chain` side x side MatMuls per run."""
    g = model.graph
    rng = np.random.default_rng([seed, 100])
    out = g.output[0].name
    for node in g.node:
        node.output[:] = ["fixed_cost_before" if o == out else o for o in node.output]
    nodes, inits = [], []

    def const(array, name):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    # A scalar of the input (so the branch runs every time), spread over a side x side matrix.
    nodes.append(helper.make_node("ReduceMean", ["encoder_hidden_states"], ["fc_mean"], keepdims=0))
    start = const(rng.standard_normal((side, side)) / np.sqrt(side), "fc_start")
    nodes.append(helper.make_node("Add", ["fc_mean", start], ["fc_x0"]))
    x = "fc_x0"
    for k in range(chain):
        w = const(rng.standard_normal((side, side)) / np.sqrt(side), f"fc_w{k}")
        nodes.append(helper.make_node("MatMul", [x, w], [f"fc_m{k}"]))
        nodes.append(helper.make_node("Tanh", [f"fc_m{k}"], [f"fc_x{k + 1}"]))
        x = f"fc_x{k + 1}"
    nodes.append(helper.make_node("ReduceMean", [x], ["fc_r"], keepdims=0))
    nodes.append(helper.make_node("Mul", ["fc_r", const(np.array(0.0), "fc_zero")], ["fc_nothing"]))
    nodes.append(helper.make_node("Add", ["fixed_cost_before", "fc_nothing"], [out]))
    g.node.extend(nodes)
    g.initializer.extend(inits)
    model.doc_string = (
        f"Tiny random-weight UNet plus a batch-independent cost ({chain} MatMuls of {side}x{side}): "
        "a GPU-shaped batch cost for benchmarks on a CPU (test only)."
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory (created if missing)")
    ap.add_argument("--chain", type=int, default=30, help="MatMuls in the fixed-cost branch (default 30)")
    ap.add_argument("--side", type=int, default=512, help="their side (default 512)")
    ap.add_argument("--seed", type=int, default=0, help="random seed for the weights (default 0)")
    args = ap.parse_args(argv)
    if args.chain < 1 or args.side < 1 or args.seed < 0:
        ap.error("--chain and --side must be positive, --seed non-negative")
    os.makedirs(args.out, exist_ok=True)
    models = [
        ("unet.onnx", add_fixed_cost(tiny.make_unet(args.seed), args.chain, args.side, args.seed)),
        ("vae_decoder.onnx", tiny.make_vae_decoder(args.seed)),
    ]
    for name, model in models:
        path = os.path.join(args.out, name)
        onnx.save(model, path + ".tmp")
        os.replace(path + ".tmp", path)
        print(f"{path}: {os.path.getsize(path)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
