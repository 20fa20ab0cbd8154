//! Image operations on [`Image`]: resizing (bilinear, Lanczos-4), Gaussian blur with OpenCV's
//! kernel, crops and pastes, and an affine warp. Plain Rust, no GStreamer.

use crate::avatar::{BBox, Image, ImageRef};

/// Resampling filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Linear interpolation with half-pixel centres (OpenCV's INTER_LINEAR when enlarging).
    Bilinear,
    /// Windowed sinc, 8 taps (OpenCV's INTER_LANCZOS4, what MuseTalk uses for its crops).
    Lanczos4,
}

fn lanczos4(x: f64) -> f64 {
    let x = x.abs();
    if x < 1e-9 {
        1.0
    } else if x >= 4.0 {
        0.0
    } else {
        let px = std::f64::consts::PI * x;
        4.0 * px.sin() * (px / 4.0).sin() / (px * px)
    }
}

/// Per output position along one axis: first source index and weights (normalised).
fn axis_weights(src: usize, dst: usize, filter: Filter) -> Vec<(isize, Vec<f32>)> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|d| {
            let centre = (d as f64 + 0.5) * scale - 0.5;
            match filter {
                Filter::Bilinear => {
                    let c = centre.max(0.0);
                    let i = c.floor();
                    let f = (c - i) as f32;
                    (i as isize, vec![1.0 - f, f])
                }
                Filter::Lanczos4 => {
                    let i = centre.floor() as isize - 3;
                    let w: Vec<f64> = (0..8).map(|k| lanczos4(centre - (i + k) as f64)).collect();
                    let sum: f64 = w.iter().sum();
                    (i, w.iter().map(|v| (v / sum) as f32).collect())
                }
            }
        })
        .collect()
}

/// Resizes an image (any channel count) with the filter; edges replicate.
pub fn resize(src: &Image, width: u32, height: u32, filter: Filter) -> Image {
    let c = src.channels as usize;
    let (sw, sh) = (src.width as usize, src.height as usize);
    let (dw, dh) = (width as usize, height as usize);
    if (sw, sh) == (dw, dh) {
        return src.clone();
    }
    let xw = axis_weights(sw, dw, filter);
    let yw = axis_weights(sh, dh, filter);
    // Horizontal pass into f32 rows.
    let mut tmp = vec![0.0f32; sh * dw * c];
    for y in 0..sh {
        let row = &src.data[y * sw * c..(y + 1) * sw * c];
        for (x, (i0, w)) in xw.iter().enumerate() {
            for ch in 0..c {
                let mut acc = 0.0f32;
                for (k, wk) in w.iter().enumerate() {
                    let sx = (i0 + k as isize).clamp(0, sw as isize - 1) as usize;
                    acc += row[sx * c + ch] as f32 * wk;
                }
                tmp[(y * dw + x) * c + ch] = acc;
            }
        }
    }
    let mut out = Image::new(width, height, src.channels);
    for (y, (i0, w)) in yw.iter().enumerate() {
        for x in 0..dw * c {
            let mut acc = 0.0f32;
            for (k, wk) in w.iter().enumerate() {
                let sy = (i0 + k as isize).clamp(0, sh as isize - 1) as usize;
                acc += tmp[sy * dw * c + x] * wk;
            }
            out.data[y * dw * c + x] = acc.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// The pixels of `b` (which must lie inside the image).
pub fn crop<'a>(src: impl Into<ImageRef<'a>>, b: BBox) -> Image {
    let src = src.into();
    assert!(
        b.inside(src.width, src.height) && !b.is_empty(),
        "crop {b} outside image"
    );
    let c = src.channels as usize;
    let (w, h) = (b.width() as usize, b.height() as usize);
    let mut out = Image::new(w as u32, h as u32, src.channels);
    for y in 0..h {
        let s = ((b.y1 as usize + y) * src.width as usize + b.x1 as usize) * c;
        out.data[y * w * c..(y + 1) * w * c].copy_from_slice(&src.data[s..s + w * c]);
    }
    out
}

/// The pixels of `b`, which may reach outside the image: what lies outside is black (as
/// PIL's `Image.crop`, which MuseTalk uses for its face-parsing crop).
pub fn crop_padded<'a>(src: impl Into<ImageRef<'a>>, b: BBox) -> Image {
    let src = src.into();
    assert!(!b.is_empty(), "empty crop {b}");
    let c = src.channels as usize;
    let (w, h) = (b.width() as usize, b.height() as usize);
    let mut out = Image::new(w as u32, h as u32, src.channels);
    let (x0, x1) = (b.x1.max(0), b.x2.min(src.width as i32));
    if x0 >= x1 {
        return out;
    }
    for y in b.y1.max(0)..b.y2.min(src.height as i32) {
        let s = (y as usize * src.width as usize + x0 as usize) * c;
        let d = ((y - b.y1) as usize * w + (x0 - b.x1) as usize) * c;
        let n = (x1 - x0) as usize * c;
        out.data[d..d + n].copy_from_slice(&src.data[s..s + n]);
    }
    out
}

/// Pillow's resampling filters (`Image.resize`), which MuseTalk's face parsing uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PilFilter {
    /// `Image.BILINEAR`: triangle, support 1 (scaled when reducing).
    Bilinear,
    /// `Image.BICUBIC`: cubic with a = -0.5, support 2 (scaled when reducing); Pillow's
    /// default for `resize`.
    Bicubic,
}

