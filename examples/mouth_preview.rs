//! Renders the lipwarp mouth shapes of an avatar's first frame side by side, to look at.
//!
//! cargo run --release --example mouth_preview -- AVATAR_DIR OUT.png
use gstlivetalk::avatar::{Avatar, Image, prepare};
use gstlivetalk::mouth::{MouthGeometry, MouthShape, warp_mouth};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: mouth_preview AVATAR_DIR OUT.png");
        std::process::exit(2);
    }
    let avatar = Avatar::load(std::path::Path::new(&args[1])).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let crop = prepare::face_crop(avatar.frame(0), avatar.manifest.frames[0].face_box);
    let shapes = [(0.0, 0.5), (0.35, 0.5), (0.7, 0.2), (1.0, 0.5), (1.0, 1.0)];
    let mut strip = Image::new(256 * shapes.len() as u32, 256, 3);
    for (k, (open, width)) in shapes.iter().enumerate() {
        let img = warp_mouth(
            &crop,
            MouthShape {
                open: *open,
                width: *width,
            },
            &MouthGeometry::default(),
        );
        for y in 0..256usize {
            let dst = (y * strip.width as usize + k * 256) * 3;
            strip.data[dst..dst + 256 * 3]
                .copy_from_slice(&img.data[y * 256 * 3..(y + 1) * 256 * 3]);
        }
    }
    strip.write_png(std::path::Path::new(&args[2])).unwrap();
}
