#!/usr/bin/env python3
"""Exposes a Piper voice's phoneme durations as a second output, for word timings.

A Piper voice (VITS) predicts how many spectrogram frames each input id lasts and rounds it
up (`w_ceil`, the graph's only Ceil node) before it generates audio from exactly that many
frames. Piper's export keeps that tensor internal. This script copies the voice with one
more output, `durations` float32 [1, 1, ids] (frames per input id, length scale applied),
and changes nothing else: `output` stays bit-identical. piperttssrc turns the durations of
each word's phonemes into word-boundary events when the voice has this output.

  piper_durations.py voice.onnx out.onnx [--check]

--check runs both files on the same ids and asserts equal audio and that the durations add
up to the audio's length in frames.
"""
import argparse
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper

OUTPUT = "durations"


def add_durations(model):
    g = model.graph
    if any(o.name == OUTPUT for o in g.output):
        return model
    ceils = [n for n in g.node if n.op_type == "Ceil"]
    if len(ceils) != 1:
        raise SystemExit(f"expected one Ceil node (VITS w_ceil), found {len(ceils)}: not a Piper voice?")
    g.node.append(helper.make_node("Identity", [ceils[0].output[0]], [OUTPUT], name="durations_out"))
    g.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [1, 1, "ids"]))
    return model


def check(src, dst):
    import onnxruntime as ort

    a = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(dst, providers=["CPUExecutionProvider"])
    ids = np.array([[1, 0, 20, 0, 59, 0, 24, 0, 100, 0, 3, 0, 41, 0, 120, 0, 2]], dtype=np.int64)
    feeds = {
        "input": ids,
        "input_lengths": np.array([ids.shape[1]], dtype=np.int64),
        # noise 0: deterministic, so the two runs can be compared
        "scales": np.array([0.0, 1.0, 0.0], dtype=np.float32),
    }
    names = [i.name for i in a.get_inputs()]
    if "sid" in names:
        feeds["sid"] = np.array([0], dtype=np.int64)
    (audio_a,) = a.run(["output"], feeds)
    audio_b, dur = b.run(["output", OUTPUT], feeds)
    assert np.array_equal(audio_a, audio_b), "audio changed"
    frames = float(dur.sum())
    hop = audio_b.size / frames
    assert dur.shape == (1, 1, ids.shape[1]), dur.shape
    assert abs(hop - round(hop)) < 1e-9, f"audio {audio_b.size} samples is not a whole number of frames ({frames})"
    print(f"ok: {ids.shape[1]} ids, {frames:.0f} frames, {audio_b.size} samples, hop {hop:.0f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("voice")
    ap.add_argument("out")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args(argv)
    model = add_durations(onnx.load(a.voice))
    onnx.save(model, a.out)
    if a.check:
        check(a.voice, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
