//! Paste-back of a generated face crop into a full avatar frame, as MuseTalk does it.
//!
//! MuseTalk resizes the 256x256 crop to the face box with OpenCV's `INTER_LINEAR`, puts it into
//! a copy of the frame's blend box (its "crop box", the face box expanded 1.5x) and blends that
//! region over the frame with the feathered mask (`get_image_blending`):
//! `out = crop * m + frame * (1 - m)`, `m = mask / 255`. Outside the face box the pasted
//! region equals the frame, so only face-box pixels can change: that is all this module touches.
//!
//! The resize follows OpenCV's fixed-point bilinear scheme (half-pixel centres, 11-bit
//! weights, edge clamping), and the blend rounds like Pillow's masked paste (what MuseTalk v1.5
//! uses); OpenCV's `blendLinear` (older MuseTalk) agrees within one level.
//! Free of GStreamer; the `avatarblend` element is glue around it.

use crate::avatar::{BBox, ImageRef};

/// Side of MuseTalk's square face crop.
pub const CROP_SIZE: usize = 256;

const COEF_BITS: u32 = 11;
const COEF_SCALE: i32 = 1 << COEF_BITS;

/// OpenCV `INTER_LINEAR` sampling of one axis: for each destination position, the first
/// source index and the two fixed-point weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxisTable {
    pub src_len: usize,
    pub index: Vec<u32>,
    pub weight: Vec<[i32; 2]>,
}

impl AxisTable {
    pub fn new(src_len: usize, dst_len: usize) -> Self {
        assert!(src_len > 0 && dst_len > 0);
        let scale = src_len as f64 / dst_len as f64;
        let mut index = Vec::with_capacity(dst_len);
        let mut weight = Vec::with_capacity(dst_len);
        for d in 0..dst_len {
            // OpenCV computes the position in double and keeps it as float.
            let mut f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = f.floor() as i64;
            f -= s as f32;
            if s < 0 {
                s = 0;
                f = 0.0;
            }
            if s >= src_len as i64 - 1 {
                s = src_len as i64 - 1;
                f = 0.0;
            }
            let w0 = ((1.0 - f) * COEF_SCALE as f32).round() as i32;
            let w1 = (f * COEF_SCALE as f32).round() as i32;
            index.push(s as u32);
            weight.push([w0, w1]);
        }
        Self {
            src_len,
            index,
            weight,
        }
    }

    fn next(&self, s: u32) -> usize {
        (s as usize + 1).min(self.src_len - 1)
    }
}

/// Bilinear resize of packed 3-channel images with OpenCV's `INTER_LINEAR` arithmetic, with
/// its tables kept for the next call of the same size (the face box changes little).
#[derive(Debug, Default)]
pub struct Resizer {
    tables: Option<(usize, usize, usize, usize, AxisTable, AxisTable)>,
    rows: Vec<i32>,
}

