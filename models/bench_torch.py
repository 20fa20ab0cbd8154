#!/usr/bin/env python3
"""The peer of `livetalk bench sessions --batches`: the same MuseTalk v1.5 models (UNet, then
the VAE decoder on its output, as the batching service runs them) in PyTorch eager, timed per
batch size, so that ONNX Runtime's figures have a reference taken on the same machine.

  bench_torch.py [--device cuda] [--precision fp32|fp16] [--batches 1,4,8,16] [--seconds 2]
                 [--random-full | --random-tiny]

The models are export_musetalk.py's seeded random-weight architectures (full width by
default: the same FLOPs as the official weights). The inputs are the contract's: latents
[B,8,32,32], timestep 0, whisper features [B,50,384]. Each batch size runs once untimed, then
for at least --seconds (at least 3 runs); on CUDA every timed run ends with a synchronise.
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_musetalk as em  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", choices=["fp32", "fp16"], default="fp32")
    ap.add_argument("--batches", default="1,4,8,16")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--random-tiny", action="store_true", help="the reduced-width test models")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    dev = torch.device(a.device)
    unet, vae, _, _ = (em.tiny_models if a.random_tiny else em.full_models)(a.seed)
    dt = torch.float16 if a.precision == "fp16" else torch.float32
    unet, vae = unet.to(dev, dt), vae.to(dev, dt)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"PyTorch {torch.__version__} eager, {name}, {a.precision}, "
          f"{'tiny' if a.random_tiny else 'full-width'} random-weight UNet + VAE decoder:")
    print("   batch  ms per batch  frames/s")
    gen = torch.Generator().manual_seed(a.seed + 7)
    for b in [int(x) for x in a.batches.split(",") if x]:
        sample = torch.randn(b, 8, 32, 32, generator=gen).to(dev, dt)
        t = torch.zeros(b, dtype=torch.int64, device=dev)
        feats = torch.randn(b, 50, 384, generator=gen).to(dev, dt)

        def once():
            latent = unet(sample, t, encoder_hidden_states=feats).sample
            return vae.decode(latent / 0.18215).sample.float().cpu()

        once()
        sync()
        runs, start = 0, time.perf_counter()
        while runs < 3 or time.perf_counter() - start < a.seconds:
            once()
            sync()
            runs += 1
        per = (time.perf_counter() - start) / runs
        print(f"{b:>8}  {per * 1e3:>12.1f}  {b / per:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
