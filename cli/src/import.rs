//! `livetalk import-avatar`: a MuseTalk / LiveTalking avatar folder -> avatar directory v1.
//!
//! Their folders hold `full_imgs/` (the ping-pong cycle written out: frames 0..N-1, N-1..0),
//! `mask/` (crop-box sized masks), `coords.pkl` (face boxes), `mask_coords.pkl` (crop boxes,
//! possibly reaching outside the frame) and `latents.pt` (torch tensors [1, 8, 32, 32]).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use gstlivetalk::avatar::{Avatar, BBox, FrameInfo, Image, Manifest};
use gstlivetalk::imageops;
use gstlivetalk::npy::NpyF32;

#[derive(clap::Args)]
pub struct Args {
    /// The MuseTalk / LiveTalking avatar folder.
    pub input: PathBuf,
    /// Output avatar directory.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Frames per second of the avatar.
    #[arg(long, default_value_t = 25)]
    pub fps: u32,
}

fn numbered_pngs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter_map(|p| {
            let n = p.file_stem()?.to_str()?.parse::<u64>().ok()?;
            Some((n, p))
        })
        .collect();
    files.sort();
    if let Some((_, p)) = files
        .iter()
        .find(|(_, p)| p.extension().is_none_or(|e| e != "png"))
    {
        bail!(
            "{}: only PNG frames are read; convert it first",
            p.display()
        );
    }
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

fn read_boxes(path: &Path) -> anyhow::Result<Vec<BBox>> {
    let v: Vec<[i32; 4]> = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    Ok(v.into_iter().map(BBox::from).collect())
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let src = &a.input;
    let python = gstlivetalk::paths::cache_dir().join("venv/bin/python");
    if !python.exists() {
        bail!("{} not found: run scripts/setup.sh", python.display());
    }
    let tmp = tempfile::tempdir()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/read_musetalk_avatar.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(src)
        .arg(tmp.path())
        .output()?;
    if !out.status.success() {
        bail!(
            "reading {}: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let faces = read_boxes(&tmp.path().join("coords.json"))?;
    let crops = read_boxes(&tmp.path().join("mask_coords.json"))?;
    let frame_files = numbered_pngs(&src.join("full_imgs"))?;
    let mask_files = numbered_pngs(&src.join("mask"))?;
    let n = frame_files.len();
    if n == 0 || faces.len() != n || crops.len() != n || mask_files.len() != n {
        bail!(
            "{}: {} frames, {} masks, {} face boxes, {} crop boxes: they must agree",
            src.display(),
            n,
            mask_files.len(),
            faces.len(),
            crops.len()
        );
    }
    let frames: Vec<Image> = frame_files
        .iter()
        .map(|p| Image::read_png(p, 3).map_err(|e| anyhow::anyhow!("{}: {e}", p.display())))
        .collect::<anyhow::Result<_>>()?;
    // MuseTalk stores the cycle forward then backward; we store it forward once.
    let mirrored = n % 2 == 0
        && (0..n / 2).all(|i| faces[i] == faces[n - 1 - i] && frames[i] == frames[n - 1 - i]);
    let keep = if mirrored { n / 2 } else { n };
    let (w, h) = (frames[0].width, frames[0].height);
    let frame_rect = BBox::new(0, 0, w as i32, h as i32);
    let clip = |b: BBox| {
        BBox::new(
            b.x1.max(0),
            b.y1.max(0),
            b.x2.min(w as i32),
            b.y2.min(h as i32),
        )
    };
    let mut infos = Vec::with_capacity(keep);
    let mut masks = Vec::with_capacity(keep);
    for i in 0..keep {
        let (face, crop) = (faces[i], crops[i]);
        if face.is_empty() {
            bail!("frame {i}: no face box ({face}, MuseTalk's placeholder when no face was found)");
        }
        if (frames[i].width, frames[i].height) != (w, h) {
            bail!(
                "{}: frame size differs from the first frame's",
                frame_files[i].display()
            );
        }
        let mask = Image::read_png(&mask_files[i], 1)
            .map_err(|e| anyhow::anyhow!("{}: {e}", mask_files[i].display()))?;
        if (mask.width as i32, mask.height as i32) != (crop.width(), crop.height()) {
            bail!(
                "{}: mask is {}x{}, its crop box {crop} is {}x{}",
                mask_files[i].display(),
                mask.width,
                mask.height,
                crop.width(),
                crop.height()
            );
        }
        let blend = clip(crop);
        let face = clip(face);
        if face.is_empty()
            || !blend.contains(&face)
            || !blend.inside(frame_rect.x2 as u32, frame_rect.y2 as u32)
        {
            bail!("frame {i}: face box {face} is not inside its crop box {blend} within the frame");
        }
        masks.push(imageops::crop(&mask, blend.relative_to(&crop)));
        infos.push(FrameInfo {
            face_box: face,
            blend_box: blend,
        });
    }
    let latents = match NpyF32::read(&tmp.path().join("latents.npy")) {
        Ok(l) => {
            if l.shape[0] != n {
                bail!("latents.pt has {} latents for {n} frames", l.shape[0]);
            }
            Some(l.data[..keep * gstlivetalk::avatar::LATENT_LEN].to_vec())
        }
        Err(_) => None,
    };
    let manifest = Manifest::new(
        a.fps,
        w,
        h,
        &format!(
            "imported from a MuseTalk/LiveTalking avatar ({})",
            src.file_name()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default()
        ),
        infos,
    );
    Avatar::write(
        &a.output,
        &manifest,
        &frames[..keep],
        &masks,
        latents.as_deref(),
    )?;
    Avatar::load(&a.output)?;
    eprintln!(
        "avatar {}: {keep} frames {w}x{h}{}{}",
        a.output.display(),
        if mirrored {
            " (MuseTalk's ping-pong cycle folded)"
        } else {
            ""
        },
        if latents.is_some() {
            ", with latents"
        } else {
            ""
        }
    );
    Ok(())
}
