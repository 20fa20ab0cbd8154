//! `livetalk prepare-avatar`: a still portrait with detection and latents, an image without a
//! face, and a video with a stretch of frames without a face.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gstlivetalk::avatar::{Avatar, Image};

fn astronaut() -> PathBuf {
    let p = gstlivetalk::paths::cache_dir().join("data/astronaut.png");
    assert!(p.is_file(), "run scripts/setup.sh");
    p
}

fn livetalk(args: &[&str], extra: &[&Path]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_livetalk"));
    c.args(args);
    for p in extra {
        c.arg(p);
    }
    c.output().unwrap()
}

#[test]
fn still_portrait_with_idle_motion_and_latents() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a");
    let vae = gstlivetalk::paths::test_models_dir().join("vae_encoder.onnx");
    let o = Command::new(env!("CARGO_BIN_EXE_livetalk"))
        .args([
            "prepare-avatar",
            "--seconds",
            "1",
            "--idle-motion",
            "--json",
            "--vae-encoder",
        ])
        .arg(&vae)
        .arg("-o")
        .arg(&out)
        .arg(astronaut())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["frames"], 25);
    assert_eq!(summary["latents"], true);
    let a = Avatar::load(&out).unwrap();
    assert_eq!((a.manifest.width, a.manifest.height), (512, 512));
    // The detector finds her face (about x 173, y 68, 99x99): the box, with MuseTalk's
    // 10 px chin margin, lies around it.
    let f = a.manifest.frames[0].face_box;
    assert!((f.x1 - 173).abs() < 12 && (f.y1 - 68).abs() < 12, "{f}");
    assert!(
        (f.width() - 99).abs() < 15 && (f.height() - 109).abs() < 15,
        "{f}"
    );
    // Idle motion: frames differ, gently.
    let (f0, f12) = (a.frame(0).to_image(), a.frame(12).to_image());
    assert_ne!(f0, f12);
    let diff = gstlivetalk::mouth::region_difference(&f0, &f12, 0, 0, 512, 512);
    assert!(diff > 0.5 && diff < 20.0, "{diff}");
    assert_eq!(a.latents.len(), 25 * gstlivetalk::avatar::LATENT_LEN);
}

#[test]
fn an_image_without_a_face_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank.png");
    Image::from_fn(320, 240, 3, |x, y, _| ((x + y) % 7 * 30) as u8)
        .write_png(&blank)
        .unwrap();
    let o = livetalk(&["prepare-avatar", "-o"], &[&dir.path().join("a"), &blank]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no face found"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn frames_without_a_face_borrow_their_neighbours_box() {
    gst::init().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let face = Image::read_png(&astronaut(), 3).unwrap();
    let blank = Image::new(512, 512, 3);
    for i in 0..20 {
        let img = if (8..12).contains(&i) { &blank } else { &face };
        img.write_png(&dir.path().join(format!("{i:05}.png")))
            .unwrap();
    }
    let video = dir.path().join("v.mkv");
    let status = Command::new("gst-launch-1.0")
        .arg("-q")
        .arg("multifilesrc")
        .arg(format!("location={}/%05d.png", dir.path().display()))
        .args([
            "index=0",
            "caps=image/png,framerate=25/1",
            "!",
            "pngdec",
            "!",
            "videoconvert",
            "!",
            "x264enc",
            "!",
            "matroskamux",
            "!",
            "filesink",
        ])
        .arg(format!("location={}", video.display()))
        .status()
        .unwrap();
    assert!(status.success());
    let out = dir.path().join("a");
    let o = livetalk(&["prepare-avatar", "--json", "-o"], &[&out, &video]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["frames"], 20);
    assert_eq!(
        summary["frames_without_face"],
        serde_json::json!([8, 9, 10, 11])
    );
    let a = Avatar::load(&out).unwrap();
    let (b7, b9) = (a.manifest.frames[7].face_box, a.manifest.frames[9].face_box);
    assert!(
        (b7.x1 - b9.x1).abs() <= 2 && (b7.y1 - b9.y1).abs() <= 2,
        "{b7} {b9}"
    );
}

#[test]
fn face_parsing_gives_musetalks_jaw_mask() {
    let dir = tempfile::tempdir().unwrap();
    let models = gstlivetalk::paths::test_models_dir();
    let run = |out: &Path, extra: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_livetalk"))
            .args(["prepare-avatar", "--seconds", "0.2", "--json"])
            .args(extra)
            .arg("-o")
            .arg(out)
            .arg(astronaut())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let parser = models.join("face_parsing.onnx");
    let parser = parser.to_str().unwrap();
    let (geo, jaw) = (dir.path().join("geo"), dir.path().join("jaw"));
    assert_eq!(run(&geo, &[])["mask"], "geometric");
    assert_eq!(
        run(&jaw, &["--face-parsing", parser])["mask"],
        "face-parsing (jaw)"
    );
    let (g, j) = (Avatar::load(&geo).unwrap(), Avatar::load(&jaw).unwrap());
    let info = j.manifest.frames[0];
    let (gm, jm) = (&g.mask(0).to_image(), &j.mask(0).to_image());
    assert_eq!((gm.width, gm.height), (jm.width, jm.height));
    // Same geometry (upper boundary at half the crop box), a different region inside it.
    let b = info.blend_box;
    let row_sum = |m: &Image, y: i32| -> u32 {
        (0..m.width)
            .map(|x| m.data[((y - b.y1) as u32 * m.width + x) as usize] as u32)
            .sum()
    };
    let top = info.face_box.y1;
    assert_eq!(row_sum(jm, top), 0, "the forehead is never pasted");
    let lit = |m: &Image| m.data.iter().filter(|&&v| v > 128).count();
    assert!(lit(jm) > 500, "jaw mask nearly empty: {}", lit(jm));
    let differ = gm.data.iter().zip(&jm.data).filter(|(a, b)| a != b).count();
    assert!(differ > gm.data.len() / 10, "the masks barely differ");

    // A model with another contract is refused, naming what was expected.
    let o = livetalk(
        &["prepare-avatar", "--seconds", "0.2", "--face-parsing"],
        &[
            &models.join("vae_encoder.onnx"),
            Path::new("-o"),
            &dir.path().join("bad"),
            &astronaut(),
        ],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("face parsing"), "{err}");
    // An unknown mode is a usage error.
    let o = livetalk(
        &["prepare-avatar", "--parsing-mode", "chin", "-o"],
        &[&dir.path().join("bad2"), &astronaut()],
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("jaw, raw or neck"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
