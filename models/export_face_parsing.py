#!/usr/bin/env python3
"""Exports the BiSeNet face-parsing network of MuseTalk v1.5 to the ONNX file that
`livetalk prepare-avatar --face-parsing FILE.onnx` loads.

Official weights (downloaded by the user, see models/README.md): `79999_iter.pth` of
face-parsing.PyTorch, the file MuseTalk's download script puts at
`models/face-parse-bisent/79999_iter.pth`:
  export_face_parsing.py --weights models/face-parse-bisent/79999_iter.pth \
      --out ~/.cache/livetalk/models/face-parsing [--fp16] [--check]

MuseTalk also downloads `resnet18-5c106cde.pth` (ImageNet ResNet-18) next to it: it is NOT
needed. BiSeNet's constructor loads it only as a starting point before the checkpoint
overwrites every weight; 79999_iter.pth holds the backbone too, and this script never
reads any other file.

Checking the export without the real file (the same architecture, seeded random weights,
batch-norm running statistics that are not the identity):
  export_face_parsing.py --random --out DIR --check

Writes (opset 17, ir_version 8, batch dimension symbolic):
  face_parsing.onnx       image f32 [batch,3,512,512] -> logits f32 [batch,19,512,512]
  face_parsing_fp16.onnx  with --fp16: fp16 weights and compute, f32 input and output.

  image:  RGB scaled to [0,1], then normalised with the ImageNet mean (0.485, 0.456, 0.406)
          and std (0.229, 0.224, 0.225) by the caller (torchvision ToTensor + Normalize, as
          MuseTalk's FaceParsing does after resizing the face crop to 512x512, bilinear).
  logits: BiSeNet's main output only (the first of the three its forward returns), already
          upsampled to 512x512 (bilinear, align_corners=True); the caller takes the argmax
          over axis 1: the 19 CelebAMask-HQ classes (0 background, 1 skin, 10 nose,
          11 mouth, 12 upper lip, 13 lower lip, 14 neck, ...). The two auxiliary heads
          (conv_out16, conv_out32) are not exported.

--check runs PyTorch and ONNX Runtime on the same seeded random input (batch 1 and 2),
prints the max abs difference of the logits and the fraction of pixels whose argmax agrees,
and fails above --tolerance (default 1e-3) or below 0.999 agreement; it also checks the
names, shapes, opset and IR version of the file. fp16 figures are printed only.

Needs torch + onnx + onnxruntime (models/requirements-export.txt), in a venv of its own.
"""
import argparse
import copy
import os
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

OPSET = 17
IR_VERSION = 8
N_CLASSES = 19
SIZE = 512


# --- The network. Module and attribute names are those of face-parsing.PyTorch (the
# state-dict keys of 79999_iter.pth), so the checkpoint loads with strict=True.


class ConvBNReLU(nn.Module):
    """conv (no bias) -> batch norm -> ReLU."""

    def __init__(self, cin, cout, ks=3, stride=1, padding=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, ks, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    """ResNet basic block; a 1x1 projection on the shortcut when the shape changes."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(skip + y)


def res_stage(cin, cout, stride):
    return nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1))


class Resnet18(nn.Module):
    """ResNet-18 without its classifier; returns the 1/8, 1/16 and 1/32 feature maps."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = res_stage(64, 64, 1)
        self.layer2 = res_stage(64, 128, 2)
        self.layer3 = res_stage(128, 256, 2)
        self.layer4 = res_stage(256, 512, 2)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, 3, 2, 1)
        x = self.layer1(x)
        f8 = self.layer2(x)
        f16 = self.layer3(f8)
        f32 = self.layer4(f16)
        return f8, f16, f32


