#!/usr/bin/env python3
"""Reference log-mel for the Rust front end: transformers' WhisperFeatureExtractor.

mel_reference.py --out-dir DIR [--seconds 10]
  writes DIR/audio.npy  (float32 16 kHz mono: espeak-ng speech + noise + silence)
         DIR/mel.npy    (float32 [80, frames], WhisperFeatureExtractor without padding)
mel_reference.py --audio A.npy --out M.npy
  reference mel of given samples (for benchmarks).
"""
import argparse
import os
import subprocess
import tempfile
import wave

import numpy as np
from transformers import WhisperFeatureExtractor

TEXT = ("The quick brown fox jumps over the lazy dog. A live avatar speaks while "
        "the pipeline keeps audio and video in sync, frame after frame.")


def speech_16k(text: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s.wav")
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", path, text], check=True)
        with wave.open(path) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768
    # Linear resampling is enough: the same samples go to both implementations.
    n = int(len(pcm) * 16000 / rate)
    return np.interp(np.arange(n) * rate / 16000, np.arange(len(pcm)), pcm).astype(np.float32)


def make_clip(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(1234)
    speech = speech_16k(TEXT)
    total = int(seconds * 16000)
    clip = np.zeros(total, dtype=np.float32)
    start = 8000  # 0.5 s of digital silence first
    n = min(len(speech), total - start - 16000)
    clip[start:start + n] = speech[:n]
    clip += rng.normal(0, 0.002, total).astype(np.float32) * (np.arange(total) > total - 12000)
    clip[start:start + n] += rng.normal(0, 0.001, n).astype(np.float32)
    return clip


def reference_mel(audio: np.ndarray) -> np.ndarray:
    fe = WhisperFeatureExtractor()  # 80 mels, n_fft 400, hop 160, 16 kHz: whisper's defaults
    out = fe(audio, sampling_rate=16000, padding="longest", return_tensors="np")
    return out["input_features"][0].astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--audio")
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.audio:
        np.save(a.out, reference_mel(np.load(a.audio)))
        return
    os.makedirs(a.out_dir, exist_ok=True)
    audio = make_clip(a.seconds)
    np.save(os.path.join(a.out_dir, "audio.npy"), audio)
    np.save(os.path.join(a.out_dir, "mel.npy"), reference_mel(audio))


if __name__ == "__main__":
    main()