impl Resizer {
    /// Resizes `src` (`sw` x `sh`, 3 channels, `src_stride` bytes a row) into `dst` (`dw` x `dh`,
    /// packed: stride `dw * 3`).
    #[allow(clippy::too_many_arguments)]
    pub fn resize(
        &mut self,
        src: &[u8],
        sw: usize,
        sh: usize,
        src_stride: usize,
        dst: &mut [u8],
        dw: usize,
        dh: usize,
    ) {
        assert!(src.len() >= (sh - 1) * src_stride + sw * 3);
        assert!(dst.len() >= dw * dh * 3);
        let fresh = !matches!(&self.tables, Some((a, b, c, d, _, _)) if (*a, *b, *c, *d) == (sw, sh, dw, dh));
        if fresh {
            self.tables = Some((
                sw,
                sh,
                dw,
                dh,
                AxisTable::new(sw, dw),
                AxisTable::new(sh, dh),
            ));
        }
        let (_, _, _, _, xt, yt) = self.tables.as_ref().unwrap();
        // Horizontal pass over every source row a destination row needs.
        let row_len = dw * 3;
        self.rows.resize(sh * row_len, 0);
        let mut needed = vec![false; sh];
        for &s in &yt.index {
            needed[s as usize] = true;
            needed[yt.next(s)] = true;
        }
        for (sy, _) in needed.iter().enumerate().filter(|(_, n)| **n) {
            let srow = &src[sy * src_stride..sy * src_stride + sw * 3];
            let hrow = &mut self.rows[sy * row_len..(sy + 1) * row_len];
            for (dx, out) in hrow.chunks_exact_mut(3).enumerate() {
                let s0 = xt.index[dx] as usize;
                let s1 = xt.next(xt.index[dx]);
                let [w0, w1] = xt.weight[dx];
                for c in 0..3 {
                    out[c] = srow[s0 * 3 + c] as i32 * w0 + srow[s1 * 3 + c] as i32 * w1;
                }
            }
        }
        // Vertical pass.
        const SHIFT: u32 = COEF_BITS * 2;
        for dy in 0..dh {
            let s0 = yt.index[dy] as usize;
            let s1 = yt.next(yt.index[dy]);
            let [w0, w1] = yt.weight[dy];
            let r0 = &self.rows[s0 * row_len..(s0 + 1) * row_len];
            let r1 = &self.rows[s1 * row_len..(s1 + 1) * row_len];
            let out = &mut dst[dy * row_len..(dy + 1) * row_len];
            for ((o, &a), &b) in out.iter_mut().zip(r0).zip(r1) {
                let v = (a as i64 * w0 as i64 + b as i64 * w1 as i64 + (1 << (SHIFT - 1))) >> SHIFT;
                *o = v.clamp(0, 255) as u8;
            }
        }
    }
}

/// `round(a * (255 - m) / 255 + b * m / 255)`, exactly as Pillow's masked paste computes it.
#[inline(always)]
fn mix(a: u8, b: u8, m: u32) -> u8 {
    let t = a as u32 * (255 - m) + b as u32 * m + 128;
    (((t >> 8) + t) >> 8) as u8
}

/// Scales a mask value by a 0..=256 weight (256: unchanged).
#[inline(always)]
fn scale_mask(m: u8, weight: u32) -> u32 {
    if weight >= 256 {
        m as u32
    } else {
        (m as u32 * weight + 128) >> 8
    }
}

/// A problem with the geometry of a paste.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasteError {
    #[error("face box {face} is not inside blend box {blend}")]
    FaceOutsideBlend { face: BBox, blend: BBox },
    #[error("blend box {blend} is not inside the {width}x{height} frame")]
    BlendOutsideFrame {
        blend: BBox,
        width: u32,
        height: u32,
    },
    #[error("mask is {mw}x{mh}, blend box {blend} is {bw}x{bh}")]
    MaskSize {
        mw: u32,
        mh: u32,
        blend: BBox,
        bw: i32,
        bh: i32,
    },
    #[error("crop buffer holds {got} bytes, a 256x256 RGB crop with stride {stride} needs {need}")]
    CropSize {
        got: usize,
        need: usize,
        stride: usize,
    },
    #[error("frame buffer holds {got} bytes, {need} needed")]
    FrameSize { got: usize, need: usize },
}

/// What a paste needs besides the frame: the geometry of avatar frame `i`.
#[derive(Debug, Clone, Copy)]
pub struct Geometry<'a> {
    pub face_box: BBox,
    pub blend_box: BBox,
    /// Gray, blend-box sized.
    pub mask: ImageRef<'a>,
}

/// Reusable scratch memory of [`paste`].
#[derive(Debug, Default)]
pub struct Paster {
    resizer: Resizer,
    face: Vec<u8>,
}

