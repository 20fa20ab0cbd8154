#!/usr/bin/env python3
"""Check the tiny test models written by make_test_models.py against their contracts.

Loads each model with onnxruntime (CPUExecutionProvider), checks input/output
names, dtypes and dims (symbolic names or fixed sizes), runs batch 1 and batch 3,
checks output shapes, finiteness, dependence on the inputs, batch consistency and,
for the whisper encoder, locality in time.  Exits non-zero on any failure.

Usage: check_test_models.py --dir DIR
"""

import argparse
import os
import sys

import numpy as np
import onnxruntime as ort

try:
    import onnx
except ImportError:  # the onnx package is optional here; only used for metadata checks
    onnx = None

EXPECTED_OPSET = 17
EXPECTED_IR_VERSION = 8

# name -> (inputs, outputs); each entry (tensor name, ort type string, dims)
CONTRACTS = {
    "whisper_encoder.onnx": (
        [("input_features", "tensor(float)", ["batch", 80, "frames"])],
        [("hidden_states", "tensor(float)", ["batch", "steps", 5, 384])],
    ),
    "unet.onnx": (
        [
            ("sample", "tensor(float)", ["batch", 8, 32, 32]),
            ("timestep", "tensor(int64)", ["batch"]),
            ("encoder_hidden_states", "tensor(float)", ["batch", 50, 384]),
        ],
        [("latent", "tensor(float)", ["batch", 4, 32, 32])],
    ),
    "vae_decoder.onnx": (
        [("latent", "tensor(float)", ["batch", 4, 32, 32])],
        [("image", "tensor(float)", ["batch", 3, 256, 256])],
    ),
    "vae_encoder.onnx": (
        [("image", "tensor(float)", ["batch", 3, 256, 256])],
        [("latent", "tensor(float)", ["batch", 4, 32, 32])],
    ),
    "face_parsing.onnx": (
        [("image", "tensor(float)", ["batch", 3, 512, 512])],
        [("logits", "tensor(float)", ["batch", 19, 512, 512])],
    ),
}


class Checker:
    def __init__(self):
        self.failures = 0

    def check(self, cond, msg):
        status = "ok  " if cond else "FAIL"
        print(f"  [{status}] {msg}")
        if not cond:
            self.failures += 1
        return cond


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])


def check_signature(c, sess, path, contract):
    exp_in, exp_out = contract
    for kind, actual, expected in (
        ("input", sess.get_inputs(), exp_in),
        ("output", sess.get_outputs(), exp_out),
    ):
        c.check(
            [a.name for a in actual] == [e[0] for e in expected],
            f"{kind} names {[a.name for a in actual]} == {[e[0] for e in expected]}",
        )
        for a, (name, dtype, dims) in zip(actual, expected):
            c.check(a.type == dtype, f"{kind} {name}: dtype {a.type} == {dtype}")
            c.check(list(a.shape) == dims, f"{kind} {name}: dims {list(a.shape)} == {dims}")
    if onnx is not None:
        m = onnx.load(path)
        opset = {o.domain: o.version for o in m.opset_import}.get("", None)
        c.check(m.ir_version == EXPECTED_IR_VERSION, f"ir_version {m.ir_version} == {EXPECTED_IR_VERSION}")
        c.check(opset == EXPECTED_OPSET, f"opset {opset} == {EXPECTED_OPSET}")
    size = os.path.getsize(path)
    c.check(size < 1_000_000, f"file size {size} bytes < 1 MB")


def finite(c, label, y):
    return c.check(bool(np.all(np.isfinite(y))), f"{label}: all finite")


def differs(c, label, a, b, tol=1e-4):
    d = float(np.max(np.abs(a - b)))
    return c.check(d > tol, f"{label}: max abs diff {d:.4g} > {tol}")


def batch_consistent(c, label, run, inputs_b3):
    """Output of row i in a batch of 3 equals the output of that row alone."""
    yb = run(inputs_b3)
    worst = 0.0
    for i in range(3):
        y1 = run({k: v[i : i + 1] for k, v in inputs_b3.items()})
        worst = max(worst, float(np.max(np.abs(yb[i : i + 1] - y1))))
    c.check(worst < 1e-4, f"{label}: batch-3 rows == batch-1 runs (max abs diff {worst:.3g})")


