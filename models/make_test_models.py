#!/usr/bin/env python3
"""Generate tiny, deterministic, random-weight ONNX stand-ins for livetalk's models.

The files written have exactly the input/output contracts (names, dtypes,
ranks, symbolic dimension names) of the real models, so the Rust elements can be
tested end to end without downloading anything:

  whisper_encoder.onnx  input_features [batch,80,frames] -> hidden_states [batch,steps,5,384]
  unet.onnx             sample [batch,8,32,32], timestep int64 [batch],
                        encoder_hidden_states [batch,50,384] -> latent [batch,4,32,32]
  vae_decoder.onnx      latent [batch,4,32,32] -> image [batch,3,256,256] in [-1,1]
  vae_encoder.onnx      image [batch,3,256,256] -> latent [batch,4,32,32]
  face_parsing.onnx     image [batch,3,512,512] (ImageNet-normalised RGB)
                        -> logits [batch,19,512,512]
  unet_batch1.onnx      unet.onnx (the same weights) with the batch dimension fixed to 1,
                        as some exporters write it (tests the fall-back to one frame a run)

Graphs are built directly with onnx.helper from numpy arrays (no torch).
Output is byte-for-byte deterministic for a given --seed.

Usage: make_test_models.py --out DIR [--seed 0]
"""

import argparse
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
PRODUCER_NAME = "livetalk-make_test_models"
PRODUCER_VERSION = "1"

F32 = TensorProto.FLOAT
I64 = TensorProto.INT64


class GraphBuilder:
    """Minimal helper that accumulates nodes and initializers with unique names."""

    def __init__(self, name, rng):
        self.name = name
        self.rng = rng
        self.nodes = []
        self.inits = []
        self._count = 0

    def _fresh(self, prefix):
        self._count += 1
        return f"{prefix}_{self._count}"

    def const(self, array, prefix="c"):
        name = self._fresh(prefix)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def weight(self, shape, fan_in, gain=1.0, prefix="w"):
        std = gain / np.sqrt(fan_in)
        w = (self.rng.standard_normal(shape) * std).astype(np.float32)
        return self.const(w, prefix)

    def bias(self, n, scale=0.05, prefix="b"):
        b = (self.rng.standard_normal(n) * scale).astype(np.float32)
        return self.const(b, prefix)

    def op(self, op_type, inputs, output=None, **attrs):
        out = output or self._fresh(op_type.lower())
        self.nodes.append(
            helper.make_node(op_type, inputs, [out], name=self._fresh("n_" + op_type), **attrs)
        )
        return out

    # --- composite helpers -------------------------------------------------

    def gelu(self, x):
        """Exact (erf-based) GELU: 0.5 * x * (1 + erf(x / sqrt(2)))."""
        inv_sqrt2 = self.const(np.array(1.0 / np.sqrt(2.0), dtype=np.float32), "inv_sqrt2")
        one = self.const(np.array(1.0, dtype=np.float32), "one")
        half = self.const(np.array(0.5, dtype=np.float32), "half")
        e = self.op("Erf", [self.op("Mul", [x, inv_sqrt2])])
        return self.op("Mul", [self.op("Mul", [x, half]), self.op("Add", [e, one])])

    def conv1d(self, x, cin, cout, k, stride=1, pad=0, gain=1.0):
        w = self.weight((cout, cin, k), cin * k, gain)
        b = self.bias(cout)
        return self.op(
            "Conv", [x, w, b], kernel_shape=[k], strides=[stride], pads=[pad, pad]
        )

    def conv2d(self, x, cin, cout, k, stride=1, pad=0, gain=1.0):
        w = self.weight((cout, cin, k, k), cin * k * k, gain)
        b = self.bias(cout)
        return self.op(
            "Conv",
            [x, w, b],
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[pad, pad, pad, pad],
        )

    def upsample2x(self, x):
        scales = self.const(np.array([1.0, 1.0, 2.0, 2.0], dtype=np.float32), "scales")
        return self.op("Resize", [x, "", scales], mode="nearest")

    def model(self, inputs, outputs, doc):
        graph = helper.make_graph(self.nodes, self.name, inputs, outputs, self.inits)
        m = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name=PRODUCER_NAME,
            producer_version=PRODUCER_VERSION,
            doc_string=doc,
        )
        m.ir_version = IR_VERSION
        m.model_version = 1
        onnx.checker.check_model(m, full_check=True)
        return m


def seeded_rng(seed, model_index):
    # Independent, fixed stream per model so adding a model never changes the others.
    return np.random.default_rng([seed, model_index])


# ---------------------------------------------------------------------------
# 1. whisper encoder
# ---------------------------------------------------------------------------

