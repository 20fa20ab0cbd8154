//! MuseTalk v1.5's paste-back mask from face parsing (BiSeNet, 19 CelebAMask-HQ classes):
//! the blend box's crop is resized to 512x512 (Pillow bilinear), parsed, turned into the
//! region that may change (mode `jaw`: the face widened downwards by a cone-shaped dilation,
//! trimmed at the cheeks, without the nose, plus the lips and mouth), resized back (Pillow
//! bicubic), kept inside the face box and below the upper boundary, and feathered with the
//! same Gaussian as the geometric mask. The model runs elsewhere: this module takes its
//! logits.

use super::prepare::{PrepareOptions, crop_box};
use super::{FrameInfo, Image, ImageRef};
use crate::imageops::{self, PilFilter};

/// Side of the square the parsing network sees.
pub const SIZE: u32 = 512;
/// Classes of the parsing network's output.
pub const CLASSES: usize = 19;
/// CelebAMask-HQ classes the masks use.
pub const SKIN: u8 = 1;
pub const NOSE: u8 = 10;
/// Mouth inside, upper lip, lower lip.
pub const MOUTH: [u8; 3] = [11, 12, 13];
pub const NECK: u8 = 14;

/// ImageNet normalisation of the network's input (torchvision's `Normalize`).
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Which parsed regions make the mask (MuseTalk's `parsing_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Skin and mouth (MuseTalk v1.0's mask).
    Raw,
    /// Skin, mouth and neck.
    Neck,
    /// MuseTalk v1.5's default: skin dilated downwards and trimmed at the cheeks, without the
    /// nose, plus the mouth.
    Jaw,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "raw" => Ok(Mode::Raw),
            "neck" => Ok(Mode::Neck),
            "jaw" => Ok(Mode::Jaw),
            _ => Err(format!(
                "unknown parsing mode {s:?}: expected jaw, raw or neck"
            )),
        }
    }
}

/// Settings of the parsing mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsingOptions {
    pub mode: Mode,
    /// Half-widths (in the 512 px parsing image) of the centre band where the jaw keeps its
    /// full dilation; outside it the dilated region is eroded (MuseTalk's scripts: 90).
    pub left_cheek_width: u32,
    pub right_cheek_width: u32,
}

impl Default for ParsingOptions {
    fn default() -> Self {
        Self {
            mode: Mode::Jaw,
            left_cheek_width: 90,
            right_cheek_width: 90,
        }
    }
}

/// The network input for a frame: the (unclipped) crop box, black outside the frame, resized
/// to 512x512 with Pillow's bilinear filter, as CHW floats normalised with ImageNet's mean and
/// standard deviation (torchvision's `ToTensor` + `Normalize`, in f32).
pub fn network_input<'a>(
    frame: impl Into<ImageRef<'a>>,
    info: &FrameInfo,
    o: &PrepareOptions,
) -> Vec<f32> {
    let frame = frame.into();
    assert_eq!(frame.channels, 3);
    let large = imageops::crop_padded(frame, crop_box(info.face_box, o.expand));
    let small = imageops::resize_pil(&large, SIZE, SIZE, PilFilter::Bilinear);
    let n = (SIZE * SIZE) as usize;
    let mut out = vec![0.0f32; 3 * n];
    for p in 0..n {
        for c in 0..3 {
            out[c * n + p] = (small.data[p * 3 + c] as f32 / 255.0 - MEAN[c]) / STD[c];
        }
    }
    out
}

/// Per-pixel class: the first largest of `classes` planes (NumPy's `argmax` over axis 0).
pub fn argmax(logits: &[f32], classes: usize) -> Vec<u8> {
    assert!(classes > 0 && classes <= 256 && logits.len().is_multiple_of(classes));
    let n = logits.len() / classes;
    (0..n)
        .map(|p| {
            let mut best = 0;
            for c in 1..classes {
                if logits[c * n + p] > logits[best * n + p] {
                    best = c;
                }
            }
            best as u8
        })
        .collect()
}

/// A binary structuring element with its anchor at the centre (OpenCV's default anchor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    pub width: usize,
    pub height: usize,
    pub on: Vec<bool>,
}

