//! MuseTalk's face-parsing mask (`avatar::parsing`) against a Python reference built on the
//! libraries MuseTalk uses: OpenCV for the morphology and the blur, Pillow for the resizes
//! and the crop, ONNX Runtime for the network (models/parsing_reference.py).

use std::path::Path;
use std::process::Command;

use gstlivetalk::avatar::parsing::{self, Mode, ParsingOptions};
use gstlivetalk::avatar::prepare::{self, PrepareOptions};
use gstlivetalk::avatar::{BBox, Image};
use gstlivetalk::imageops::{self, PilFilter};
use gstlivetalk::inference::{self, Input, InputData, SessionRequest, contract};
use gstlivetalk::npy::NpyF32;

fn save_u8(path: &Path, shape: Vec<usize>, data: &[u8]) {
    NpyF32::new(shape, data.iter().map(|&v| v as f32).collect())
        .write(path)
        .unwrap();
}

fn reference(dir: &Path, args: &[String]) -> (Vec<usize>, Vec<u8>) {
    let py = gstlivetalk::paths::cache_dir().join("venv/bin/python");
    let root = env!("CARGO_MANIFEST_DIR");
    let out_path = dir.join("out.npy");
    let out = Command::new(&py)
        .arg(format!("{root}/models/parsing_reference.py"))
        .args(args)
        .args(["--out", &out_path.display().to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "parsing_reference.py failed (needs opencv-python-headless and pillow in the venv: \
         scripts/setup.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let arr = NpyF32::read(&out_path).unwrap();
    (arr.shape, arr.data.iter().map(|&v| v as u8).collect())
}

/// A parsing map of overlapping ellipses of the classes the modes use, some cut by the image
/// edge, on background 0.
fn synthetic_parsing(seed: u64) -> Vec<u8> {
    let s = parsing::SIZE as i64;
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = |n: i64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as i64).rem_euclid(n)
    };
    let mut p = vec![0u8; (s * s) as usize];
    // A face, then smaller parts on it.
    let mut blobs = vec![(256, 280, 170, 210, 1u8)];
    for _ in 0..14 {
        let class = [1u8, 10, 11, 12, 13, 14, 17, 2, 4][next(9) as usize];
        blobs.push((next(s), next(s), 8 + next(90), 5 + next(60), class));
    }
    for (cx, cy, rx, ry, class) in blobs {
        for y in 0..s {
            for x in 0..s {
                let (dx, dy) = ((x - cx) as f64 / rx as f64, (y - cy) as f64 / ry as f64);
                if dx * dx + dy * dy <= 1.0 {
                    p[(y * s + x) as usize] = class;
                }
            }
        }
    }
    p
}

#[test]
fn regions_match_opencv_in_every_mode() {
    let dir = tempfile::tempdir().unwrap();
    let n = parsing::SIZE as usize;
    for seed in 0..3 {
        let p = synthetic_parsing(seed);
        let path = dir.path().join("parsing.npy");
        save_u8(&path, vec![n, n], &p);
        for (mode, name, cheeks) in [
            (Mode::Jaw, "jaw", (90, 90)),
            (Mode::Jaw, "jaw", (80, 60)),
            (Mode::Raw, "raw", (90, 90)),
            (Mode::Neck, "neck", (90, 90)),
        ] {
            let o = ParsingOptions {
                mode,
                left_cheek_width: cheeks.0,
                right_cheek_width: cheeks.1,
            };
            let ours = parsing::region(&p, &o);
            let (shape, theirs) = reference(
                dir.path(),
                &[
                    "--parsing".into(),
                    path.display().to_string(),
                    "--mode".into(),
                    name.into(),
                    "--cheeks".into(),
                    cheeks.0.to_string(),
                    cheeks.1.to_string(),
                ],
            );
            assert_eq!(shape, [n, n]);
            let differ = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
            let lit = ours.iter().filter(|&&v| v == 255).count();
            assert_eq!(
                differ, 0,
                "seed {seed}, {name} {cheeks:?}: {differ} pixels differ"
            );
            assert!(lit > 1000, "seed {seed}, {name}: empty region");
        }
    }
}