impl PilFilter {
    fn support(self) -> f64 {
        match self {
            PilFilter::Bilinear => 1.0,
            PilFilter::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            PilFilter::Bilinear => (1.0 - x).max(0.0),
            PilFilter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// Pillow keeps 8-bit resampling coefficients in fixed point with this many fraction bits.
const PIL_PRECISION: u32 = 22;

/// Per output position along one axis: first source index and fixed-point coefficients, as
/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` make them (the filter is stretched
/// by the reduction factor, so reducing averages instead of skipping).
fn pil_axis(src: usize, dst: usize, filter: PilFilter) -> Vec<(usize, Vec<i32>)> {
    let scale = src as f64 / dst as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    (0..dst)
        .map(|d| {
            let centre = (d as f64 + 0.5) * scale;
            let xmin = ((centre - support + 0.5) as i64).max(0) as usize;
            let xmax = ((centre + support + 0.5) as i64).min(src as i64) as usize;
            let w: Vec<f64> = (xmin..xmax)
                .map(|x| filter.weight((x as f64 - centre + 0.5) / filterscale))
                .collect();
            let sum: f64 = w.iter().sum();
            let fixed = w
                .iter()
                .map(|&v| {
                    let v = if sum != 0.0 { v / sum } else { v };
                    let f = v * (1u32 << PIL_PRECISION) as f64;
                    (if f < 0.0 { f - 0.5 } else { f + 0.5 }) as i32
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

#[inline]
fn pil_clip8(acc: i32) -> u8 {
    if acc >= (1 << PIL_PRECISION) << 8 {
        255
    } else if acc <= 0 {
        0
    } else {
        (acc >> PIL_PRECISION) as u8
    }
}

/// Resizes as Pillow's `Image.resize(size, filter)` does for 8-bit images, bit for bit:
/// horizontal pass first into 8 bits, then vertical, fixed-point arithmetic.
pub fn resize_pil(src: &Image, width: u32, height: u32, filter: PilFilter) -> Image {
    let c = src.channels as usize;
    let (sw, sh) = (src.width as usize, src.height as usize);
    let (dw, dh) = (width as usize, height as usize);
    let mut tmp = src.clone();
    if dw != sw {
        let xw = pil_axis(sw, dw, filter);
        tmp = Image::new(width, src.height, src.channels);
        for y in 0..sh {
            let row = &src.data[y * sw * c..(y + 1) * sw * c];
            for (x, (x0, k)) in xw.iter().enumerate() {
                for ch in 0..c {
                    let mut acc = 1i32 << (PIL_PRECISION - 1);
                    for (i, &ki) in k.iter().enumerate() {
                        acc += row[(x0 + i) * c + ch] as i32 * ki;
                    }
                    tmp.data[(y * dw + x) * c + ch] = pil_clip8(acc);
                }
            }
        }
    }
    if dh == sh {
        return tmp;
    }
    let yw = pil_axis(sh, dh, filter);
    let mut out = Image::new(width, height, src.channels);
    for (y, (y0, k)) in yw.iter().enumerate() {
        for x in 0..dw * c {
            let mut acc = 1i32 << (PIL_PRECISION - 1);
            for (i, &ki) in k.iter().enumerate() {
                acc += tmp.data[(y0 + i) * dw * c + x] as i32 * ki;
            }
            out.data[y * dw * c + x] = pil_clip8(acc);
        }
    }
    out
}

/// Gaussian kernel as OpenCV builds it for `ksize` (odd) and sigma 0: fixed binomial tables
/// up to 7 taps, else `sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8`.
pub fn gaussian_kernel(ksize: usize) -> Vec<f32> {
    match ksize {
        1 => return vec![1.0],
        3 => return vec![0.25, 0.5, 0.25],
        5 => return vec![0.0625, 0.25, 0.375, 0.25, 0.0625],
        7 => {
            return vec![
                0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125,
            ];
        }
        _ => {}
    }
    let sigma = 0.3 * ((ksize as f64 - 1.0) * 0.5 - 1.0) + 0.8;
    let half = (ksize / 2) as f64;
    let w: Vec<f64> = (0..ksize)
        .map(|i| (-((i as f64 - half).powi(2)) / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f64 = w.iter().sum();
    w.iter().map(|v| (v / sum) as f32).collect()
}

/// Index into `0..n` reflected at both ends without repeating the edge (NumPy's `reflect`
/// padding, OpenCV's BORDER_REFLECT_101).
pub fn reflect_index(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let mut j = i.rem_euclid(period);
    if j >= n as isize {
        j = period - j;
    }
    j as usize
}

/// Separable Gaussian blur of a gray image, borders reflected as OpenCV's default
/// (BORDER_REFLECT_101). Rows are padded once and the vertical pass runs over whole rows,
/// so both inner loops are plain multiply-adds over contiguous memory.
pub fn gaussian_blur(src: &Image, ksize: usize) -> Image {
    assert_eq!(src.channels, 1);
    let k = gaussian_kernel(ksize);
    let r = ksize / 2;
    let (w, h) = (src.width as usize, src.height as usize);
    let mut tmp = vec![0.0f32; w * h];
    let mut padded = vec![0.0f32; w + 2 * r];
    for y in 0..h {
        let row = &src.data[y * w..(y + 1) * w];
        for (i, p) in padded.iter_mut().enumerate() {
            *p = row[reflect_index(i as isize - r as isize, w)] as f32;
        }
        let out = &mut tmp[y * w..(y + 1) * w];
        for (t, kt) in k.iter().enumerate() {
            for (o, v) in out.iter_mut().zip(&padded[t..t + w]) {
                *o += v * kt;
            }
        }
    }
    let mut out = Image::new(src.width, src.height, 1);
    let mut acc = vec![0.0f32; w];
    for y in 0..h {
        acc.fill(0.0);
        for (t, kt) in k.iter().enumerate() {
            let sy = reflect_index(y as isize + t as isize - r as isize, h);
            for (a, v) in acc.iter_mut().zip(&tmp[sy * w..(sy + 1) * w]) {
                *a += v * kt;
            }
        }
        for (o, a) in out.data[y * w..(y + 1) * w].iter_mut().zip(&acc) {
            *o = a.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// A 2x3 affine map from output to source coordinates: `src = A * [x, y, 1]`.
pub type Affine = [[f64; 3]; 2];

/// Output-to-source affine of a rotation by `angle` radians and a scale around `(cx, cy)`,
/// followed by a translation `(tx, ty)`.
pub fn similarity(cx: f64, cy: f64, angle: f64, scale: f64, tx: f64, ty: f64) -> Affine {
    // Forward: p' = R*S*(p - c) + c + t. Inverse: p = (R*S)^-1 (p' - c - t) + c.
    let (s, co) = angle.sin_cos();
    let inv = 1.0 / scale;
    let a = co * inv;
    let b = s * inv;
    // (R S)^-1 = 1/scale * [[cos, sin], [-sin, cos]]
    let ox = -cx - tx;
    let oy = -cy - ty;
    [[a, b, a * ox + b * oy + cx], [-b, a, -b * ox + a * oy + cy]]
}

/// Maps a point forward through the inverse of `m` (source -> output).
pub fn affine_forward(m: &Affine, x: f64, y: f64) -> (f64, f64) {
    let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    let (dx, dy) = (x - m[0][2], y - m[1][2]);
    (
        (m[1][1] * dx - m[0][1] * dy) / det,
        (-m[1][0] * dx + m[0][0] * dy) / det,
    )
}

/// Bilinear sample of channel `ch` at (x, y), edges replicated.
#[inline]
pub fn sample_bilinear(src: &Image, x: f32, y: f32, ch: usize) -> f32 {
    let c = src.channels as usize;
    let (w, h) = (src.width as i32, src.height as i32);
    let x0 = x.floor();
    let y0 = y.floor();
    let (fx, fy) = (x - x0, y - y0);
    let (x0, y0) = (x0 as i32, y0 as i32);
    let px = |xx: i32, yy: i32| {
        let xx = xx.clamp(0, w - 1) as usize;
        let yy = yy.clamp(0, h - 1) as usize;
        src.data[(yy * w as usize + xx) * c + ch] as f32
    };
    let top = px(x0, y0) * (1.0 - fx) + px(x0 + 1, y0) * fx;
    let bot = px(x0, y0 + 1) * (1.0 - fx) + px(x0 + 1, y0 + 1) * fx;
    top * (1.0 - fy) + bot * fy
}

/// Warps an image with an output-to-source affine (bilinear, edges replicated).
pub fn warp_affine(src: &Image, m: &Affine) -> Image {
    let c = src.channels as usize;
    let mut out = Image::new(src.width, src.height, src.channels);
    for y in 0..src.height as usize {
        for x in 0..src.width as usize {
            let sx = (m[0][0] * x as f64 + m[0][1] * y as f64 + m[0][2]) as f32;
            let sy = (m[1][0] * x as f64 + m[1][1] * y as f64 + m[1][2]) as f32;
            for ch in 0..c {
                out.data[(y * src.width as usize + x) * c + ch] =
                    sample_bilinear(src, sx, sy, ch).round() as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_kernel_matches_opencv() {
        // cv2.getGaussianKernel(5, 0) = [0.0625, 0.25, 0.375, 0.25, 0.0625]
        let k = gaussian_kernel(5);
        for (a, b) in k.iter().zip([0.0625, 0.25, 0.375, 0.25, 0.0625]) {
            assert!((a - b).abs() < 1e-6, "{k:?}");
        }
        // Larger kernels (sigma from ksize): symmetric, normalised.
        let k = gaussian_kernel(25);
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert_eq!(k[0], k[24]);
    }

    #[test]
    fn resize_keeps_flat_images_flat_and_round_trips_size() {
        let img = Image::from_fn(40, 30, 3, |_, _, c| 50 + c * 10);
        for f in [Filter::Bilinear, Filter::Lanczos4] {
            let r = resize(&img, 256, 256, f);
            assert_eq!((r.width, r.height), (256, 256));
            assert!(r.data.chunks(3).all(|p| p == [50, 60, 70]), "{f:?}");
        }
    }

    #[test]
    fn bilinear_upscale_interpolates() {
        // 2x1 gray [0, 100] -> 4x1: OpenCV INTER_LINEAR gives [0, 25, 75, 100].
        let img = Image {
            width: 2,
            height: 1,
            channels: 1,
            data: vec![0, 100],
        };
        assert_eq!(resize(&img, 4, 1, Filter::Bilinear).data, [0, 25, 75, 100]);
    }

    #[test]
    fn similarity_identity_and_inverse() {
        let m = similarity(10.0, 20.0, 0.0, 1.0, 0.0, 0.0);
        assert_eq!(m, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]);
        let m = similarity(50.0, 40.0, 0.1, 1.05, 3.0, -2.0);
        let (fx, fy) = affine_forward(&m, 60.0, 45.0);
        let sx = m[0][0] * fx + m[0][1] * fy + m[0][2];
        let sy = m[1][0] * fx + m[1][1] * fy + m[1][2];
        assert!((sx - 60.0).abs() < 1e-9 && (sy - 45.0).abs() < 1e-9);
    }

    #[test]
    fn crop_takes_the_box() {
        let img = Image::from_fn(10, 10, 1, |x, y, _| (y * 10 + x) as u8);
        let c = crop(&img, BBox::new(2, 3, 5, 5));
        assert_eq!(c.data, [32, 33, 34, 42, 43, 44]);
    }
}
