#!/usr/bin/env python3
"""MuseTalk v1.5's face-parsing paste-back mask in Python (OpenCV, Pillow, ONNX Runtime): the
reference the Rust `avatar::parsing` module is tested against.

What MuseTalk does for each avatar frame (`get_image_prepare_material` with a `FaceParsing`):
the crop box (1.5x square around the face box) is cut from the frame with Pillow (black
outside it), resized to 512x512 (Pillow bilinear), normalised as torchvision does and parsed;
the parsing map becomes a 0/255 region (mode jaw, raw or neck), which is resized back to the
crop box (Pillow's default, bicubic), kept only inside the face box and below half the crop
box's height, and blurred with OpenCV's Gaussian of size int(0.1 * side // 2 * 2) + 1.

Modes of this script (arrays are .npy files; outputs are float32 holding 0..255 values):
  --parsing p.npy [--mode jaw] [--cheeks 90 90] --out region.npy
      the 512x512 region of a parsing map (uint8 class ids), morphology by OpenCV
  --resize img.npy --size W H --filter bilinear|bicubic --out r.npy
      Pillow's Image.resize of a uint8 [H,W] or [H,W,3] array
  --bench N --parsing p.npy --side S --face-box x1 y1 x2 y2 --out t.npy
      times MuseTalk's mask steps after the network (jaw region; back to an S x S crop, face
      box (in the crop), upper boundary, blur), best of N, one thread: saves [region_s, back_s]
  --frame f.npy --face-box x1 y1 x2 y2 --model face_parsing.onnx [--mode jaw] --out m.npy
      the whole mask, crop-box sized, for an RGB frame; --logits-out l.npy also saves the
      parsing map (class ids, [512,512])
"""
import argparse
import sys

import cv2
import numpy as np
from PIL import Image

SIZE = 512
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def jaw_cone():
    """The 33x33 cone kernel: rows 10..20 widen by 2 from the centre, rows 21..32 stay wide."""
    cone, tail = 21, 12
    size = cone + tail
    k = np.zeros((size, size), np.uint8)
    mid = size // 2
    for row in range(cone // 2, cone):
        half = row - cone // 2
        k[row, mid - half:mid + half + 1] = 1
    base = int(k[cone - 1].sum())
    k[cone:, mid - base // 2:mid + base // 2 + 1] = 1
    return k


def cheek_mask(left, right):
    m = np.zeros((SIZE, SIZE), np.uint8)
    cv2.rectangle(m, (0, 0), (SIZE // 2 - left, SIZE), 255, -1)
    cv2.rectangle(m, (SIZE // 2 + right, 0), (SIZE, SIZE), 255, -1)
    return m


def region(parsing, mode, cheeks):
    """0/255 uint8 region of a parsing map of class ids."""
    parsing = parsing.astype(np.int64)
    mouth = np.isin(parsing, [11, 12, 13])
    if mode == "raw":
        keep = (parsing == 1) | mouth
    elif mode == "neck":
        keep = np.isin(parsing, [1, 14]) | mouth
    else:
        skin = ((parsing == 1) * 255).astype(np.uint8)
        dilated = cv2.dilate(skin, jaw_cone(), iterations=1)
        eroded = cv2.erode(dilated, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (35, 3)),
                           iterations=2)
        cm = cheek_mask(*cheeks)
        face = cv2.bitwise_or(cv2.bitwise_and(eroded, cm),
                              cv2.bitwise_and(dilated, cv2.bitwise_not(cm)))
        keep = ((face == 255) & (parsing != 10)) | mouth
    return np.where(keep, 255, 0).astype(np.uint8)


PIL_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def mask_for_frame(frame, face_box, model, mode, cheeks):
    import onnxruntime as ort

    x1, y1, x2, y2 = face_box
    xc, yc = (x1 + x2) // 2, (y1 + y2) // 2
    s = int(max(x2 - x1, y2 - y1) // 2 * 1.5)
    crop = (xc - s, yc - s, xc + s, yc + s)
    large = Image.fromarray(frame).crop(crop)
    side = large.size[0]
    small = np.asarray(large.resize((SIZE, SIZE), Image.BILINEAR)).astype(np.float32) / 255.0
    x = ((small - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32)
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    logits = sess.run(["logits"], {"image": x})[0][0]
    parsing = logits.argmax(0).astype(np.uint8)
    reg = Image.fromarray(region(parsing, mode, cheeks)).resize((side, side))
    fx1, fy1, fx2, fy2 = x1 - crop[0], y1 - crop[1], x2 - crop[0], y2 - crop[1]
    pasted = Image.new("L", (side, side), 0)
    pasted.paste(reg.crop((fx1, fy1, fx2, fy2)), (fx1, fy1, fx2, fy2))
    top = int(side * 0.5)
    kept = Image.new("L", (side, side), 0)
    kept.paste(pasted.crop((0, top, side, side)), (0, top))
    k = int(0.1 * side // 2 * 2) + 1
    return cv2.GaussianBlur(np.array(kept), (k, k), 0), parsing


def mask_back(region_512, side, box):
    """The steps after the region: back to the crop, face box, upper boundary, blur."""
    reg = Image.fromarray(region_512).resize((side, side))
    pasted = Image.new("L", (side, side), 0)
    pasted.paste(reg.crop(tuple(box)), tuple(box))
    top = int(side * 0.5)
    kept = Image.new("L", (side, side), 0)
    kept.paste(pasted.crop((0, top, side, side)), (0, top))
    k = int(0.1 * side // 2 * 2) + 1
    return cv2.GaussianBlur(np.array(kept), (k, k), 0)


def bench(parsing, side, box, n):
    import time

    cv2.setNumThreads(1)
    best = [float("inf"), float("inf")]
    for _ in range(n):
        t = time.perf_counter()
        reg = region(parsing, "jaw", (90, 90))
        t1 = time.perf_counter()
        mask_back(reg, side, box)
        t2 = time.perf_counter()
        best = [min(best[0], t1 - t), min(best[1], t2 - t1)]
    return np.array(best, dtype=np.float32)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parsing")
    ap.add_argument("--resize")
    ap.add_argument("--frame")
    ap.add_argument("--size", type=int, nargs=2)
    ap.add_argument("--filter", choices=sorted(PIL_FILTERS), default="bicubic")
    ap.add_argument("--face-box", type=int, nargs=4)
    ap.add_argument("--model")
    ap.add_argument("--mode", choices=["jaw", "raw", "neck"], default="jaw")
    ap.add_argument("--cheeks", type=int, nargs=2, default=[90, 90])
    ap.add_argument("--logits-out")
    ap.add_argument("--bench", type=int)
    ap.add_argument("--side", type=int, default=256)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    if a.bench:
        out = bench(np.load(a.parsing).astype(np.uint8), a.side, a.face_box, a.bench)
    elif a.parsing:
        out = region(np.load(a.parsing), a.mode, a.cheeks)
    elif a.resize:
        img = np.load(a.resize).astype(np.uint8)
        out = np.asarray(Image.fromarray(img).resize(tuple(a.size), PIL_FILTERS[a.filter]))
    elif a.frame:
        out, parsing = mask_for_frame(np.load(a.frame).astype(np.uint8), a.face_box, a.model,
                                      a.mode, a.cheeks)
        if a.logits_out:
            np.save(a.logits_out, parsing.astype(np.float32))
    else:
        ap.error("one of --parsing, --resize, --frame")
    np.save(a.out, out.astype(np.float32))
    return 0


if __name__ == "__main__":
    sys.exit(main())
