#!/usr/bin/env python3
"""Exports MuseTalk v1.5's UNet and the sd-vae-ft-mse VAE to the ONNX files `musetalk` loads.

Official weights (downloaded by the user, see models/README.md):
  export_musetalk.py --unet-weights models/musetalkV15/unet.pth \
      --unet-config models/musetalkV15/musetalk.json --vae-dir models/sd-vae \
      --out ~/.cache/livetalk/models/musetalk [--fp16] [--check]

Test fixtures (the real diffusers architectures at reduced widths, random seeded weights):
  export_musetalk.py --random-tiny --out tests/fixtures/musetalk-tiny --check

Benchmark models (the full-width v1.5 architectures, seeded random weights: the same FLOPs
and memory as the official ones, meaningless output):
  export_musetalk.py --random-full --out ~/.cache/livetalk/models/musetalk-random-full

Writes, with the contracts of src/inference/contract.rs (batch dimension symbolic):
  unet.onnx         sample f32 [batch,8,32,32], timestep i64 [batch],
                    encoder_hidden_states f32 [batch,50,384] -> latent f32 [batch,4,32,32]
  vae_decoder.onnx  latent f32 [batch,4,32,32] (already divided by 0.18215)
                    -> image f32 [batch,3,256,256] in [-1,1]
  vae_encoder.onnx  image f32 [batch,3,256,256] in [-1,1] -> latent f32 [batch,4,32,32]
                    (the posterior mean, unscaled: the caller multiplies by 0.18215)
  *_fp16.onnx       with --fp16: fp16 weights and compute, f32 inputs and outputs.

--check runs PyTorch and ONNX Runtime on the same random inputs and prints the max abs
difference of every fp32 file (fails above --tolerance, default 1e-4) and of the fp16 files
(reported only).

Needs torch + diffusers (models/requirements-export.txt), in a venv of its own: the normal
set-up and the tests do not need torch.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

OPSET = 17

# MuseTalk v1.5's UNet, as its musetalk.json describes it (only what differs from diffusers'
# defaults matters); the user's own file is read when exporting the official weights.
MUSETALK_UNET = dict(
    sample_size=64,
    in_channels=8,
    out_channels=4,
    down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    block_out_channels=[320, 640, 1280, 1280],
    layers_per_block=2,
    attention_head_dim=8,
    cross_attention_dim=384,
    flip_sin_to_cos=True,
    freq_shift=0,
    norm_num_groups=32,
)

# sd-vae-ft-mse's AutoencoderKL.
SD_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
    block_out_channels=[128, 256, 512, 512],
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
    sample_size=256,
    scaling_factor=0.18215,
)


class UNetOnnx(torch.nn.Module):
    def __init__(self, unet, half=False):
        super().__init__()
        self.unet = unet
        self.half_ = half

    def forward(self, sample, timestep, encoder_hidden_states):
        dt = torch.float16 if self.half_ else torch.float32
        out = self.unet(sample.to(dt), timestep, encoder_hidden_states=encoder_hidden_states.to(dt)).sample
        return out.float()


class VaeDecoderOnnx(torch.nn.Module):
    def __init__(self, vae, half=False):
        super().__init__()
        self.vae = vae
        self.half_ = half

    def forward(self, latent):
        dt = torch.float16 if self.half_ else torch.float32
        return self.vae.decode(latent.to(dt)).sample.float()


class VaeEncoderOnnx(torch.nn.Module):
    def __init__(self, vae, half=False):
        super().__init__()
        self.vae = vae
        self.half_ = half

    def forward(self, image):
        dt = torch.float16 if self.half_ else torch.float32
        return self.vae.encode(image.to(dt)).latent_dist.mean.float()


def tiny_models(seed):
    torch.manual_seed(seed)
    ucfg = dict(MUSETALK_UNET)
    ucfg.update(block_out_channels=[16, 16, 16, 16], layers_per_block=1, norm_num_groups=8)
    unet = UNet2DConditionModel(**ucfg)
    vcfg = dict(SD_VAE)
    vcfg.update(block_out_channels=[8, 16, 16, 16], layers_per_block=1, norm_num_groups=8)
    vae = AutoencoderKL(**vcfg)
    return unet.eval(), vae.eval(), ucfg, vcfg


def full_models(seed):
    torch.manual_seed(seed)
    ucfg, vcfg = dict(MUSETALK_UNET), dict(SD_VAE)
    return UNet2DConditionModel(**ucfg).eval(), AutoencoderKL(**vcfg).eval(), ucfg, vcfg


def official_models(unet_weights, unet_config, vae_dir):
    with open(unet_config) as f:
        ucfg = json.load(f)
    unet = UNet2DConditionModel(**ucfg)
    state = torch.load(unet_weights, map_location="cpu", weights_only=False)
    unet.load_state_dict(state)
    vae = AutoencoderKL.from_pretrained(vae_dir)
    return unet.eval(), vae.eval(), ucfg, dict(vae.config)


def example_inputs(batch, gen):
    return dict(
        unet=(
            torch.randn(batch, 8, 32, 32, generator=gen),
            torch.zeros(batch, dtype=torch.int64),
            torch.randn(batch, 50, 384, generator=gen),
        ),
        vae_decoder=(torch.randn(batch, 4, 32, 32, generator=gen) / 0.18215,),
        vae_encoder=(torch.rand(batch, 3, 256, 256, generator=gen) * 2 - 1,),
    )


NAMES = dict(
    unet=(["sample", "timestep", "encoder_hidden_states"], ["latent"]),
    vae_decoder=(["latent"], ["image"]),
    vae_encoder=(["image"], ["latent"]),
)


def export(module, args, path, name):
    inputs, outputs = NAMES[name]
    axes = {n: {0: "batch"} for n in inputs + outputs}
    torch.onnx.export(
        module,
        args,
        path,
        input_names=inputs,
        output_names=outputs,
        dynamic_axes=axes,
        opset_version=OPSET,
        do_constant_folding=True,
        dynamo=False,
    )


def check(module, args, path, tol, name):
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    inputs, _ = NAMES[name]
    feed = {n: a.numpy() for n, a in zip(inputs, args)}
    got = sess.run(None, feed)[0]
    with torch.no_grad():
        want = module(*args).numpy()
    diff = float(np.abs(got - want).max())
    scale = float(np.abs(want).max())
    ok = tol is None or diff <= tol
    print(f"{os.path.basename(path)}: batch {got.shape[0]}, max |onnx - torch| = {diff:.3g} "
          f"(outputs up to {scale:.3g}){'' if ok else '  FAIL'}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--unet-weights", help="MuseTalk v1.5 unet.pth")
    ap.add_argument("--unet-config", help="MuseTalk v1.5 musetalk.json")
    ap.add_argument("--vae-dir", help="sd-vae-ft-mse folder (config.json + diffusion_pytorch_model.bin)")
    ap.add_argument("--random-tiny", action="store_true", help="reduced-width real architectures, random weights")
    ap.add_argument("--random-full", action="store_true",
                    help="full-width real architectures, seeded random weights (for benchmarks)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--fp16", action="store_true", help="also write *_fp16.onnx")
    ap.add_argument("--only", help="comma-separated subset of unet,vae_decoder,vae_encoder to write")
    ap.add_argument("--device", default="cpu",
                    help="where PyTorch traces the models (cuda: faster for the full-width ones; "
                         "--check needs cpu)")
    ap.add_argument("--check", action="store_true", help="compare ONNX Runtime with PyTorch")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    a = ap.parse_args()

    torch.set_grad_enabled(False)
    random = a.random_tiny or a.random_full
    if a.random_tiny and a.random_full:
        ap.error("give --random-tiny or --random-full, not both")
    if a.random_tiny:
        unet, vae, ucfg, vcfg = tiny_models(a.seed)
    elif a.random_full:
        unet, vae, ucfg, vcfg = full_models(a.seed)
    else:
        if not (a.unet_weights and a.unet_config and a.vae_dir):
            ap.error("give --unet-weights, --unet-config and --vae-dir, or --random-tiny/--random-full")
        unet, vae, ucfg, vcfg = official_models(a.unet_weights, a.unet_config, a.vae_dir)
    os.makedirs(a.out, exist_ok=True)
    gen = torch.Generator().manual_seed(a.seed + 1)
    modules = dict(unet=UNetOnnx(unet), vae_decoder=VaeDecoderOnnx(vae), vae_encoder=VaeEncoderOnnx(vae))
    half_modules = {}
    if a.fp16:
        import copy

        hu, hv = copy.deepcopy(unet).half(), copy.deepcopy(vae).half()
        half_modules = dict(unet=UNetOnnx(hu, True), vae_decoder=VaeDecoderOnnx(hv, True),
                            vae_encoder=VaeEncoderOnnx(hv, True))
    if a.check and a.device != "cpu":
        ap.error("--check compares on the CPU: leave --device out")
    dev = torch.device(a.device)

    def on_device(args):
        return tuple(t.to(dev) for t in args)

    if a.only:
        wanted = [n.strip() for n in a.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in modules]
        if unknown:
            ap.error(f"--only: unknown {', '.join(unknown)} (expected {', '.join(modules)})")
        modules = {n: m for n, m in modules.items() if n in wanted}
    ok = True
    for name, module in modules.items():
        path = os.path.join(a.out, f"{name}.onnx")
        export(module.to(dev), on_device(example_inputs(1, gen)[name]), path, name)
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
        if a.fp16:
            # The same graph traced in half precision; the wrapper casts at the edges so
            # that inputs and outputs stay f32.
            half = os.path.join(a.out, f"{name}_fp16.onnx")
            export(half_modules[name].to(dev), on_device(example_inputs(1, gen)[name]), half, name)
            print(f"wrote {half} ({os.path.getsize(half)} bytes)")
        if a.check:
            args = example_inputs(2, gen)[name]
            ok &= check(module, args, path, a.tolerance, name)
            if a.fp16:
                check(module, args, os.path.join(a.out, f"{name}_fp16.onnx"), None, name)
    meta = dict(
        source="random-tiny" if a.random_tiny else "random-full" if a.random_full else "official",
        seed=a.seed if random else None,
        unet_config={k: v for k, v in ucfg.items() if not k.startswith("_")},
        vae_config={k: v for k, v in vcfg.items() if not k.startswith("_")},
        opset=OPSET,
        torch=torch.__version__,
    )
    with open(os.path.join(a.out, "export.json"), "w") as f:
        json.dump(meta, f, indent=1, default=str)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
