//! `livetalk import-avatar` on a MuseTalk-layout folder with real torch pickles
//! (tests/fixtures/musetalk-avatar, made by tests/fixtures/make_musetalk_avatar.py).

use std::path::Path;
use std::process::Command;

use gstlivetalk::avatar::{Avatar, BBox, Image};
use gstlivetalk::npy::NpyF32;

#[test]
fn imports_a_musetalk_avatar_folder() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/musetalk-avatar");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("imported");
    let o = Command::new(env!("CARGO_BIN_EXE_livetalk"))
        .arg("import-avatar")
        .arg(&fixture)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("ping-pong cycle folded"));
    let a = Avatar::load(&out).unwrap();
    assert_eq!(a.len(), 3);
    assert_eq!((a.manifest.width, a.manifest.height), (96, 80));
    // Frames as they were.
    for i in 0..3 {
        let src = Image::read_png(&fixture.join(format!("full_imgs/{i:08}.png")), 3).unwrap();
        assert_eq!(a.frame(i), src);
    }
    // Boxes: face boxes as pickled; the last crop box [47,20,107,80] clipped to the 96-wide frame.
    assert_eq!(a.manifest.frames[0].face_box, BBox::new(30, 20, 66, 62));
    assert_eq!(a.manifest.frames[0].blend_box, BBox::new(17, 10, 79, 72));
    assert_eq!(a.manifest.frames[2].blend_box, BBox::new(47, 20, 96, 80));
    let src_mask = Image::read_png(&fixture.join("mask/00000002.png"), 1).unwrap();
    assert_eq!(a.mask(2).width, 49);
    assert_eq!(a.mask(2).data[..49], src_mask.data[..49]);
    // Latents from latents.pt, bit for bit.
    let expected = NpyF32::read(&fixture.join("expected_latents.npy")).unwrap();
    assert_eq!(a.latents, expected.data);
}

#[test]
fn a_broken_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_livetalk"))
        .arg("import-avatar")
        .arg(dir.path())
        .arg("-o")
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("coords.pkl: missing"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
