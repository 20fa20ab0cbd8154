#!/usr/bin/env python3
"""How far MuseTalk's UNet input and output move between the VAE posterior's sample (what
MuseTalk's `encode_latents` uses) and its mean (what our avatar preparation stores).

vae_posterior.py [--seeds 3] [--full]

Random-weight MuseTalk architectures (models/export_musetalk.py's configs: the UNet at full
width with --full, else reduced), several seeds. Per seed: a smooth random 256x256 image and
its lower-half-masked copy through the VAE encoder; UNet input = masked latent ++ reference
latent, both * 0.18215, once from posterior samples and once from posterior means; random
[50, 384] audio features. Reported: relative L2 change of the UNet input and output
(||x_sample - x_mean|| / ||x_mean||). A random-weight VAE has a posterior std far larger than
a trained one's, so the same is also reported with the sample replaced by mean + s * eps for
fixed std scales s (what the trained VAE's std would give), through the same UNet.
Needs torch + diffusers (models/requirements-export.txt).
"""
import argparse
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from export_musetalk import MUSETALK_UNET, SD_VAE  # noqa: E402
from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402


def rel(a, b):
    return float((a - b).norm() / b.norm())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--full", action="store_true", help="full-width UNet (slow on CPU)")
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    for seed in range(a.seeds):
        torch.manual_seed(seed)
        ucfg = dict(MUSETALK_UNET)
        if not a.full:
            ucfg.update(block_out_channels=[64, 128, 256, 256], layers_per_block=1)
        unet = UNet2DConditionModel(**ucfg).eval()
        vae = AutoencoderKL(**SD_VAE).eval()
        g = torch.Generator().manual_seed(100 + seed)
        img = torch.nn.functional.interpolate(torch.rand(1, 3, 16, 16, generator=g) * 2 - 1,
                                              size=256, mode="bicubic").clamp(-1, 1)
        masked = img.clone()
        masked[:, :, 128:] = -1
        post_m = vae.encode(masked).latent_dist
        post_r = vae.encode(img).latent_dist
        audio = torch.randn(1, 50, 384, generator=g)
        t = torch.zeros(1, dtype=torch.long)

        def unet_io(lm, lr):
            x = torch.cat([lm, lr], 1) * 0.18215
            return x, unet(x, t, encoder_hidden_states=audio).sample

        x_mean, y_mean = unet_io(post_m.mean, post_r.mean)
        x_s, y_s = unet_io(post_m.sample(g), post_r.sample(g))
        std = float(post_r.std.mean())
        print(f"seed {seed}: random VAE posterior std mean {std:.3f}, |mean| mean "
              f"{float(post_r.mean.abs().mean()):.3f}: sample vs mean: UNet input moves "
              f"{rel(x_s, x_mean):.3f}, output {rel(y_s, y_mean):.3f} (relative L2)")
        for s in (1e-3, 1e-2, 1e-1):
            eps_m = torch.randn(post_m.mean.shape, generator=g)
            eps_r = torch.randn(post_r.mean.shape, generator=g)
            x_s, y_s = unet_io(post_m.mean + s * eps_m, post_r.mean + s * eps_r)
            print(f"  std {s:g}: UNet input moves {rel(x_s, x_mean):.4f}, output "
                  f"{rel(y_s, y_mean):.4f}")


if __name__ == "__main__":
    main()