def hw(x):
    """Height and width as Python ints. While tracing for ONNX they become constants (the
    graph is for 512x512 only), which keeps every shape but the batch static."""
    if not torch.jit.is_tracing():
        return tuple(x.shape[2:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return tuple(int(d) for d in x.shape[2:])


def global_mean(x):
    # An average pool over the whole map, as the original computes it: bit-identical results
    # (x.mean sums in another order, ~1e-6 relative differences).
    return F.avg_pool2d(x, hw(x))


class AttentionRefinementModule(nn.Module):
    """ConvBNReLU, then a channel gate: sigmoid(BN(1x1 conv(global average)))."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = ConvBNReLU(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x):
        feat = self.conv(x)
        gate = torch.sigmoid(self.bn_atten(self.conv_atten(global_mean(feat))))
        return feat * gate


def up_nearest(x, like):
    return F.interpolate(x, size=hw(like), mode="nearest")


class ContextPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.resnet = Resnet18()
        self.arm16 = AttentionRefinementModule(256, 128)
        self.arm32 = AttentionRefinementModule(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, ks=1, padding=0)

    def forward(self, x):
        f8, f16, f32 = self.resnet(x)
        # The global context is 1x1: adding it broadcasts, which is what upsampling it to
        # the 1/32 map (nearest) and adding amounts to.
        ctx = self.conv_avg(global_mean(f32))
        s32 = self.arm32(f32) + ctx
        up32 = self.conv_head32(up_nearest(s32, f16))
        s16 = self.arm16(f16) + up32
        up16 = self.conv_head16(up_nearest(s16, f8))
        return f8, up16, up32  # 1/8, 1/8, 1/16


class FeatureFusionModule(nn.Module):
    """concat -> ConvBNReLU(1x1) -> x + x * SE-style gate."""

    def __init__(self, cin, cout):
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, ks=1, padding=0)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, a, b):
        feat = self.convblk(torch.cat([a, b], dim=1))
        gate = torch.sigmoid(self.conv2(F.relu(self.conv1(global_mean(feat)))))
        return feat + feat * gate


class BiSeNetOutput(nn.Module):
    def __init__(self, cin, mid, n_classes):
        super().__init__()
        self.conv = ConvBNReLU(cin, mid)
        self.conv_out = nn.Conv2d(mid, n_classes, 1, bias=False)

    def forward(self, x):
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """face-parsing.PyTorch's BiSeNet (the spatial path replaced by the ResNet 1/8 map).

    forward(x) returns the main logits at the input size; forward_all(x) the main and the
    two auxiliary heads, like the original's forward."""

    def __init__(self, n_classes=N_CLASSES):
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusionModule(256, 256)
        self.conv_out = BiSeNetOutput(256, 256, n_classes)
        self.conv_out16 = BiSeNetOutput(128, 64, n_classes)
        self.conv_out32 = BiSeNetOutput(128, 64, n_classes)

    def up(self, t, size):
        return F.interpolate(t, size=size, mode="bilinear", align_corners=True)

    def forward(self, x):
        f8, cp8, _ = self.cp(x)
        return self.up(self.conv_out(self.ffm(f8, cp8)), hw(x))

    def forward_all(self, x):
        f8, cp8, cp16 = self.cp(x)
        size = hw(x)
        return (self.up(self.conv_out(self.ffm(f8, cp8)), size),
                self.up(self.conv_out16(cp8), size), self.up(self.conv_out32(cp16), size))


# --- Weights.


def load_official(path):
    net = BiSeNet()
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and not any(
            k.startswith("cp.") for k in state):
        state = state["state_dict"]
    net.load_state_dict(state, strict=True)
    return net.eval()


def randomize(net, seed):
    """Seeded random weights with meaningful batch-norm statistics: random convolutions
    and affine parameters, running statistics measured on random images in training
    mode and then perturbed, so that no batch norm is the identity and activations keep
    a sensible scale through the network."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=gen))
                m.bias.copy_(0.2 * torch.randn(n, generator=gen))
                m.momentum = None  # cumulative average over the calibration passes
                m.reset_running_stats()
        net.train()
        for _ in range(2):
            net.forward_all(example_input(2, gen))
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                std = m.running_var.sqrt()
                m.running_mean.add_(0.1 * std * torch.randn(n, generator=gen))
                m.running_var.mul_(0.8 + 0.4 * torch.rand(n, generator=gen))
                m.momentum = 0.1
    return net.eval()


def example_input(batch, gen):
    """A normalised random image: smooth colour blobs plus noise, in [0,1] before the
    ImageNet normalisation."""
    low = torch.rand(batch, 3, 8, 8, generator=gen)
    img = F.interpolate(low, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    img = (img + 0.1 * torch.randn(batch, 3, SIZE, SIZE, generator=gen)).clamp(0, 1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (img - mean) / std


# --- Export and check.


class HalfWrapper(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, image):
        return self.net(image.half()).float()


def export(module, path):
    import onnx

    torch.onnx.export(
        module,
        (example_input(1, torch.Generator().manual_seed(0)),),
        path,
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=OPSET,
        do_constant_folding=True,
        dynamo=False,
    )
    model = onnx.load(path)
    # The final Resize gets its output size from the input's (symbolic) batch, so the
    # exporter cannot infer the output's other dims and names them itself: write the known
    # [batch, 19, 512, 512].
    out_dims = model.graph.output[0].type.tensor_type.shape.dim
    for d, want in zip(out_dims, ("batch", N_CLASSES, SIZE, SIZE)):
        d.Clear()
        if isinstance(want, str):
            d.dim_param = want
        else:
            d.dim_value = want
    # ONNX Runtime 1.31 loads IR 8; torch may write a newer one.
    model.ir_version = IR_VERSION
    onnx.save(model, path)


def check_contract(path):
    import onnx

    model = onnx.load(path)
    onnx.checker.check_model(model)
    errors = []

    def dims(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    want = dict(image=["batch", 3, SIZE, SIZE], logits=["batch", N_CLASSES, SIZE, SIZE])
    for kind, vals in (("input", model.graph.input), ("output", model.graph.output)):
        if len(vals) != 1:
            errors.append(f"{len(vals)} {kind}s")
        for v in vals:
            if v.name not in want:
                errors.append(f"unexpected {kind} {v.name}")
                continue
            if v.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
                errors.append(f"{v.name} is not float32")
            if dims(v) != want[v.name]:
                errors.append(f"{v.name} dims {dims(v)} != {want[v.name]}")
    opset = {o.domain: o.version for o in model.opset_import}.get("", None)
    if opset != OPSET:
        errors.append(f"opset {opset}")
    if model.ir_version != IR_VERSION:
        errors.append(f"ir_version {model.ir_version}")
    for e in errors:
        print(f"{os.path.basename(path)}: contract: {e}  FAIL")
    if not errors:
        print(f"{os.path.basename(path)}: contract ok (image [batch,3,{SIZE},{SIZE}] -> logits "
              f"[batch,{N_CLASSES},{SIZE},{SIZE}], opset {OPSET}, ir_version {IR_VERSION})")
    return not errors


def check(net, path, tol, seed, hard=True):
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed + 1)
    ok = True
    for batch in (1, 2):
        x = example_input(batch, gen)
        got = sess.run(["logits"], {"image": x.numpy()})[0]
        with torch.no_grad():
            want = net(x).numpy()
        if got.shape != want.shape:
            print(f"{os.path.basename(path)}: batch {batch}: shape {got.shape} != {want.shape}  FAIL")
            ok = False
            continue
        diff = float(np.abs(got - want).max())
        agree = float((got.argmax(1) == want.argmax(1)).mean())
        classes = len(np.unique(want.argmax(1)))
        good = diff <= tol and agree >= 0.999
        print(f"{os.path.basename(path)}: batch {batch}: max |onnx - torch| = {diff:.3g} "
              f"(logits up to {float(np.abs(want).max()):.3g}), argmax agreement {agree:.6f} "
              f"({classes} classes present){'' if good or not hard else '  FAIL'}")
        ok &= good
    return ok or not hard


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="face-parsing.PyTorch / MuseTalk 79999_iter.pth")
    src.add_argument("--random", action="store_true", help="seeded random weights (for checking the export)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="folder to write face_parsing.onnx into")
    ap.add_argument("--fp16", action="store_true", help="also write face_parsing_fp16.onnx")
    ap.add_argument("--check", action="store_true", help="compare ONNX Runtime with PyTorch")
    ap.add_argument("--tolerance", type=float, default=1e-3, help="max abs logit difference (fp32)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = ap.parse_args()

    torch.set_grad_enabled(False)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    net = randomize(BiSeNet(), a.seed) if a.random else load_official(a.weights)
    os.makedirs(a.out, exist_ok=True)

    path = os.path.join(a.out, "face_parsing.onnx")
    export(net, path)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    half = None
    if a.fp16:
        half = os.path.join(a.out, "face_parsing_fp16.onnx")
        export(HalfWrapper(copy.deepcopy(net).half()), half)
        print(f"wrote {half} ({os.path.getsize(half)} bytes)")

    ok = True
    if a.check:
        ok &= check_contract(path)
        ok &= check(net, path, a.tolerance, a.seed)
        if half:
            ok &= check_contract(half)
            check(net, half, a.tolerance, a.seed, hard=False)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