impl Kernel {
    /// OpenCV's `getStructuringElement(MORPH_ELLIPSE, (width, height))`.
    pub fn ellipse(width: usize, height: usize) -> Kernel {
        let (r, c) = ((height / 2) as i64, (width / 2) as i64);
        let inv_r2 = if r > 0 { 1.0 / (r * r) as f64 } else { 0.0 };
        let mut on = vec![false; width * height];
        for i in 0..height {
            let dy = i as i64 - r;
            if dy.abs() > r {
                continue;
            }
            // OpenCV rounds with cvRound (half to even).
            let dx =
                (c as f64 * (((r * r - dy * dy) as f64) * inv_r2).sqrt()).round_ties_even() as i64;
            let j1 = (c - dx).max(0) as usize;
            let j2 = ((c + dx + 1) as usize).min(width);
            on[i * width + j1..i * width + j2].fill(true);
        }
        Kernel { width, height, on }
    }

    /// MuseTalk v1.5's jaw kernel, 33x33: rows 10..21 a cone widening by 2 per row from the
    /// centre column, rows 21..33 as wide as the cone's last row.
    pub fn jaw_cone() -> Kernel {
        const CONE: usize = 21;
        const TAIL: usize = 12;
        let size = CONE + TAIL;
        let centre = size / 2;
        let mut on = vec![false; size * size];
        let mut base = 1;
        for row in CONE / 2..CONE {
            let width = 2 * (row - CONE / 2) + 1;
            on[row * size + centre - width / 2..=row * size + centre + width / 2].fill(true);
            base = width;
        }
        for row in CONE..size {
            let start = centre.saturating_sub(base / 2);
            let end = (centre + base / 2 + 1).min(size);
            on[row * size + start..row * size + end].fill(true);
        }
        Kernel {
            width: size,
            height: size,
            on,
        }
    }

    /// Each row's set cells as runs `(dy, dx_first, dx_last)` relative to the anchor.
    fn runs(&self) -> Vec<(isize, isize, isize)> {
        let (ax, ay) = ((self.width / 2) as isize, (self.height / 2) as isize);
        let mut runs = Vec::new();
        for y in 0..self.height {
            let row = &self.on[y * self.width..(y + 1) * self.width];
            let mut x = 0;
            while x < self.width {
                if !row[x] {
                    x += 1;
                    continue;
                }
                let start = x;
                while x < self.width && row[x] {
                    x += 1;
                }
                runs.push((y as isize - ay, start as isize - ax, x as isize - 1 - ax));
            }
        }
        runs
    }
}

/// Scratch rows for [`run_extreme`].
#[derive(Default)]
struct RunScratch {
    padded: Vec<u8>,
    prefix: Vec<u8>,
    suffix: Vec<u8>,
}

/// `out[x]` = the max (or min) of `row[x + lo ..= x + hi]`, cells outside the row left out:
/// van Herk / Gil-Werman, three comparisons per pixel whatever the run's length.
fn run_extreme(row: &[u8], lo: isize, hi: isize, dilate: bool, out: &mut [u8], s: &mut RunScratch) {
    let pick = |a: u8, b: u8| if dilate { a.max(b) } else { a.min(b) };
    let id = if dilate { 0 } else { 255 };
    let (w, k) = (row.len(), (hi - lo + 1) as usize);
    let n = w + k - 1;
    // padded[j] = row[j + lo], the identity outside the row.
    s.padded.clear();
    s.padded.resize(n, id);
    let (from, to) = ((-lo).max(0) as usize, ((w as isize - lo) as usize).min(n));
    if from < to {
        let x0 = (from as isize + lo) as usize;
        s.padded[from..to].copy_from_slice(&row[x0..x0 + (to - from)]);
    }
    s.prefix.clear();
    s.prefix.extend_from_slice(&s.padded);
    s.suffix.clear();
    s.suffix.extend_from_slice(&s.padded);
    // Within each block of k: running extremes forwards (prefix) and backwards (suffix).
    for start in (0..n).step_by(k) {
        let end = (start + k).min(n);
        for j in start + 1..end {
            s.prefix[j] = pick(s.prefix[j - 1], s.padded[j]);
        }
        for j in (start..end - 1).rev() {
            s.suffix[j] = pick(s.suffix[j + 1], s.padded[j]);
        }
    }
    for (x, o) in out.iter_mut().enumerate() {
        *o = pick(s.suffix[x], s.prefix[x + k - 1]);
    }
}

