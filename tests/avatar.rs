//! Avatar directory format v1: round trip, every validation error, sharing.

use std::path::Path;
use std::sync::Arc;

use gstlivetalk::avatar::{self, Avatar, BBox, FrameInfo, Image, Manifest};
use gstlivetalk::npy::NpyF32;

const W: u32 = 64;
const H: u32 = 48;
const N: usize = 3;

fn frame_info(i: usize) -> FrameInfo {
    let x = 10 + i as i32;
    FrameInfo {
        face_box: BBox::new(x, 12, x + 20, 32),
        blend_box: BBox::new(x - 5, 7, x + 25, 37),
    }
}

/// Writes a valid avatar with latents into `dir`; returns what was written.
fn write_avatar(dir: &Path) -> (Manifest, Vec<Image>, Vec<Image>, Vec<f32>) {
    let infos: Vec<FrameInfo> = (0..N).map(frame_info).collect();
    let manifest = Manifest::new(25, W, H, "test pattern", infos.clone());
    let frames: Vec<Image> = (0..N)
        .map(|i| {
            Image::from_fn(W, H, 3, |x, y, c| {
                (x * 3 + y * 5 + c as u32 * 40 + i as u32 * 17) as u8
            })
        })
        .collect();
    let masks: Vec<Image> = infos
        .iter()
        .map(|f| {
            let b = f.blend_box;
            Image::from_fn(b.width() as u32, b.height() as u32, 1, |x, y, _| {
                (x * 8 + y) as u8
            })
        })
        .collect();
    let latents: Vec<f32> = (0..N * avatar::LATENT_LEN)
        .map(|i| (i % 97) as f32 * 0.01)
        .collect();
    Avatar::write(dir, &manifest, &frames, &masks, Some(&latents)).unwrap();
    (manifest, frames, masks, latents)
}

fn load_err(dir: &Path) -> String {
    Avatar::load(dir).expect_err("load should fail").to_string()
}

#[test]
fn round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, frames, masks, latents) = write_avatar(dir.path());
    let a = Avatar::load(dir.path()).unwrap();
    assert_eq!(a.manifest.frames, manifest.frames);
    assert_eq!(a.manifest.latents.as_deref(), Some("latents.npy"));
    assert!(a.is_mapped(), "{}", a.storage());
    assert!(a.frames().eq(frames.iter().map(Image::view)));
    assert!((0..N).all(|i| a.mask(i) == masks[i]));
    assert_eq!(a.latents, latents);
    assert_eq!(
        a.latent(1),
        &latents[avatar::LATENT_LEN..2 * avatar::LATENT_LEN]
    );
    assert_eq!(a.len(), N);
}

#[test]
fn avatar_without_latents_loads() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, frames, masks, _) = write_avatar(dir.path());
    Avatar::write(dir.path(), &manifest, &frames, &masks, None).unwrap();
    std::fs::remove_file(dir.path().join("latents.npy")).unwrap();
    let a = Avatar::load(dir.path()).unwrap();
    assert!(!a.has_latents());
}

#[test]
fn shared_load_gives_one_avatar_per_directory() {
    let dir = tempfile::tempdir().unwrap();
    write_avatar(dir.path());
    let a = Avatar::load_shared(dir.path()).unwrap();
    let b = Avatar::load_shared(&dir.path().join(".")).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    let other = tempfile::tempdir().unwrap();
    write_avatar(other.path());
    let c = Avatar::load_shared(other.path()).unwrap();
    assert!(!Arc::ptr_eq(&a, &c));
}

fn edit_manifest(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("avatar.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_string(&v).unwrap()).unwrap();
}

#[test]
fn missing_directory_and_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_err(&dir.path().join("absent"));
    assert!(err.contains("not a directory"), "{err}");
    let err = load_err(dir.path());
    assert!(err.contains("avatar.json: cannot read"), "{err}");
    assert!(err.contains("livetalk prepare-avatar"), "{err}");
}

#[test]
fn manifest_errors() {
    type Edit = fn(&mut serde_json::Value);
    let cases: &[(Edit, &str)] = &[
        (|v| v["format"] = "other".into(), "format is 'other'"),
        (
            |v| v["version"] = 2.into(),
            "format version 2 is not supported",
        ),
        (|v| v["fps"] = 0.into(), "fps 0 is out of range"),
        (|v| v["width"] = 0.into(), "frame size 0x48 is out of range"),
        (|v| v["frames"] = serde_json::json!([]), "no frames"),
        (
            |v| v["frames"][1]["face_box"] = serde_json::json!([20, 12, 20, 32]),
            "(frame 1): face_box [20,12,20,32] is empty",
        ),
        (
            |v| v["frames"][2]["blend_box"] = serde_json::json!([0, 0, 65, 40]),
            "(frame 2): blend_box [0,0,65,40] is not inside the 64x48 frame",
        ),
        (
            |v| v["frames"][0]["blend_box"] = serde_json::json!([12, 7, 35, 37]),
            "(frame 0): blend_box [12,7,35,37] does not contain face_box",
        ),
        (
            |v| v["frames"][0]["face_box"] = serde_json::json!([1, 2, 3]),
            "invalid JSON",
        ),
    ];
    for (edit, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        write_avatar(dir.path());
        edit_manifest(dir.path(), edit);
        let err = load_err(dir.path());
        assert!(err.contains(expected), "expected '{expected}' in: {err}");
        assert!(err.contains("avatar.json"), "{err}");
    }
    let dir = tempfile::tempdir().unwrap();
    write_avatar(dir.path());
    std::fs::write(
        dir.path().join("avatar.json"),
        b"{ \"format\": \"livetalk-avatar\", ",
    )
    .unwrap();
    assert!(load_err(dir.path()).contains("invalid JSON"));
}

