#!/usr/bin/env python3
"""MuseTalk v1.5's per-frame inference in Python (numpy + onnxruntime): the reference for
the `musetalk` element.

As MuseTalk's realtime inference does it, per frame i:
  audio = whisper feature [50,384] + PositionalEncoding(d_model=384)   (float32, torch's way)
  pred  = unet(latent[i] [8,32,32], timestep 0, audio)                  -> [4,32,32]
  image = vae.decode(pred * (1/0.18215))                                   -> [3,256,256] in [-1,1]
  rgb   = ((image / 2 + 0.5).clamp(0, 1) * 255).round()                -> u8, HWC, RGB
(MuseTalk then flips to BGR for OpenCV; the element keeps RGB.) Frames run one at a time
here, so a batched run in the element is checked against single runs.

  musetalk_reference.py --unet U.onnx --vae V.onnx --latents L.npy --features F.npy \
      --index 0 1 2 ... --out out.npy
latents [N,8,32,32], features [F,50,384] (frame k uses avatar latent index[k]);
out [F,256,256,3] as float32 (0..255).
"""
import argparse
import math

import numpy as np
import onnxruntime as ort


def positional_encoding(seq_len=50, d_model=384):
    """MuseTalk's PositionalEncoding table, computed in float32 like torch."""
    pe = np.zeros((seq_len, d_model), dtype=np.float32)
    position = np.arange(0, seq_len, dtype=np.float32)[:, None]
    div_term = np.exp(np.arange(0, d_model, 2, dtype=np.float32) * np.float32(-math.log(10000.0) / d_model))
    pe[:, 0::2] = np.sin(position * div_term)
    pe[:, 1::2] = np.cos(position * div_term)
    return pe


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--unet", required=True)
    ap.add_argument("--vae", required=True)
    ap.add_argument("--latents", required=True)
    ap.add_argument("--features", required=True)
    ap.add_argument("--index", type=int, nargs="+", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    unet = ort.InferenceSession(a.unet, so, providers=["CPUExecutionProvider"])
    vae = ort.InferenceSession(a.vae, so, providers=["CPUExecutionProvider"])
    latents = np.load(a.latents).astype(np.float32)
    feats = np.load(a.features).astype(np.float32)
    assert len(a.index) == feats.shape[0], "one index per feature frame"
    pe = positional_encoding()
    out = []
    for k, i in enumerate(a.index):
        audio = (feats[k] + pe)[None]
        pred = unet.run(None, {
            "sample": latents[i][None],
            "timestep": np.zeros((1,), dtype=np.int64),
            "encoder_hidden_states": audio,
        })[0]
        image = vae.run(None, {"latent": pred * np.float32(1 / 0.18215)})[0]
        image = np.clip(image / 2 + 0.5, 0, 1)
        rgb = np.round(image[0].transpose(1, 2, 0) * 255)
        out.append(rgb)
    np.save(a.out, np.stack(out).astype(np.float32))


if __name__ == "__main__":
    main()