impl Paster {
    /// Blends the 256x256 RGB `crop` into `frame` (RGB, `width` x `height`, `stride` bytes a
    /// row, already holding the avatar frame) at the face box, with the blend-box mask scaled
    /// by `weight` (0..=256; 256 = MuseTalk's blend, 0 = the frame unchanged).
    #[allow(clippy::too_many_arguments)]
    pub fn paste(
        &mut self,
        frame: &mut [u8],
        width: u32,
        height: u32,
        stride: usize,
        crop: &[u8],
        crop_stride: usize,
        geometry: &Geometry<'_>,
        weight: u32,
    ) -> Result<(), PasteError> {
        let Geometry {
            face_box: fb,
            blend_box: bb,
            mask,
        } = *geometry;
        if !bb.contains(&fb) || fb.is_empty() {
            return Err(PasteError::FaceOutsideBlend {
                face: fb,
                blend: bb,
            });
        }
        if !bb.inside(width, height) {
            return Err(PasteError::BlendOutsideFrame {
                blend: bb,
                width,
                height,
            });
        }
        if (mask.width as i32, mask.height as i32) != (bb.width(), bb.height())
            || mask.channels != 1
        {
            return Err(PasteError::MaskSize {
                mw: mask.width,
                mh: mask.height,
                blend: bb,
                bw: bb.width(),
                bh: bb.height(),
            });
        }
        let need = (CROP_SIZE - 1) * crop_stride + CROP_SIZE * 3;
        if crop_stride < CROP_SIZE * 3 || crop.len() < need {
            return Err(PasteError::CropSize {
                got: crop.len(),
                need,
                stride: crop_stride,
            });
        }
        let need = (height as usize - 1) * stride + width as usize * 3;
        if frame.len() < need || stride < width as usize * 3 {
            return Err(PasteError::FrameSize {
                got: frame.len(),
                need,
            });
        }
        if weight == 0 {
            return Ok(());
        }
        let (fw, fh) = (fb.width() as usize, fb.height() as usize);
        self.face.resize(fw * fh * 3, 0);
        self.resizer.resize(
            crop,
            CROP_SIZE,
            CROP_SIZE,
            crop_stride,
            &mut self.face,
            fw,
            fh,
        );
        let mstride = mask.width as usize;
        let (mx0, my0) = ((fb.x1 - bb.x1) as usize, (fb.y1 - bb.y1) as usize);
        for y in 0..fh {
            let mrow = &mask.data[(my0 + y) * mstride + mx0..(my0 + y) * mstride + mx0 + fw];
            let frow_start = (fb.y1 as usize + y) * stride + fb.x1 as usize * 3;
            let frow = &mut frame[frow_start..frow_start + fw * 3];
            let srow = &self.face[y * fw * 3..(y + 1) * fw * 3];
            for ((d, s), &m) in frow.chunks_exact_mut(3).zip(srow.chunks_exact(3)).zip(mrow) {
                let m = scale_mask(m, weight);
                if m == 0 {
                    continue;
                }
                if m == 255 {
                    d.copy_from_slice(s);
                    continue;
                }
                d[0] = mix(d[0], s[0], m);
                d[1] = mix(d[1], s[1], m);
                d[2] = mix(d[2], s[2], m);
            }
        }
        Ok(())
    }
}

/// Copies a packed RGB image into `dst` with `stride` bytes a row.
pub fn copy_frame<'a>(src: impl Into<ImageRef<'a>>, dst: &mut [u8], stride: usize) {
    let src = src.into();
    let row = src.stride();
    if stride == row {
        dst[..src.data.len()].copy_from_slice(src.data);
        return;
    }
    for (y, s) in src.data.chunks_exact(row).enumerate() {
        dst[y * stride..y * stride + row].copy_from_slice(s);
    }
}

/// Linear crossfade of `dst` towards `other` (both the same layout): `dst + (other - dst) * w`,
/// `w` in 0..=256.
pub fn crossfade(dst: &mut [u8], other: &[u8], weight: u32) {
    let w = weight.min(256);
    for (d, &o) in dst.iter_mut().zip(other) {
        *d = ((*d as u32 * (256 - w) + o as u32 * w + 128) >> 8) as u8;
    }
}

/// The speaking level of the crossfade between idle and speaking frames: 0 idle, 1 speaking,
/// moving by one frame duration over `transition` per frame, both ways.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fader {
    level: f64,
    step: f64,
}

