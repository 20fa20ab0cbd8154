//! avatarblend's per-frame paste-back (copy of the avatar frame + resize of the 256x256 crop
//! into the face box + masked blend), one thread, at 1280x720 and 1920x1080, against
//! MuseTalk's Python/OpenCV blending (models/blend_reference.py --bench) on the same frames.
//!
//! `cargo bench --bench avatarblend` (needs the set-up venv with opencv-python-headless).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use gstlivetalk::avatar::{BBox, Image};
use gstlivetalk::blend::{self, Geometry, Paster};
use gstlivetalk::npy::NpyF32;

/// MuseTalk's crop box: the face box's centre, half side max(w,h)/2 * 1.5.
fn crop_box(f: BBox) -> BBox {
    let (xc, yc) = ((f.x1 + f.x2) / 2, (f.y1 + f.y2) / 2);
    let s = ((f.width().max(f.height()) / 2) as f64 * 1.5) as i32;
    BBox::new(xc - s, yc - s, xc + s, yc + s)
}

fn mask(b: BBox) -> Image {
    let (w, h) = (b.width() as u32, b.height() as u32);
    Image::from_fn(w, h, 1, |x, y, _| {
        if y < h / 2 {
            return 0;
        }
        let dy = (y - h / 2) as f32 / (h / 2) as f32;
        let dx = 1.0 - ((x as f32 / w as f32) - 0.5).abs() * 2.0;
        ((dy * 4.0).min(1.0) * (dx * 3.0).min(1.0) * 255.0) as u8
    })
}

fn save(path: &Path, shape: Vec<usize>, data: &[u8]) {
    NpyF32::new(shape, data.iter().map(|&v| v as f32).collect())
        .write(path)
        .unwrap();
}

fn main() {
    let py = gstlivetalk::paths::cache_dir().join("venv/bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/blend_reference.py");
    let dir = tempfile::tempdir().unwrap();
    println!(
        "{:<10} {:>12} {:>12} {:>14} {:>7}",
        "size", "face box", "rust ms", "python-cv ms", "ratio"
    );
    for (w, h, face) in [
        (1280u32, 720u32, BBox::new(540, 180, 740, 420)),
        (1920, 1080, BBox::new(810, 270, 1110, 630)),
    ] {
        let frame = Image::from_fn(w, h, 3, |x, y, c| ((x * 3 + y * 7) ^ (c as u32 * 77)) as u8);
        let crop: Vec<u8> = (0..256 * 256 * 3).map(|i| (i * 31 % 251) as u8).collect();
        let bb = crop_box(face);
        let m = mask(bb);
        let g = Geometry {
            face_box: face,
            blend_box: bb,
            mask: m.view(),
        };
        let stride = w as usize * 3;
        let mut out = vec![0u8; stride * h as usize];
        let mut paster = Paster::default();
        let iters = 400;
        // Warm-up (tables, page faults of the output buffer, as a pool would have them).
        for _ in 0..20 {
            blend::copy_frame(&frame, &mut out, stride);
            paster
                .paste(&mut out, w, h, stride, &crop, 768, &g, 256)
                .unwrap();
        }
        let mut times = Vec::with_capacity(iters);
        for _ in 0..iters {
            let t = Instant::now();
            blend::copy_frame(&frame, &mut out, stride);
            paster
                .paste(&mut out, w, h, stride, &crop, 768, &g, 256)
                .unwrap();
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let rust = times[iters / 2];

        save(
            &dir.path().join("frame.npy"),
            vec![h as usize, w as usize, 3],
            &frame.data,
        );
        save(&dir.path().join("crop.npy"), vec![256, 256, 3], &crop);
        save(
            &dir.path().join("mask.npy"),
            vec![m.height as usize, m.width as usize],
            &m.data,
        );
        let b = |b: BBox| [b.x1, b.y1, b.x2, b.y2].map(|v| v.to_string());
        let outp = Command::new(&py)
            .arg(&script)
            .args([
                "--frame",
                &dir.path().join("frame.npy").display().to_string(),
            ])
            .args(["--crop", &dir.path().join("crop.npy").display().to_string()])
            .args(["--mask", &dir.path().join("mask.npy").display().to_string()])
            .arg("--face-box")
            .args(b(face))
            .arg("--blend-box")
            .args(b(bb))
            .args(["--variant", "cv", "--bench", "200"])
            .env("OMP_NUM_THREADS", "1")
            .output();
        let python = outp.ok().filter(|o| o.status.success()).and_then(|o| {
            let s = String::from_utf8_lossy(&o.stdout).to_string();
            s.split(": ").nth(1)?.split(' ').next()?.parse::<f64>().ok()
        });
        let (p, r) = match python {
            Some(p) => (format!("{p:.3}"), format!("{:.1}x", p / rust)),
            None => ("n/a".into(), "n/a".into()),
        };
        println!(
            "{:<10} {:>12} {:>12.3} {:>14} {:>7}",
            format!("{w}x{h}"),
            format!("{}x{}", face.width(), face.height()),
            rust,
            p,
            r
        );
    }
    println!(
        "(median per frame; rust: copy frame + resize + blend, one thread; python: MuseTalk's \
              deepcopy + cv2.resize + get_image_blending with cv2.blendLinear, cv2.setNumThreads(1))"
    );
}