#[test]
fn frame_and_mask_count_must_agree() {
    let dir = tempfile::tempdir().unwrap();
    write_avatar(dir.path());
    std::fs::remove_file(avatar::frame_path(dir.path(), 2)).unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("2 frame files, but avatar.json describes 3 frames"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    write_avatar(dir.path());
    std::fs::copy(
        avatar::mask_path(dir.path(), 0),
        avatar::mask_path(dir.path(), 3),
    )
    .unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("4 mask files, but avatar.json describes 3 frames"),
        "{err}"
    );

    // Right count, wrong name: frame 1 is missing.
    let dir = tempfile::tempdir().unwrap();
    write_avatar(dir.path());
    std::fs::rename(
        avatar::frame_path(dir.path(), 1),
        avatar::frame_path(dir.path(), 7),
    )
    .unwrap();
    let err = load_err(dir.path());
    assert!(err.contains("00000001.png (frame 1)"), "{err}");
}

#[test]
fn corrupt_and_truncated_images_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    write_avatar(dir.path());
    let p = avatar::frame_path(dir.path(), 1);
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_err(dir.path());
    assert!(err.contains("00000001.png (frame 1)"), "{err}");
    assert!(err.contains("PNG"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    write_avatar(dir.path());
    std::fs::write(avatar::mask_path(dir.path(), 2), b"garbage").unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("00000002.png (frame 2): not a readable PNG"),
        "{err}"
    );
}

#[test]
fn frame_and_mask_sizes_must_match() {
    let dir = tempfile::tempdir().unwrap();
    write_avatar(dir.path());
    Image::new(W + 1, H, 3)
        .write_png(&avatar::frame_path(dir.path(), 0))
        .unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("(frame 0): frame is 65x48, avatar.json says 64x48"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    write_avatar(dir.path());
    Image::new(10, 10, 1)
        .write_png(&avatar::mask_path(dir.path(), 1))
        .unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("(frame 1): mask is 10x10, its blend box [6,7,36,37] is 30x30"),
        "{err}"
    );
}

#[test]
fn latents_must_have_the_right_shape_and_values() {
    let dir = tempfile::tempdir().unwrap();
    write_avatar(dir.path());
    let lp = dir.path().join("latents.npy");
    NpyF32::new(vec![N - 1, 8, 32, 32], vec![0.0; (N - 1) * 8192])
        .write(&lp)
        .unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("latents have shape [2, 8, 32, 32], expected [3, 8, 32, 32]"),
        "{err}"
    );

    NpyF32::new(vec![N, 4, 32, 32], vec![0.0; N * 4096])
        .write(&lp)
        .unwrap();
    assert!(load_err(dir.path()).contains("expected [3, 8, 32, 32]"));

    let mut data = vec![0.0; N * 8192];
    data[8192 + 5] = f32::NAN;
    NpyF32::new(vec![N, 8, 32, 32], data).write(&lp).unwrap();
    let err = load_err(dir.path());
    assert!(err.contains("(frame 1): latents contain NaN"), "{err}");

    let bytes = std::fs::read(&lp).unwrap();
    std::fs::write(&lp, &bytes[..bytes.len() - 100]).unwrap();
    assert!(load_err(dir.path()).contains("truncated"));

    std::fs::remove_file(&lp).unwrap();
    assert!(load_err(dir.path()).contains("latents.npy"));
}

#[test]
fn grayscale_and_rgba_pngs_are_converted() {
    let dir = tempfile::tempdir().unwrap();
    let rgba = Image::from_fn(4, 2, 4, |x, y, c| {
        if c == 3 {
            128
        } else {
            (x * 10 + y + c as u32) as u8
        }
    });
    let p = dir.path().join("a.png");
    rgba.write_png(&p).unwrap();
    let rgb = Image::read_png(&p, 3).unwrap();
    assert_eq!(rgb.data[..6], [0, 1, 2, 10, 11, 12]);
    let gray = Image::read_png(&p, 1).unwrap();
    assert_eq!(
        gray.data[1],
        (0.299f32 * 10.0 + 0.587 * 11.0 + 0.114 * 12.0).round() as u8
    );
}

