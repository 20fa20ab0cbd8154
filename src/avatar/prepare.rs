//! Avatar preparation, as MuseTalk v1.5's `Avatar.prepare_material` does it, free of
//! GStreamer: face box -> (shifted, chin margin) -> blend box (1.5x square around the face,
//! MuseTalk's `get_crop_box`), feathered lower-face mask, and the two 256x256 VAE inputs
//! (lower half masked, and full) whose latents make the 8-channel UNet input.

use super::{BBox, FrameInfo, Image, ImageRef};
use crate::imageops::{self, Filter};

/// Size of the face crop the models work on.
pub const CROP: u32 = 256;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrepareOptions {
    /// Pixels added to the face box's top edge (MuseTalk's `bbox_shift`; positive: lower).
    pub bbox_shift: i32,
    /// Pixels added below the chin (MuseTalk v1.5's `extra_margin`).
    pub extra_margin: i32,
    /// Blend box size relative to the face box (MuseTalk v1.5: 1.5).
    pub expand: f64,
    /// Rows of the blend box above this fraction are never pasted (MuseTalk: 0.5).
    pub upper_boundary_ratio: f64,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        Self {
            bbox_shift: 0,
            extra_margin: 10,
            expand: 1.5,
            upper_boundary_ratio: 0.5,
        }
    }
}

/// MuseTalk's `get_crop_box`: a square of side `2 * int(max(w, h) // 2 * expand)` centred on
/// the box (integer centre).
pub fn crop_box(face: BBox, expand: f64) -> BBox {
    let (xc, yc) = (
        (face.x1 + face.x2).div_euclid(2),
        (face.y1 + face.y2).div_euclid(2),
    );
    let s = ((face.width().max(face.height()) / 2) as f64 * expand) as i32;
    BBox::new(xc - s, yc - s, xc + s, yc + s)
}

fn intersect(a: BBox, b: BBox) -> BBox {
    BBox::new(
        a.x1.max(b.x1),
        a.y1.max(b.y1),
        a.x2.min(b.x2),
        a.y2.min(b.y2),
    )
}

/// The frame geometry of a detected face: shifted face box (inside the frame) and the blend
/// box (MuseTalk's crop box, clipped to the frame). `None` when nothing of it is left.
pub fn frame_info(face: BBox, width: u32, height: u32, o: &PrepareOptions) -> Option<FrameInfo> {
    let frame = BBox::new(0, 0, width as i32, height as i32);
    let shifted = BBox::new(
        face.x1,
        face.y1 + o.bbox_shift,
        face.x2,
        face.y2 + o.extra_margin,
    );
    let face_box = intersect(shifted, frame);
    if face_box.is_empty() {
        return None;
    }
    let blend_box = intersect(crop_box(face_box, o.expand), frame);
    Some(FrameInfo {
        face_box,
        blend_box,
    })
}

/// The feathered paste-back mask, blend-box sized: an ellipse inscribed in the face box (a
/// geometric stand-in for MuseTalk's face-parsing region), only below the upper boundary of
/// MuseTalk's crop box, blurred with MuseTalk's kernel `int(0.1 * side // 2 * 2) + 1`.
pub fn geometric_mask(info: &FrameInfo, o: &PrepareOptions) -> Image {
    let full = crop_box(info.face_box, o.expand);
    let side = full.width();
    let top_boundary = full.y1 + (side as f64 * o.upper_boundary_ratio) as i32;
    let f = info.face_box;
    let (cx, cy) = ((f.x1 + f.x2) as f64 / 2.0, (f.y1 + f.y2) as f64 / 2.0);
    let (rx, ry) = (f.width() as f64 / 2.0, f.height() as f64 / 2.0);
    // Drawn on the whole crop box, so that the blur sees the same neighbourhood as MuseTalk's,
    // then cut to the blend box.
    let mut canvas = Image::new(side as u32, side as u32, 1);
    for y in 0..side {
        let py = full.y1 + y;
        if py < top_boundary {
            continue;
        }
        for x in 0..side {
            let px = full.x1 + x;
            let (dx, dy) = ((px as f64 + 0.5 - cx) / rx, (py as f64 + 0.5 - cy) / ry);
            if dx * dx + dy * dy <= 1.0 {
                canvas.data[(y * side + x) as usize] = 255;
            }
        }
    }
    feather(&canvas, info, o)
}

/// The last step of every paste-back mask: a mask drawn on the whole (unclipped) crop box,
/// blurred with MuseTalk's kernel `int(0.1 * side // 2 * 2) + 1`, cut to the blend box.
pub fn feather(canvas: &Image, info: &FrameInfo, o: &PrepareOptions) -> Image {
    let full = crop_box(info.face_box, o.expand);
    let ksize = ((0.1 * full.width() as f64) as usize / 2) * 2 + 1;
    let blurred = imageops::gaussian_blur(canvas, ksize);
    imageops::crop(&blurred, info.blend_box.relative_to(&full))
}

/// The face crop the models see: the face box resized to 256x256 (Lanczos-4, as MuseTalk).
pub fn face_crop<'a>(frame: impl Into<ImageRef<'a>>, face_box: BBox) -> Image {
    imageops::resize(
        &imageops::crop(frame, face_box),
        CROP,
        CROP,
        Filter::Lanczos4,
    )
}

