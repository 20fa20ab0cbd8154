#!/usr/bin/env python3
"""MuseTalk v1.5's per-frame audio features, computed the way its audio processor does.

features_reference.py --audio A.npy --encoder encoder.onnx --out F.npy [--fps 25]

WhisperFeatureExtractor mel of each 30 s segment (padded to 3000 frames), the encoder's
hidden states stacked [1, 1500, 5, 384], trimmed to the audio, zero-padded by 4 steps on the
left and 12 on the right, then for frame i the steps [2i, 2i+10) of the padded sequence,
flattened (step, layer) -> [50, 384]. Output [frames, 50, 384] float32 with
frames = ceil(len * fps / 16000).
"""
import argparse
import math

import numpy as np
import onnxruntime as ort
from transformers import WhisperFeatureExtractor


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--audio", required=True)
    ap.add_argument("--encoder", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--fps", type=int, default=25)
    a = ap.parse_args()

    audio = np.load(a.audio).astype(np.float32)
    fe = WhisperFeatureExtractor()
    sess = ort.InferenceSession(a.encoder, providers=["CPUExecutionProvider"])
    seg = 30 * 16000
    hidden = []
    for start in range(0, len(audio), seg):
        mel = fe(audio[start:start + seg], sampling_rate=16000, return_tensors="np")["input_features"]
        hidden.append(sess.run(["hidden_states"], {"input_features": mel.astype(np.float32)})[0])
    hidden = np.concatenate(hidden, axis=1)  # [1, steps, 5, 384]
    actual = math.ceil(len(audio) / 320)
    hidden = hidden[:, :actual]
    hidden = np.concatenate([np.zeros_like(hidden[:, :4]), hidden, np.zeros_like(hidden[:, :12])], axis=1)
    mult = 50 / a.fps
    frames = math.ceil(len(audio) * a.fps / 16000)
    out = []
    for i in range(frames):
        k = math.floor(i * mult)
        clip = hidden[0, k:k + 10]  # [10, 5, 384]
        assert clip.shape[0] == 10
        out.append(clip.reshape(50, 384))
    np.save(a.out, np.stack(out).astype(np.float32))


if __name__ == "__main__":
    main()