/// Grey-level dilation (`max`) or erosion (`min`) of a `width` x `height` image as OpenCV's
/// `dilate`/`erode` with default arguments: `dst(x, y)` looks at `src(x + dx, y + dy)` for
/// every set kernel cell offset from the anchor, and pixels outside the image never count.
/// Done per kernel-row run: a windowed extreme along each image row, then the extreme of
/// those over the kernel's rows.
fn morph(src: &[u8], width: usize, height: usize, k: &Kernel, dilate: bool) -> Vec<u8> {
    assert_eq!(src.len(), width * height);
    let mut out = vec![if dilate { 0u8 } else { 255u8 }; src.len()];
    let mut rows: Vec<((isize, isize), Vec<u8>)> = Vec::new();
    let mut scratch = RunScratch::default();
    for (dy, lo, hi) in k.runs() {
        let i = match rows.iter().position(|(r, _)| *r == (lo, hi)) {
            Some(i) => i,
            None => {
                let mut h = vec![0u8; src.len()];
                for (row, hrow) in src.chunks_exact(width).zip(h.chunks_exact_mut(width)) {
                    run_extreme(row, lo, hi, dilate, hrow, &mut scratch);
                }
                rows.push(((lo, hi), h));
                rows.len() - 1
            }
        };
        let h = &rows[i].1;
        for y in 0..height as isize {
            let sy = y + dy;
            if sy < 0 || sy >= height as isize {
                continue;
            }
            let (d, s) = (y as usize * width, sy as usize * width);
            let (o, h) = (&mut out[d..d + width], &h[s..s + width]);
            if dilate {
                o.iter_mut().zip(h).for_each(|(a, b)| *a = (*a).max(*b));
            } else {
                o.iter_mut().zip(h).for_each(|(a, b)| *a = (*a).min(*b));
            }
        }
    }
    out
}

/// OpenCV's `dilate(src, kernel)`.
pub fn dilate(src: &[u8], width: usize, height: usize, k: &Kernel) -> Vec<u8> {
    morph(src, width, height, k, true)
}

/// OpenCV's `erode(src, kernel)`.
pub fn erode(src: &[u8], width: usize, height: usize, k: &Kernel) -> Vec<u8> {
    morph(src, width, height, k, false)
}

/// MuseTalk's cheek mask on the 512x512 parsing image: 255 left of (and at) column
/// `256 - left` and right of (and at) column `256 + right`, as its filled `cv2.rectangle`s.
pub fn cheek_mask(left: u32, right: u32) -> Vec<u8> {
    let s = SIZE as i64;
    let (l, r) = (s / 2 - left as i64, s / 2 + right as i64);
    (0..s * s)
        .map(|p| {
            let x = p % s;
            if x <= l || x >= r { 255 } else { 0 }
        })
        .collect()
}

/// The 512x512 region mask (0 or 255) of a parsing map, per mode.
pub fn region(parsing: &[u8], o: &ParsingOptions) -> Vec<u8> {
    let s = SIZE as usize;
    assert_eq!(parsing.len(), s * s);
    let on = |c: u8| -> u8 { if c != 0 { 255 } else { 0 } };
    match o.mode {
        Mode::Raw => parsing
            .iter()
            .map(|&c| on((c == SKIN || MOUTH.contains(&c)) as u8))
            .collect(),
        Mode::Neck => parsing
            .iter()
            .map(|&c| on((c == SKIN || c == NECK || MOUTH.contains(&c)) as u8))
            .collect(),
        Mode::Jaw => {
            let skin: Vec<u8> = parsing.iter().map(|&c| on((c == SKIN) as u8)).collect();
            let dilated = dilate(&skin, s, s, &Kernel::jaw_cone());
            let ellipse = Kernel::ellipse(35, 3);
            let eroded = erode(&erode(&dilated, s, s, &ellipse), s, s, &ellipse);
            let cheeks = cheek_mask(o.left_cheek_width, o.right_cheek_width);
            (0..s * s)
                .map(|p| {
                    let face = (eroded[p] & cheeks[p]) | (dilated[p] & !cheeks[p]);
                    let c = parsing[p];
                    on(((face == 255 && c != NOSE) || MOUTH.contains(&c)) as u8)
                })
                .collect()
        }
    }
}