def make_whisper_encoder(seed):
    n_mels, hidden, n_states, rank, c1 = 80, 384, 5, 16, 32
    g = GraphBuilder("tiny_whisper_encoder", seeded_rng(seed, 1))

    # Local-in-time front end: two convolutions, the second with stride 2.
    x = g.gelu(g.conv1d("input_features", n_mels, c1, 3, stride=1, pad=1))
    x = g.gelu(g.conv1d(x, c1, hidden, 3, stride=2, pad=1))        # [B,384,steps]
    x = g.op("Transpose", [x], perm=[0, 2, 1])                      # [B,steps,384]

    states = [x]
    for k in range(n_states - 1):
        a = g.weight((hidden, rank), hidden, prefix=f"layer{k}_a")
        b = g.weight((rank, hidden), rank, prefix=f"layer{k}_b")
        h = g.op("Tanh", [g.op("MatMul", [g.op("MatMul", [x, a]), b])])
        x = g.op("Add", [x, h])
        if k == n_states - 2:
            gamma = g.const(
                (1.0 + 0.1 * g.rng.standard_normal(hidden)).astype(np.float32), "ln_gamma"
            )
            beta = g.bias(hidden, prefix="ln_beta")
            x = g.op("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=1e-5)
        states.append(x)

    axes = g.const(np.array([2], dtype=np.int64), "axes2")
    unsq = [g.op("Unsqueeze", [s, axes]) for s in states]          # [B,steps,1,384]
    g.op("Concat", unsq, output="hidden_states", axis=2)           # [B,steps,5,384]

    inputs = [helper.make_tensor_value_info("input_features", F32, ["batch", n_mels, "frames"])]
    outputs = [
        helper.make_tensor_value_info("hidden_states", F32, ["batch", "steps", n_states, hidden])
    ]
    return g.model(
        inputs,
        outputs,
        "Tiny random-weight stand-in for the whisper encoder (test only). "
        "steps = frames / 2; outputs are local in time (convolutions only).",
    )


# ---------------------------------------------------------------------------
# 2. UNet
# ---------------------------------------------------------------------------

def make_unet(seed):
    c = 32
    g = GraphBuilder("tiny_unet", seeded_rng(seed, 2))

    # Audio conditioning: mean over the 50 feature rows -> per-channel bias.
    audio = g.op("ReduceMean", ["encoder_hidden_states"], axes=[1], keepdims=0)  # [B,384]
    cond = g.op("MatMul", [audio, g.weight((384, c), 384 / 4.0)])               # [B,C]

    # Timestep: cast to float, tiny per-channel weight, added to the bias.
    t = g.op("Cast", ["timestep"], to=F32)                                      # [B]
    t = g.op("Unsqueeze", [t, g.const(np.array([1], dtype=np.int64), "axes1")])  # [B,1]
    t_w = g.const((g.rng.standard_normal((1, c)) * 1e-3).astype(np.float32), "t_w")
    cond = g.op("Add", [cond, g.op("Mul", [t, t_w])])                           # [B,C]
    cond = g.op("Unsqueeze", [cond, g.const(np.array([2, 3], dtype=np.int64), "axes23")])

    h = g.conv2d("sample", 8, c, 3, pad=1)                                     # [B,C,32,32]
    h = g.op("Tanh", [g.op("Add", [h, cond])])
    g.nodes.append(
        helper.make_node(
            "Conv",
            [h, g.weight((4, c, 3, 3), c * 9), g.bias(4)],
            ["latent"],
            name="n_out_conv",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
        )
    )

    inputs = [
        helper.make_tensor_value_info("sample", F32, ["batch", 8, 32, 32]),
        helper.make_tensor_value_info("timestep", I64, ["batch"]),
        helper.make_tensor_value_info("encoder_hidden_states", F32, ["batch", 50, 384]),
    ]
    outputs = [helper.make_tensor_value_info("latent", F32, ["batch", 4, 32, 32])]
    return g.model(inputs, outputs, "Tiny random-weight stand-in for the UNet (test only).")


# ---------------------------------------------------------------------------
# 3. VAE decoder
# ---------------------------------------------------------------------------

def make_vae_decoder(seed):
    c = 16
    g = GraphBuilder("tiny_vae_decoder", seeded_rng(seed, 3))
    h = g.op("Relu", [g.conv2d("latent", 4, c, 3, pad=1, gain=1.4)])   # 32
    for _ in range(3):                                                  # 64, 128, 256
        h = g.upsample2x(h)
        h = g.op("Relu", [g.conv2d(h, c, c, 3, pad=1, gain=1.4)])
    h = g.conv2d(h, c, 3, 3, pad=1)
    g.op("Tanh", [h], output="image")

    inputs = [helper.make_tensor_value_info("latent", F32, ["batch", 4, 32, 32])]
    outputs = [helper.make_tensor_value_info("image", F32, ["batch", 3, 256, 256])]
    return g.model(
        inputs, outputs, "Tiny random-weight stand-in for the VAE decoder (test only). Output in [-1,1]."
    )


# ---------------------------------------------------------------------------
# 4. VAE encoder
# ---------------------------------------------------------------------------

def make_vae_encoder(seed):
    c = 16
    g = GraphBuilder("tiny_vae_encoder", seeded_rng(seed, 4))
    h = g.op("Relu", [g.conv2d("image", 3, c, 3, stride=2, pad=1, gain=1.4)])   # 128
    h = g.op("Relu", [g.conv2d(h, c, c, 3, stride=2, pad=1, gain=1.4)])         # 64
    h = g.op("Relu", [g.conv2d(h, c, c, 3, stride=2, pad=1, gain=1.4)])         # 32
    g.nodes.append(
        helper.make_node(
            "Conv",
            [h, g.weight((4, c, 3, 3), c * 9), g.bias(4)],
            ["latent"],
            name="n_out_conv",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
        )
    )

    inputs = [helper.make_tensor_value_info("image", F32, ["batch", 3, 256, 256])]
    outputs = [helper.make_tensor_value_info("latent", F32, ["batch", 4, 32, 32])]
    return g.model(inputs, outputs, "Tiny random-weight stand-in for the VAE encoder (test only).")


# ---------------------------------------------------------------------------
# 5. face parsing (BiSeNet's contract; a nearest-colour classifier inside)
# ---------------------------------------------------------------------------

# Prototype colours (RGB 0..255) of the CelebAMask-HQ classes the tiny parser knows; every
# other class never wins. Nearest prototype = argmax of 2 p.x - |p|^2, a 1x1 convolution on
# the un-normalised colour. Coarse, but on a portrait it finds skin, lips and hair, so the
# jaw mask built on it is face-shaped.
PARSING_PROTOTYPES = {
    0: [(20, 20, 40), (90, 110, 150), (200, 185, 185), (225, 215, 215)],  # background
    1: [(225, 160, 130), (190, 120, 95), (215, 175, 155)],  # skin
    10: [(250, 215, 200)],  # nose (lighter skin)
    12: [(195, 100, 100)],  # upper lip
    13: [(165, 70, 75)],  # lower lip
    11: [(80, 25, 30)],  # mouth inside
    14: [(205, 140, 110)],  # neck
    16: [(240, 240, 240)],  # cloth
    17: [(45, 30, 25), (90, 60, 40), (130, 95, 65), (160, 125, 90)],  # hair
}


def make_face_parsing(seed):
    del seed  # designed weights, nothing random
    g = GraphBuilder("tiny_face_parsing", None)
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1)
    # Back to 0..255 RGB: x * std * 255 + mean * 255.
    rgb = g.op("Add", [g.op("Mul", ["image", g.const(std * 255.0, "std255")]),
                       g.const(mean * 255.0, "mean255")])
    # One 1x1 conv per prototype (scaled down to keep the logits moderate), then the max over
    # a class's prototypes.
    classes = []
    for cls in range(19):
        protos = PARSING_PROTOTYPES.get(cls)
        if protos is None:
            classes.append(None)
            continue
        p = np.array(protos, dtype=np.float64)
        w = (2.0 * p / 1000.0).astype(np.float32).reshape(len(protos), 3, 1, 1)
        b = (-(p ** 2).sum(axis=1) / 1000.0).astype(np.float32)
        scores = g.op("Conv", [rgb, g.const(w, f"proto_w{cls}"), g.const(b, f"proto_b{cls}")],
                      kernel_shape=[1, 1])
        classes.append(g.op("ReduceMax", [scores], axes=[1], keepdims=1))
    # Classes without a prototype: far below any other score.
    never = g.op("Add", [g.op("Mul", [classes[0], g.const(np.array(0.0, dtype=np.float32), "zero")]),
                         g.const(np.array(-1e4, dtype=np.float32), "never")])
    g.op("Concat", [c if c is not None else never for c in classes], "logits", axis=1)
    inputs = [helper.make_tensor_value_info("image", F32, ["batch", 3, 512, 512])]
    outputs = [helper.make_tensor_value_info("logits", F32, ["batch", 19, 512, 512])]
    return g.model(
        inputs,
        outputs,
        "Tiny face-parsing stand-in (BiSeNet's contract): per-pixel nearest prototype colour.",
    )


def make_unet_batch1(seed):
    model = make_unet(seed)
    for value in list(model.graph.input) + list(model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_param")
        dim.dim_value = 1
    return model


MODELS = [
    ("whisper_encoder.onnx", make_whisper_encoder),
    ("unet.onnx", make_unet),
    ("unet_batch1.onnx", make_unet_batch1),
    ("vae_decoder.onnx", make_vae_decoder),
    ("vae_encoder.onnx", make_vae_encoder),
    ("face_parsing.onnx", make_face_parsing),
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory (created if missing)")
    ap.add_argument("--seed", type=int, default=0, help="random seed for the weights (default 0)")
    args = ap.parse_args(argv)
    if args.seed < 0:
        ap.error("--seed must be non-negative")

    os.makedirs(args.out, exist_ok=True)
    for fname, make in MODELS:
        model = make(args.seed)
        path = os.path.join(args.out, fname)
        tmp = path + ".tmp"
        onnx.save(model, tmp)
        os.replace(tmp, path)
        print(f"{path}: {os.path.getsize(path)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