/// VAE encoder inputs for a 256x256 RGB crop, CHW in [-1, 1]: the crop with its lower half
/// blacked out (MuseTalk's masked reference) and the crop itself.
pub fn vae_inputs(crop: &Image) -> (Vec<f32>, Vec<f32>) {
    assert_eq!((crop.width, crop.height, crop.channels), (CROP, CROP, 3));
    let n = (CROP * CROP) as usize;
    let mut full = vec![0.0f32; 3 * n];
    for p in 0..n {
        for c in 0..3 {
            full[c * n + p] = crop.data[p * 3 + c] as f32 / 255.0 * 2.0 - 1.0;
        }
    }
    let mut masked = full.clone();
    let half = n / 2; // rows 128.. of each channel
    for c in 0..3 {
        masked[c * n + half..(c + 1) * n].fill(-1.0);
    }
    (masked, full)
}

/// Fills frames without a detection from their nearest detected neighbour and smooths the
/// boxes with a moving average of `radius` frames each side. `Err` lists the frames without a
/// face when none has one.
pub fn smooth_boxes(boxes: &[Option<BBox>], radius: usize) -> Result<Vec<BBox>, Vec<usize>> {
    let found: Vec<usize> = (0..boxes.len()).filter(|&i| boxes[i].is_some()).collect();
    if found.is_empty() {
        return Err((0..boxes.len()).collect());
    }
    let filled: Vec<BBox> = (0..boxes.len())
        .map(|i| {
            boxes[i].unwrap_or_else(|| {
                let nearest = *found.iter().min_by_key(|&&j| j.abs_diff(i)).unwrap();
                boxes[nearest].unwrap()
            })
        })
        .collect();
    Ok((0..filled.len())
        .map(|i| {
            let lo = i.saturating_sub(radius);
            let hi = (i + radius + 1).min(filled.len());
            let n = (hi - lo) as f64;
            let avg = |f: fn(&BBox) -> i32| {
                (filled[lo..hi].iter().map(|b| f(b) as f64).sum::<f64>() / n).round() as i32
            };
            BBox::new(avg(|b| b.x1), avg(|b| b.y1), avg(|b| b.x2), avg(|b| b.y2))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_box_is_musetalks() {
        // x, y, x1, y1 = 100, 50, 200, 170: centre (150, 110), s = int(120 // 2 * 1.5) = 90.
        assert_eq!(
            crop_box(BBox::new(100, 50, 200, 170), 1.5),
            BBox::new(60, 20, 240, 200)
        );
        // Odd sizes: 99 // 2 = 49, * 1.5 = 73.5 -> 73.
        assert_eq!(
            crop_box(BBox::new(173, 68, 272, 167), 1.5),
            BBox::new(149, 44, 295, 190)
        );
    }

    #[test]
    fn frame_info_shifts_and_clips() {
        let o = PrepareOptions {
            bbox_shift: 5,
            ..Default::default()
        };
        let info = frame_info(BBox::new(173, 68, 272, 167), 512, 512, &o).unwrap();
        assert_eq!(info.face_box, BBox::new(173, 73, 272, 177));
        assert!(info.blend_box.contains(&info.face_box));
        // A face at the border: the blend box is clipped to the frame.
        let info = frame_info(BBox::new(0, 0, 100, 100), 300, 300, &Default::default()).unwrap();
        assert_eq!((info.blend_box.x1, info.blend_box.y1), (0, 0));
        assert!(info.blend_box.inside(300, 300));
        assert!(frame_info(BBox::new(400, 400, 500, 500), 300, 300, &Default::default()).is_none());
    }

    #[test]
    fn mask_covers_lower_face_only_and_is_feathered() {
        let o = PrepareOptions::default();
        let info = frame_info(BBox::new(100, 100, 200, 200), 400, 400, &o).unwrap();
        let m = geometric_mask(&info, &o);
        let b = info.blend_box;
        assert_eq!((m.width as i32, m.height as i32), (b.width(), b.height()));
        let at = |x: i32, y: i32| m.data[((y - b.y1) * b.width() + (x - b.x1)) as usize];
        assert_eq!(at(150, 180), 255); // chin, inside
        assert_eq!(at(150, 120), 0); // forehead, above the boundary
        assert_eq!(at(b.x1, b.y2 - 1), 0); // corner
        let edge = at(150, 208); // just outside the face ellipse: feathered, not hard
        assert!(edge > 0 && edge < 255, "{edge}");
    }

    #[test]
    fn vae_inputs_mask_the_lower_half() {
        let crop = Image::from_fn(256, 256, 3, |_, _, c| [255, 0, 128][c as usize]);
        let (masked, full) = vae_inputs(&crop);
        let n = 256 * 256;
        assert_eq!(full[0], 1.0);
        assert_eq!(full[n], -1.0);
        assert!((full[2 * n] - (128.0 / 255.0 * 2.0 - 1.0)).abs() < 1e-6);
        assert_eq!(masked[127 * 256], 1.0);
        assert_eq!(masked[128 * 256], -1.0);
        assert_eq!(masked[2 * n + 200 * 256], -1.0);
    }

    #[test]
    fn smoothing_fills_gaps_from_neighbours() {
        let b = |x: i32| Some(BBox::new(x, 0, x + 10, 10));
        let boxes = vec![None, b(0), b(0), None, b(6), None];
        let s = smooth_boxes(&boxes, 0).unwrap();
        assert_eq!(
            s.iter().map(|b| b.x1).collect::<Vec<_>>(),
            [0, 0, 0, 0, 6, 6]
        );
        let s = smooth_boxes(&boxes, 1).unwrap();
        assert_eq!(s[2].x1, 0);
        assert_eq!(s[3].x1, 2); // (0 + 0 + 6) / 3
        assert_eq!(smooth_boxes(&[None, None], 1), Err(vec![0, 1]));
    }
}