/// Every frame and mask of a loaded avatar, compared with decoding its PNGs.
fn assert_matches_pngs(a: &Avatar, dir: &Path) {
    for i in 0..a.len() {
        let frame = Image::read_png(&avatar::frame_path(dir, i), 3).unwrap();
        assert!(a.frame(i) == frame, "frame {i}");
        let mask = Image::read_png(&avatar::mask_path(dir, i), 1).unwrap();
        assert!(a.mask(i) == mask, "mask {i}");
    }
}

#[test]
fn old_folder_gets_a_pixel_file_identical_to_its_pngs() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    write_avatar(dir.path());
    let raw = dir.path().join(avatar::raw::RAW_FILE);
    assert!(raw.is_file(), "write makes the pixel file");
    // A folder from before the pixel file: it is made on the first load.
    std::fs::remove_file(&raw).unwrap();
    let a = Avatar::load_with_cache(dir.path(), cache.path()).unwrap();
    assert!(
        a.storage().contains("made from the PNGs"),
        "{}",
        a.storage()
    );
    assert!(a.is_mapped() && raw.is_file());
    assert_matches_pngs(&a, dir.path());
    // The second load maps it as it is.
    let b = Avatar::load_with_cache(dir.path(), cache.path()).unwrap();
    assert!(!b.storage().contains("made"), "{}", b.storage());
    assert_matches_pngs(&b, dir.path());
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
}

#[test]
fn truncated_corrupt_or_stale_pixel_file_is_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    write_avatar(dir.path());
    let raw = dir.path().join(avatar::raw::RAW_FILE);
    let good = std::fs::read(&raw).unwrap();
    let load = || Avatar::load_with_cache(dir.path(), cache.path()).unwrap();

    std::fs::write(&raw, &good[..good.len() - 1]).unwrap();
    let a = load();
    let s = a.storage();
    assert!(s.contains("avatar.raw: ") && s.contains("truncated"), "{s}");
    assert!(s.contains("made from the PNGs"), "{s}");
    assert_matches_pngs(&a, dir.path());
    assert_eq!(std::fs::read(&raw).unwrap(), good);

    // A flipped byte in the last frame.
    let mut bad = good.clone();
    let o = avatar::raw::DATA_OFFSET as usize + (N - 1) * (W * H * 3) as usize + 7;
    bad[o] ^= 0x40;
    std::fs::write(&raw, &bad).unwrap();
    let a = load();
    assert!(a.storage().contains("frame checksum"), "{}", a.storage());
    assert_matches_pngs(&a, dir.path());

    // A frame PNG replaced after the pixel file was made.
    Image::from_fn(W, H, 3, |x, _, _| x as u8)
        .write_png(&avatar::frame_path(dir.path(), 1))
        .unwrap();
    let a = load();
    assert!(a.storage().contains("other sources"), "{}", a.storage());
    assert_eq!(a.frame(1).data[3 * 5], 5);
    assert_matches_pngs(&a, dir.path());
}

#[test]
fn unwritable_directory_uses_the_cache_then_memory() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    write_avatar(dir.path());
    // A directory where the pixel file should be: it can be neither read nor replaced.
    let raw = dir.path().join(avatar::raw::RAW_FILE);
    std::fs::remove_file(&raw).unwrap();
    std::fs::create_dir(&raw).unwrap();
    let a = Avatar::load_with_cache(dir.path(), cache.path()).unwrap();
    let s = a.storage();
    assert!(s.contains(&cache.path().display().to_string()), "{s}");
    assert!(a.is_mapped());
    assert_matches_pngs(&a, dir.path());
    let b = Avatar::load_with_cache(dir.path(), cache.path()).unwrap();
    assert!(!b.storage().contains("made from"), "{}", b.storage());
    assert!(b.is_mapped());

    // No cache folder can be made (a file is in the way): decoded into memory.
    let blocked = cache.path().join("file");
    std::fs::write(&blocked, b"x").unwrap();
    let c = Avatar::load_with_cache(dir.path(), &blocked.join("avatars")).unwrap();
    assert!(!c.is_mapped());
    assert!(
        c.storage().contains("decoded into memory"),
        "{}",
        c.storage()
    );
    assert_matches_pngs(&c, dir.path());
}

#[test]
fn face_crops_are_made_once_per_avatar() {
    let dir = tempfile::tempdir().unwrap();
    write_avatar(dir.path());
    let a = Avatar::load_shared(dir.path()).unwrap();
    let b = Avatar::load_shared(dir.path()).unwrap();
    let crop = a.face_crop(2);
    assert!(std::ptr::eq(crop, b.face_crop(2)));
    let fb = a.manifest.frames[2].face_box;
    let reference = avatar::prepare::face_crop(
        &Image::read_png(&avatar::frame_path(dir.path(), 2), 3).unwrap(),
        fb,
    );
    assert_eq!(*crop, reference);
    assert_eq!((crop.width, crop.height), (256, 256));
}
