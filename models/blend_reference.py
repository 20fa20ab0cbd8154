#!/usr/bin/env python3
"""MuseTalk's paste-back, in Python with OpenCV, as the reference for `avatarblend`.

What MuseTalk's realtime inference does per frame, in its own terms (BGR images):
  res = cv2.resize(crop, (x2 - x1, y2 - y1))            # INTER_LINEAR
  out = get_image_blending(frame, res, face_box, mask, crop_box)
`get_image_blending` copies the crop box of the frame, puts the resized face in the face box
and blends that region over the frame with mask/255. Two variants exist in MuseTalk's
history: OpenCV's `blendLinear` (first release) and Pillow's masked paste (v1.5). Both are
here: `cv` (OpenCV) and `pil` (Pillow's integer arithmetic, emulated with numpy so that
Pillow is not needed).

Inputs are .npy files (values 0..255, any dtype): frame [H,W,3] RGB, crop [256,256,3] RGB,
mask [bh,bw].
  blend_reference.py --frame f.npy --crop c.npy --mask m.npy \
      --face-box x1 y1 x2 y2 --blend-box x1 y1 x2 y2 --out out.npy [--variant cv|pil]
With --bench N it times N blends of the same inputs (one thread) and prints ms per frame.
"""
import argparse
import copy
import time

import cv2
import numpy as np


def blend_cv(image, face, face_box, mask_array, crop_box):
    """MuseTalk's get_image_blending, OpenCV variant (BGR in, BGR out)."""
    body = image
    x, y, x1, y1 = face_box
    x_s, y_s, x_e, y_e = crop_box
    face_large = copy.deepcopy(body[y_s:y_e, x_s:x_e])
    face_large[y - y_s:y1 - y_s, x - x_s:x1 - x_s] = face
    mask = (mask_array / 255).astype(np.float32)
    body[y_s:y_e, x_s:x_e] = cv2.blendLinear(face_large, body[y_s:y_e, x_s:x_e], mask, 1 - mask)
    return body


def blend_pil(image, face, face_box, mask_array, crop_box):
    """MuseTalk v1.5's get_image_blending (Pillow paste with a mask), same arithmetic."""
    body = image.copy()
    x, y, x1, y1 = face_box
    x_s, y_s, x_e, y_e = crop_box
    face_large = body[y_s:y_e, x_s:x_e].copy()
    face_large[y - y_s:y1 - y_s, x - x_s:x1 - x_s] = face
    m = mask_array.astype(np.uint32)[:, :, None]
    dst = body[y_s:y_e, x_s:x_e].astype(np.uint32)
    t = dst * (255 - m) + face_large.astype(np.uint32) * m + 128
    body[y_s:y_e, x_s:x_e] = (((t >> 8) + t) >> 8).astype(np.uint8)
    return body


def paste_back(frame_rgb, crop_rgb, mask, face_box, blend_box, variant):
    ori = frame_rgb[:, :, ::-1].copy()  # MuseTalk works in BGR
    res = crop_rgb[:, :, ::-1].copy()
    x1, y1, x2, y2 = face_box
    res = cv2.resize(res.astype(np.uint8), (x2 - x1, y2 - y1))
    fn = blend_cv if variant == "cv" else blend_pil
    out = fn(ori, res, face_box, mask, blend_box)
    return out[:, :, ::-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frame", required=True)
    ap.add_argument("--crop", required=True)
    ap.add_argument("--mask", required=True)
    ap.add_argument("--face-box", type=int, nargs=4, required=True)
    ap.add_argument("--blend-box", type=int, nargs=4, required=True)
    ap.add_argument("--variant", choices=["cv", "pil"], default="cv")
    ap.add_argument("--out")
    ap.add_argument("--f32-out", action="store_true", help="write --out as float32")
    ap.add_argument("--bench", type=int, default=0)
    a = ap.parse_args()
    cv2.setNumThreads(1)
    # Any numeric dtype holding 0..255 (the Rust tests write f32 .npy files).
    frame = np.load(a.frame).astype(np.uint8)
    crop = np.load(a.crop).astype(np.uint8)
    mask = np.load(a.mask).astype(np.uint8)
    out = paste_back(frame, crop, mask, a.face_box, a.blend_box, a.variant)
    if a.out:
        out = np.ascontiguousarray(out)
        np.save(a.out, out.astype(np.float32) if a.f32_out else out)
    if a.bench:
        # What a realtime loop does per frame: copy the avatar frame, resize, blend.
        t0 = time.perf_counter()
        for _ in range(a.bench):
            f = copy.deepcopy(frame)
            paste_back(f, crop, mask, a.face_box, a.blend_box, a.variant)
        dt = (time.perf_counter() - t0) / a.bench
        print(f"{a.variant} {frame.shape[1]}x{frame.shape[0]}: {dt * 1e3:.3f} ms/frame")


if __name__ == "__main__":
    main()