/// The feathered paste-back mask, blend-box sized, from a 512x512 region mask: resized to the
/// crop box (Pillow bicubic), kept inside the face box and below the upper boundary, blurred
/// with MuseTalk's kernel, cut to the blend box.
pub fn blend_mask(region: &[u8], info: &FrameInfo, o: &PrepareOptions) -> Image {
    let full = crop_box(info.face_box, o.expand);
    let side = full.width() as u32;
    let region = Image {
        width: SIZE,
        height: SIZE,
        channels: 1,
        data: region.to_vec(),
    };
    let resized = imageops::resize_pil(&region, side, side, PilFilter::Bicubic);
    let face = info.face_box.relative_to(&full);
    let top = (side as f64 * o.upper_boundary_ratio) as i32;
    let mut canvas = Image::new(side, side, 1);
    for y in face.y1.max(top).max(0)..face.y2.min(side as i32) {
        for x in face.x1.max(0)..face.x2.min(side as i32) {
            let p = (y as u32 * side + x as u32) as usize;
            canvas.data[p] = resized.data[p];
        }
    }
    super::prepare::feather(&canvas, info, o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(k: &Kernel) -> Vec<String> {
        (0..k.height)
            .map(|y| {
                (0..k.width)
                    .map(|x| if k.on[y * k.width + x] { '#' } else { '.' })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn ellipse_35x3_is_a_bar_with_a_centre_dot_above_and_below() {
        let k = Kernel::ellipse(35, 3);
        let r = rows(&k);
        assert_eq!(r[1], "#".repeat(35));
        assert_eq!(r[0], format!("{}#{}", ".".repeat(17), ".".repeat(17)));
        assert_eq!(r[2], r[0]);
        // A round one: OpenCV's 5x5 ellipse is a plus with filled middle rows.
        let r = rows(&Kernel::ellipse(5, 5));
        assert_eq!(r, ["..#..", "#####", "#####", "#####", "..#.."]);
    }

    #[test]
    fn jaw_cone_widens_then_runs_straight() {
        let k = Kernel::jaw_cone();
        let width = |y: usize| k.on[y * 33..(y + 1) * 33].iter().filter(|&&b| b).count();
        assert_eq!((k.width, k.height), (33, 33));
        assert_eq!(width(9), 0);
        assert_eq!(width(10), 1);
        assert_eq!(width(20), 21);
        assert_eq!(width(21), 21);
        assert_eq!(width(32), 21);
        assert!(k.on[10 * 33 + 16]);
    }

    #[test]
    fn dilation_grows_towards_the_kernels_far_side() {
        // One pixel at (5, 20) in a 11x40 image; the cone's cells lie at dy in -6..=16, so
        // the pixel reaches dst rows 4..=26 (dst(y) looks at src(y + dy)).
        let (w, h) = (11, 40);
        let mut src = vec![0u8; w * h];
        src[20 * w + 5] = 255;
        let d = dilate(&src, w, h, &Kernel::jaw_cone());
        let lit: Vec<usize> = (0..h).filter(|&y| d[y * w + 5] == 255).collect();
        assert_eq!((lit[0], *lit.last().unwrap()), (4, 26));
        // Erosion ignores the outside: a full image stays full.
        let e = erode(&vec![255u8; w * h], w, h, &Kernel::ellipse(35, 3));
        assert!(e.iter().all(|&v| v == 255));
    }

    #[test]
    fn cheek_mask_matches_the_filled_rectangles() {
        let m = cheek_mask(90, 90);
        assert_eq!(m[166], 255);
        assert_eq!(m[167], 0);
        assert_eq!(m[345], 0);
        assert_eq!(m[346], 255);
        assert_eq!(m[511 * 512 + 511], 255);
    }

    #[test]
    fn jaw_keeps_mouth_drops_nose() {
        let s = SIZE as usize;
        let mut p = vec![0u8; s * s];
        for y in 150..400 {
            for x in 150..362 {
                p[y * s + x] = SKIN;
            }
        }
        for y in 240..290 {
            for x in 236..276 {
                p[y * s + x] = NOSE;
            }
        }
        for y in 320..340 {
            for x in 220..292 {
                p[y * s + x] = 12;
            }
        }
        let m = region(&p, &ParsingOptions::default());
        assert_eq!(m[260 * s + 256], 0, "nose");
        assert_eq!(m[330 * s + 256], 255, "lip");
        assert_eq!(m[300 * s + 200], 255, "skin");
        // Below the chin the cone has pulled the region down; far outside it is empty.
        assert_eq!(m[405 * s + 256], 255);
        assert_eq!(m[480 * s + 256], 0);
        assert_eq!(m[20 * s + 20], 0);
        let raw = region(
            &p,
            &ParsingOptions {
                mode: Mode::Raw,
                ..Default::default()
            },
        );
        assert_eq!(raw[260 * s + 256], 0);
        assert_eq!(raw[405 * s + 256], 0);
    }

    #[test]
    fn argmax_takes_the_first_largest() {
        // 3 classes, 2 pixels: [0.1, 0.5] [0.7, 0.5] [0.7, 0.2]
        assert_eq!(argmax(&[0.1, 0.5, 0.7, 0.5, 0.7, 0.2], 3), [1, 0]);
    }
}
