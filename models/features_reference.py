#!/usr/bin/env python3
"""MuseTalk v1.5's per-frame audio features, computed the way its `audio_processor` does.

features_reference.py --audio A.npy --encoder encoder.onnx --out F.npy [--fps 25]
features_reference.py --make-speech SECONDS --audio-out A.npy
  (continuous espeak-ng speech of exactly SECONDS, 16 kHz float32, for the tests)

As MuseTalk's `AudioProcessor`: the audio cut into 30 s segments, WhisperFeatureExtractor mel
of each (padded to 3000 frames), the encoder's 5 hidden states of each stacked and
concatenated [1, steps, 5, 384], trimmed to floor(seconds * 50) steps, zero-padded by 4 steps
on the left and 12 on the right, then for frame i < floor(seconds * fps) the steps
[floor(i * 50 / fps), +10) of the padded sequence, flattened (step, layer) -> [50, 384].
Output [frames, 50, 384] float32.
"""
import argparse
import math
import os
import subprocess
import tempfile
import wave

import numpy as np

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A live avatar speaks while the pipeline keeps audio and video in sync.",
    "Every syllable should move the lips, frame after frame.",
    "She sells sea shells by the sea shore, and the shells she sells are surely seashells.",
    "How much wood would a woodchuck chuck if a woodchuck could chuck wood?",
    "Peter Piper picked a peck of pickled peppers on a bright summer morning.",
]


def speech_16k(text: str, speed: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s.wav")
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(speed), "-w", path, text],
                       check=True)
        with wave.open(path) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32)
    pcm /= 32768.0
    n = int(len(pcm) * 16000 / rate)
    return np.interp(np.arange(n) * rate / 16000, np.arange(len(pcm)), pcm).astype(np.float32)


def make_speech(seconds: float) -> np.ndarray:
    """Sentences one after the other (espeak's own pauses between them), cut to length."""
    total = int(round(seconds * 16000))
    parts, n, k = [], 0, 0
    while n < total:
        s = speech_16k(SENTENCES[k % len(SENTENCES)], 150 + 10 * (k % 3))
        parts.append(s)
        n += len(s)
        k += 1
    audio = np.concatenate(parts)[:total]
    rng = np.random.default_rng(7)
    audio = audio * (0.5 / max(1e-6, float(np.abs(audio).max())))
    audio += rng.normal(0, 0.001, total).astype(np.float32)  # about -60 dBFS of noise
    return audio.astype(np.float32)


def musetalk_features(audio: np.ndarray, encoder: str, fps: int = 25) -> np.ndarray:
    import onnxruntime as ort
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor()
    sess = ort.InferenceSession(encoder, providers=["CPUExecutionProvider"])
    sr = 16000
    seg = 30 * sr
    hidden = []
    for start in range(0, len(audio), seg):
        mel = fe(audio[start:start + seg], sampling_rate=sr, return_tensors="np")["input_features"]
        hidden.append(sess.run(["hidden_states"], {"input_features": mel.astype(np.float32)})[0])
    hidden = np.concatenate(hidden, axis=1)  # [1, steps, 5, 384]
    mult = 50 / fps
    frames = math.floor(len(audio) / sr * fps)
    actual = math.floor(len(audio) / sr * 50)
    hidden = hidden[:, :actual]
    pad = math.ceil(mult)
    hidden = np.concatenate([np.zeros_like(hidden[:, :pad * 2]), hidden,
                             np.zeros_like(hidden[:, :pad * 3 * 2])], axis=1)
    out = []
    for i in range(frames):
        k = math.floor(i * mult)
        clip = hidden[0, k:k + 10]  # [10, 5, 384]
        assert clip.shape[0] == 10
        out.append(clip.reshape(50, 384))
    return np.stack(out).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--audio")
    ap.add_argument("--encoder")
    ap.add_argument("--out")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--make-speech", type=float)
    ap.add_argument("--audio-out")
    a = ap.parse_args()
    if a.make_speech is not None:
        np.save(a.audio_out, make_speech(a.make_speech))
        return
    audio = np.load(a.audio).astype(np.float32)
    np.save(a.out, musetalk_features(audio, a.encoder, a.fps))


if __name__ == "__main__":
    main()