#[test]
fn pil_resize_matches_pillow() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (97, 61, 3, 512, 512, PilFilter::Bilinear),   // enlarge
        (700, 530, 3, 512, 512, PilFilter::Bilinear), // reduce (filter stretched)
        (512, 512, 1, 158, 158, PilFilter::Bicubic),  // the mask back to a small crop
        (512, 512, 1, 731, 731, PilFilter::Bicubic),  // ... and to a large one
        (40, 300, 1, 40, 77, PilFilter::Bicubic),     // one axis only
    ];
    for (i, (w, h, c, dw, dh, f)) in cases.into_iter().enumerate() {
        let img = Image::from_fn(w, h, c, |x, y, ch| {
            let v = (x * 37 + y * 11 + ch as u32 * 91) ^ (x * y);
            if (x / 9 + y / 13) % 3 == 0 {
                (v % 256) as u8
            } else {
                ((x + y) * 255 / (w + h)) as u8
            }
        });
        let path = dir.path().join("img.npy");
        let shape = if c == 1 {
            vec![h as usize, w as usize]
        } else {
            vec![h as usize, w as usize, c as usize]
        };
        save_u8(&path, shape, &img.data);
        let ours = imageops::resize_pil(&img, dw, dh, f);
        let name = if f == PilFilter::Bilinear {
            "bilinear"
        } else {
            "bicubic"
        };
        let (_, theirs) = reference(
            dir.path(),
            &[
                "--resize".into(),
                path.display().to_string(),
                "--size".into(),
                dw.to_string(),
                dh.to_string(),
                "--filter".into(),
                name.into(),
            ],
        );
        let differ = ours
            .data
            .iter()
            .zip(&theirs)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(ours.data.len(), theirs.len(), "case {i}");
        assert_eq!(
            differ, 0,
            "case {i} ({name}): {differ} values differ from Pillow"
        );
    }
}

#[test]
fn frame_mask_matches_musetalks_steps_with_the_tiny_parser() {
    let model = gstlivetalk::paths::cache_dir().join("models/test/face_parsing.onnx");
    assert!(
        model.is_file(),
        "run scripts/setup.sh (it makes the test models)"
    );
    let frame = Image::read_png(
        &gstlivetalk::paths::cache_dir().join("avatars/astronaut/frames/00000000.png"),
        3,
    )
    .unwrap();
    let session =
        inference::load_session(&SessionRequest::new(&model, &contract::FACE_PARSING)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fpath = dir.path().join("frame.npy");
    save_u8(
        &fpath,
        vec![frame.height as usize, frame.width as usize, 3],
        &frame.data,
    );
    let o = PrepareOptions::default();
    // The demo avatar's face, and the same face box pushed to the corner so that the crop box
    // reaches outside the frame (black there, as Pillow's crop).
    for face in [BBox::new(176, 67, 272, 173), BBox::new(0, 30, 96, 136)] {
        let info = prepare::frame_info(
            face,
            frame.width,
            frame.height,
            &PrepareOptions {
                extra_margin: 0,
                ..o
            },
        )
        .unwrap();
        let input = parsing::network_input(&frame, &info, &o);
        let out = session
            .run(&[Input {
                name: "image",
                shape: &[1, 3, 512, 512],
                data: InputData::F32(&input),
            }])
            .unwrap();
        let classes = parsing::argmax(&out[0].data, parsing::CLASSES);
        let region = parsing::region(&classes, &ParsingOptions::default());
        let ours = parsing::blend_mask(&region, &info, &o);

        let ppath = dir.path().join("parsing.npy");
        let f = info.face_box;
        let (shape, theirs) = reference(
            dir.path(),
            &[
                "--frame".into(),
                fpath.display().to_string(),
                "--face-box".into(),
                f.x1.to_string(),
                f.y1.to_string(),
                f.x2.to_string(),
                f.y2.to_string(),
                "--model".into(),
                model.display().to_string(),
                "--logits-out".into(),
                ppath.display().to_string(),
            ],
        );
        let their_classes: Vec<u8> = NpyF32::read(&ppath)
            .unwrap()
            .data
            .iter()
            .map(|&v| v as u8)
            .collect();
        let class_differ = classes
            .iter()
            .zip(&their_classes)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            class_differ, 0,
            "face {face}: parsing maps differ at {class_differ} pixels"
        );
        // The reference mask is crop-box sized; ours is cut to the blend box (the crop box
        // clipped to the frame).
        let full = prepare::crop_box(f, o.expand);
        assert_eq!(shape, [full.height() as usize, full.width() as usize]);
        let theirs = Image {
            width: full.width() as u32,
            height: full.height() as u32,
            channels: 1,
            data: theirs,
        };
        let theirs = imageops::crop(&theirs, info.blend_box.relative_to(&full));
        assert_eq!((ours.width, ours.height), (theirs.width, theirs.height));
        let worst = ours
            .data
            .iter()
            .zip(&theirs.data)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        let lit = ours.data.iter().filter(|&&v| v > 128).count();
        eprintln!("face {face}: mask max diff {worst}, {lit} pixels above 128");
        // OpenCV blurs 8-bit images in fixed point; ours is float: at most one level apart.
        assert!(worst <= 1, "face {face}: mask differs by up to {worst}");
        assert!(lit > 500, "face {face}: the mask is nearly empty");
    }
}