def check_whisper(c, sess, rng):
    run = lambda feeds: sess.run(["hidden_states"], feeds)[0]
    mel = lambda b, t: rng.uniform(-1.0, 1.0, (b, 80, t)).astype(np.float32)
    for b in (1, 3):
        for t in (100, 3000):
            x = mel(b, t)
            y = run({"input_features": x})
            exp = (b, t // 2, 5, 384)
            c.check(y.shape == exp, f"B={b} T={t}: output shape {y.shape} == {exp}")
            finite(c, f"B={b} T={t}", y)
            differs(c, f"B={b} T={t}: output varies with input", y, run({"input_features": mel(b, t)}))
    x = mel(1, 100)
    y = run({"input_features": x})
    for s in range(5):
        c.check(float(np.std(y[:, :, s])) > 1e-3, f"state {s} is non-constant (std {np.std(y[:, :, s]):.3g})")
    differs(c, "states 0 and 4 differ", y[:, :, 0], y[:, :, 4])
    batch_consistent(c, "T=100", run, {"input_features": mel(3, 100)})

    # Locality: frames[40:160] is a 60-step window starting at step 20 of frames[0:200].
    full_x = mel(1, 200)
    full = run({"input_features": full_x})
    win = run({"input_features": np.ascontiguousarray(full_x[:, :, 40:160])})
    c.check(win.shape == (1, 60, 5, 384), f"window output shape {win.shape} == (1, 60, 5, 384)")
    d = float(np.max(np.abs(full[:, 30:50] - win[:, 10:30])))
    c.check(d < 1e-4, f"locality: full steps 30..50 == window steps 10..30 (max abs diff {d:.3g})")
    # Sanity: the interior away from the window edges (steps 1..58 of the window) also agrees.
    d2 = float(np.max(np.abs(full[:, 21:79] - win[:, 1:59])))
    c.check(d2 < 1e-4, f"locality: full steps 21..79 == window steps 1..59 (max abs diff {d2:.3g})")


def check_unet(c, sess, rng):
    run = lambda feeds: sess.run(["latent"], feeds)[0]

    def feeds(b):
        return {
            "sample": rng.standard_normal((b, 8, 32, 32)).astype(np.float32),
            "timestep": np.zeros((b,), dtype=np.int64),
            "encoder_hidden_states": rng.standard_normal((b, 50, 384)).astype(np.float32),
        }

    for b in (1, 3):
        f = feeds(b)
        y = run(f)
        c.check(y.shape == (b, 4, 32, 32), f"B={b}: output shape {y.shape} == {(b, 4, 32, 32)}")
        finite(c, f"B={b}", y)
        other = feeds(b)
        differs(c, f"B={b}: output varies with sample", y, run({**f, "sample": other["sample"]}))
        differs(
            c,
            f"B={b}: output varies with encoder_hidden_states",
            y,
            run({**f, "encoder_hidden_states": other["encoder_hidden_states"]}),
        )
        differs(
            c,
            f"B={b}: output varies with timestep",
            y,
            run({**f, "timestep": np.full((b,), 500, dtype=np.int64)}),
        )
    f = feeds(3)
    f["timestep"] = np.array([0, 10, 999], dtype=np.int64)
    batch_consistent(c, "unet", run, f)


def check_vae_decoder(c, sess, rng):
    run = lambda feeds: sess.run(["image"], feeds)[0]
    for b in (1, 3):
        z = rng.standard_normal((b, 4, 32, 32)).astype(np.float32)
        y = run({"latent": z})
        c.check(y.shape == (b, 3, 256, 256), f"B={b}: output shape {y.shape} == {(b, 3, 256, 256)}")
        if finite(c, f"B={b}", y):
            c.check(
                float(y.min()) >= -1.0 and float(y.max()) <= 1.0,
                f"B={b}: values in [-1,1] (min {y.min():.3f}, max {y.max():.3f})",
            )
            sat = float(np.mean(np.abs(y) > 0.999))
            c.check(sat < 0.5, f"B={b}: not saturated (fraction |y|>0.999 = {sat:.3f})")
        differs(c, f"B={b}: output varies with input", y, run({"latent": rng.standard_normal(z.shape).astype(np.float32)}))
    # Spatial detail: changing one latent pixel changes only the corresponding image region.
    z = rng.standard_normal((1, 4, 32, 32)).astype(np.float32)
    z2 = z.copy()
    z2[:, :, 5, 20] += 3.0
    diff = np.abs(run({"latent": z}) - run({"latent": z2})).max(axis=(0, 1))
    ys, xs = np.nonzero(diff > 1e-6)
    c.check(ys.size > 0, "local latent change shows in the image")
    if ys.size:
        c.check(
            ys.min() >= 5 * 8 - 16 and ys.max() < 6 * 8 + 16 and xs.min() >= 20 * 8 - 16 and xs.max() < 21 * 8 + 16,
            f"latent pixel (5,20) affects only image rows {ys.min()}..{ys.max()}, cols {xs.min()}..{xs.max()}",
        )
    batch_consistent(c, "vae_decoder", run, {"latent": rng.standard_normal((3, 4, 32, 32)).astype(np.float32)})


def check_vae_encoder(c, sess, rng):
    run = lambda feeds: sess.run(["latent"], feeds)[0]
    img = lambda b: rng.uniform(-1.0, 1.0, (b, 3, 256, 256)).astype(np.float32)
    for b in (1, 3):
        x = img(b)
        y = run({"image": x})
        c.check(y.shape == (b, 4, 32, 32), f"B={b}: output shape {y.shape} == {(b, 4, 32, 32)}")
        finite(c, f"B={b}", y)
        differs(c, f"B={b}: output varies with input", y, run({"image": img(b)}))
    batch_consistent(c, "vae_encoder", run, {"image": img(3)})


def check_face_parsing(c, sess, rng):
    run = lambda feeds: sess.run(["logits"], feeds)[0]
    mean = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)
    norm = lambda rgb: ((rgb / 255.0 - mean) / std).astype(np.float32)
    for b in (1, 2):
        x = norm(rng.uniform(0, 255, (b, 3, 512, 512)))
        y = run({"image": x})
        c.check(y.shape == (b, 19, 512, 512), f"B={b}: output shape {y.shape}")
        finite(c, f"B={b}", y)
    # Skin-coloured left half, hair-coloured right half.
    img = np.zeros((1, 3, 512, 512), np.float32)
    img[:, :, :, :256] = np.array([225, 160, 130], np.float32).reshape(1, 3, 1, 1)
    img[:, :, :, 256:] = np.array([45, 30, 25], np.float32).reshape(1, 3, 1, 1)
    cls = run({"image": norm(img)})[0].argmax(0)
    c.check((cls[:, :256] == 1).all() and (cls[:, 256:] == 17).all(),
            "skin colour parses as class 1 (skin), dark brown as 17 (hair)")
    batch_consistent(c, "face_parsing", run, {"image": norm(rng.uniform(0, 255, (3, 3, 512, 512)))})


CHECKS = {
    "whisper_encoder.onnx": check_whisper,
    "unet.onnx": check_unet,
    "vae_decoder.onnx": check_vae_decoder,
    "vae_encoder.onnx": check_vae_encoder,
    "face_parsing.onnx": check_face_parsing,
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", required=True, help="directory holding the four .onnx files")
    args = ap.parse_args(argv)

    c = Checker()
    print(f"onnxruntime {ort.__version__}")
    for fname, contract in CONTRACTS.items():
        path = os.path.join(args.dir, fname)
        print(f"{fname}:")
        if not c.check(os.path.isfile(path), f"{path} exists"):
            continue
        try:
            sess = session(path)
        except Exception as e:  # noqa: BLE001 - report any load failure
            c.check(False, f"load with onnxruntime: {e}")
            continue
        check_signature(c, sess, path, contract)
        try:
            CHECKS[fname](c, sess, np.random.default_rng(1234))
        except Exception as e:  # noqa: BLE001 - report any run failure
            c.check(False, f"run raised {type(e).__name__}: {e}")

    if c.failures:
        print(f"FAILED: {c.failures} check(s) failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