impl Fader {
    /// `frame_ns`: duration of one frame; `transition_ns`: length of a full fade (0: none).
    pub fn new(frame_ns: u64, transition_ns: u64) -> Self {
        let step = if transition_ns == 0 {
            1.0
        } else {
            (frame_ns as f64 / transition_ns as f64).min(1.0)
        };
        Self { level: 0.0, step }
    }

    /// Advances one frame towards speaking or idle; returns the level as a 0..=256 weight.
    pub fn advance(&mut self, speaking: bool) -> u32 {
        self.level = if speaking {
            (self.level + self.step).min(1.0)
        } else {
            (self.level - self.step).max(0.0)
        };
        self.weight()
    }

    pub fn weight(&self) -> u32 {
        (self.level * 256.0).round() as u32
    }

    pub fn reset(&mut self) {
        self.level = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avatar::Image;

    fn crop_pattern() -> Vec<u8> {
        (0..CROP_SIZE * CROP_SIZE * 3)
            .map(|i| ((i * 7 + i / 768 * 3) % 256) as u8)
            .collect()
    }

    #[test]
    fn axis_table_matches_opencv_rules() {
        // Same size: identity, weight all on the first tap.
        let t = AxisTable::new(4, 4);
        assert_eq!(t.index, [0, 1, 2, 3]);
        assert!(t.weight.iter().all(|w| *w == [2048, 0]));
        // 2x upscale: positions -0.25, 0.25, 0.75, ... clamped at both ends.
        let t = AxisTable::new(2, 4);
        assert_eq!(t.index, [0, 0, 0, 1]);
        assert_eq!(t.weight, [[2048, 0], [1536, 512], [512, 1536], [2048, 0]]);
        // Each weight is rounded on its own, as OpenCV does: the sum is the scale +-1.
        let t = AxisTable::new(256, 173);
        assert!(t.weight.iter().all(|w| (w[0] + w[1] - 2048).abs() <= 1));
    }

    #[test]
    fn resize_same_size_is_identity_and_constant_stays_constant() {
        let crop = crop_pattern();
        let mut out = vec![0; crop.len()];
        let mut r = Resizer::default();
        r.resize(&crop, 256, 256, 768, &mut out, 256, 256);
        assert_eq!(out, crop);
        let flat = vec![77u8; 256 * 256 * 3];
        let mut out = vec![0; 100 * 313 * 3];
        r.resize(&flat, 256, 256, 768, &mut out, 100, 313);
        assert!(out.iter().all(|&v| v == 77));
    }

    #[test]
    fn mix_rounds_like_pillow() {
        for a in [0u8, 1, 100, 254, 255] {
            for b in [0u8, 3, 128, 255] {
                for m in 0..=255u32 {
                    let exact = (a as f64 * (255 - m) as f64 + b as f64 * m as f64) / 255.0;
                    let got = mix(a, b, m) as f64;
                    assert!(
                        (got - exact).abs() <= 0.5 + 1e-9,
                        "{a} {b} {m}: {got} vs {exact}"
                    );
                }
            }
        }
        assert_eq!(mix(10, 200, 0), 10);
        assert_eq!(mix(10, 200, 255), 200);
    }

    #[test]
    fn paste_touches_only_the_face_box_and_respects_the_mask() {
        let (w, h) = (64u32, 48u32);
        let frame = Image::from_fn(w, h, 3, |x, y, c| (x + y * 2 + c as u32 * 50) as u8);
        let fb = BBox::new(20, 10, 40, 30);
        let bb = BBox::new(10, 5, 50, 40);
        // Mask: 0 on the left half of the blend box, 255 on the right half.
        let mask = Image::from_fn(40, 35, 1, |x, _, _| if x < 20 { 0 } else { 255 });
        let crop = vec![200u8; 256 * 256 * 3];
        let mut out = frame.data.clone();
        let g = Geometry {
            face_box: fb,
            blend_box: bb,
            mask: mask.view(),
        };
        Paster::default()
            .paste(&mut out, w, h, w as usize * 3, &crop, 768, &g, 256)
            .unwrap();
        for y in 0..h as i32 {
            for x in 0..w as i32 {
                let i = (y as usize * w as usize + x as usize) * 3;
                let inside = x >= fb.x1 && x < fb.x2 && y >= fb.y1 && y < fb.y2;
                let expect = if inside && x - bb.x1 >= 20 {
                    [200, 200, 200]
                } else {
                    [frame.data[i], frame.data[i + 1], frame.data[i + 2]]
                };
                assert_eq!(&out[i..i + 3], &expect, "pixel {x},{y}");
            }
        }
        // Weight 0 leaves the frame as it is; half weight lands half way.
        let mut out0 = frame.data.clone();
        let mut p = Paster::default();
        p.paste(&mut out0, w, h, w as usize * 3, &crop, 768, &g, 0)
            .unwrap();
        assert_eq!(out0, frame.data);
        let mut half = frame.data.clone();
        p.paste(&mut half, w, h, w as usize * 3, &crop, 768, &g, 128)
            .unwrap();
        let i = (20 * w as usize + 35) * 3;
        let exp = (frame.data[i] as f64 * (255.0 - 128.0) + 200.0 * 128.0) / 255.0;
        assert!((half[i] as f64 - exp).abs() <= 1.0);
    }

    #[test]
    fn paste_refuses_bad_geometry() {
        let frame_img = Image::new(64, 48, 3);
        let mut frame = frame_img.data.clone();
        let crop = vec![0u8; 256 * 256 * 3];
        let mask = Image::new(40, 35, 1);
        let mut p = Paster::default();
        fn g(face_box: BBox, blend_box: BBox, m: &Image) -> Geometry<'_> {
            Geometry {
                face_box,
                blend_box,
                mask: m.view(),
            }
        }
        let bb = BBox::new(10, 5, 50, 40);
        let e = p
            .paste(
                &mut frame,
                64,
                48,
                192,
                &crop,
                768,
                &g(BBox::new(0, 0, 5, 5), bb, &mask),
                256,
            )
            .unwrap_err();
        assert!(matches!(e, PasteError::FaceOutsideBlend { .. }));
        let small = Image::new(10, 10, 1);
        let e = p
            .paste(
                &mut frame,
                64,
                48,
                192,
                &crop,
                768,
                &g(BBox::new(20, 10, 40, 30), bb, &small),
                256,
            )
            .unwrap_err();
        assert!(e.to_string().contains("mask is 10x10"), "{e}");
        let e = p
            .paste(
                &mut frame,
                64,
                48,
                192,
                &crop[..1000],
                768,
                &g(BBox::new(20, 10, 40, 30), bb, &mask),
                256,
            )
            .unwrap_err();
        assert!(matches!(e, PasteError::CropSize { .. }));
        let big = BBox::new(10, 5, 70, 40);
        let e = p
            .paste(
                &mut frame,
                64,
                48,
                192,
                &crop,
                768,
                &g(BBox::new(20, 10, 40, 30), big, &mask),
                256,
            )
            .unwrap_err();
        assert!(matches!(e, PasteError::BlendOutsideFrame { .. }));
    }

    #[test]
    fn fader_moves_both_ways() {
        // 40 ms frames, 100 ms transition: 0.4 per frame.
        let mut f = Fader::new(40_000_000, 100_000_000);
        let up: Vec<u32> = (0..4).map(|_| f.advance(true)).collect();
        assert_eq!(up, [102, 205, 256, 256]);
        let down: Vec<u32> = (0..4).map(|_| f.advance(false)).collect();
        assert_eq!(down, [154, 51, 0, 0]);
        let mut none = Fader::new(40_000_000, 0);
        assert_eq!(none.advance(true), 256);
        assert_eq!(none.advance(false), 0);
    }

    #[test]
    fn crossfade_ends() {
        let mut a = vec![0u8, 100, 255];
        crossfade(&mut a, &[255, 100, 0], 256);
        assert_eq!(a, [255, 100, 0]);
        let mut b = vec![0u8, 100, 255];
        crossfade(&mut b, &[255, 100, 0], 0);
        assert_eq!(b, [0, 100, 255]);
        let mut c = vec![0u8];
        crossfade(&mut c, &[200], 128);
        assert_eq!(c, [100]);
    }
}
