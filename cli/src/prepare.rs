//! `livetalk prepare-avatar`: a video or a still image -> avatar directory v1.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use gst::prelude::*;
use gstlivetalk::avatar::parsing::{self, ParsingOptions};
use gstlivetalk::avatar::prepare::{self, PrepareOptions};
use gstlivetalk::avatar::{Avatar, BBox, FrameInfo, Image, LATENT_LEN, Manifest};
use gstlivetalk::imageops;
use gstlivetalk::inference::{self, Input, InputData, SessionRequest, contract};

use crate::progress::Progress;

/// The VAE's latent scale (sd-vae-ft-mse), applied to the encoder's mean.
const LATENT_SCALE: f32 = 0.18215;

#[derive(clap::Args)]
pub struct Args {
    /// A video (any format GStreamer decodes) or a still image.
    pub input: PathBuf,
    /// Output avatar directory.
    #[arg(short, long)]
    pub output: PathBuf,
    /// For a still image: length of the idle loop in seconds.
    #[arg(long, default_value_t = 4.0)]
    pub seconds: f64,
    /// For a still image: gentle breathing and head sway, so the idle loop is not a frozen photo.
    #[arg(long)]
    pub idle_motion: bool,
    /// Frames per second of the avatar.
    #[arg(long, default_value_t = 25)]
    pub fps: u32,
    /// At most this many frames from a video.
    #[arg(long)]
    pub max_frames: Option<usize>,
    /// Shift the face box's top edge by this many pixels (MuseTalk's bbox_shift).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub bbox_shift: i32,
    /// Pixels added below the chin (MuseTalk v1.5's extra_margin).
    #[arg(long, default_value_t = 10)]
    pub extra_margin: i32,
    /// A fixed face box x,y,w,h for every frame (fixed camera), instead of detection.
    #[arg(long, value_parser = parse_box)]
    pub face_box: Option<BBox>,
    /// VAE encoder ONNX for the MuseTalk latents (without it: no latents; lipwarp still works).
    #[arg(long)]
    pub vae_encoder: Option<PathBuf>,
    /// Face-parsing ONNX (BiSeNet, see models/export_face_parsing.py) for MuseTalk's parsed
    /// paste-back mask; without it the mask is a geometric lower-face ellipse.
    #[arg(long)]
    pub face_parsing: Option<PathBuf>,
    /// Which parsed regions make the mask: jaw (MuseTalk v1.5), raw (v1.0) or neck.
    #[arg(long, default_value = "jaw")]
    pub parsing_mode: parsing::Mode,
    /// Jaw mode: half-width in parsing pixels (of 512) of the band left of the centre where
    /// the jaw keeps its full dilation (MuseTalk's left_cheek_width).
    #[arg(long, default_value_t = 90)]
    pub left_cheek_width: u32,
    /// Jaw mode: the same right of the centre (MuseTalk's right_cheek_width).
    #[arg(long, default_value_t = 90)]
    pub right_cheek_width: u32,
    /// Device for the VAE encoder and the face parser.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print a JSON summary at the end.
    #[arg(long)]
    pub json: bool,
}

fn parse_box(s: &str) -> Result<BBox, String> {
    let v: Vec<i32> = s
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<i32>()
                .map_err(|_| format!("'{s}': expected x,y,w,h"))
        })
        .collect::<Result<_, _>>()?;
    match v[..] {
        [x, y, w, h] if w > 0 && h > 0 => Ok(BBox::new(x, y, x + w, y + h)),
        _ => Err(format!("'{s}': expected x,y,w,h with positive w,h")),
    }
}

/// Decodes a video or image to RGB frames at `fps` (a still image gives one frame).
pub fn decode_frames(path: &Path, fps: u32, max: Option<usize>) -> anyhow::Result<Vec<Image>> {
    if !path.is_file() {
        bail!("{}: no such file", path.display());
    }
    let uri = gst::glib::filename_to_uri(path.canonicalize()?, None)?;
    let pipeline = gst::parse::launch(&format!(
        "uridecodebin uri=\"{uri}\" ! videoconvert ! videorate drop-only=false ! \
         video/x-raw,format=RGB,framerate={fps}/1,pixel-aspect-ratio=1/1 ! appsink name=sink sync=false"
    ))?
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing)?;
    let mut frames = Vec::new();
    let mut info: Option<gst_video_info::Info> = None;
    let bus = pipeline.bus().unwrap();
    loop {
        if max.is_some_and(|m| frames.len() >= m) {
            break;
        }
        if let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(200)) {
            if info.is_none() {
                let caps = sample.caps().context("no caps")?;
                let s = caps.structure(0).context("empty caps")?;
                info = Some(gst_video_info::Info {
                    width: s.get::<i32>("width")? as u32,
                    height: s.get::<i32>("height")? as u32,
                });
            }
            let i = info.as_ref().unwrap();
            let buf = sample.buffer().context("sample without buffer")?;
            let map = buf.map_readable()?;
            // RGB rows are padded to 4 bytes in GStreamer's default layout.
            let stride = (i.width as usize * 3).div_ceil(4) * 4;
            let mut img = Image::new(i.width, i.height, 3);
            for y in 0..i.height as usize {
                img.data[y * i.width as usize * 3..(y + 1) * i.width as usize * 3]
                    .copy_from_slice(&map[y * stride..y * stride + i.width as usize * 3]);
            }
            frames.push(img);
        } else if sink.is_eos() {
            break;
        }
        if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error])
            && let gst::MessageView::Error(e) = msg.view()
        {
            let _ = pipeline.set_state(gst::State::Null);
            bail!("cannot decode {}: {}", path.display(), e.error());
        }
    }
    pipeline.set_state(gst::State::Null)?;
    if frames.is_empty() {
        bail!("{}: no video frames", path.display());
    }
    Ok(frames)
}

mod gst_video_info {
    pub struct Info {
        pub width: u32,
        pub height: u32,
    }
}

static FACE_MODEL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seeta_fd_frontal_v1.0.bin"));

/// Largest face in the frame (rustface, SeetaFace frontal detector).
pub struct FaceDetector(Box<dyn rustface::Detector>);

impl FaceDetector {
    pub fn new() -> anyhow::Result<Self> {
        let model = rustface::read_model(FACE_MODEL).context("reading the face detector model")?;
        let mut d = rustface::create_detector_with_model(model);
        d.set_min_face_size(40);
        d.set_score_thresh(2.0);
        d.set_pyramid_scale_factor(0.8);
        d.set_slide_window_step(4, 4);
        Ok(Self(d))
    }

    pub fn detect(&mut self, frame: &Image) -> Option<BBox> {
        let gray: Vec<u8> = frame
            .data
            .chunks_exact(3)
            .map(|p| {
                (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32).round() as u8
            })
            .collect();
        let img = rustface::ImageData::new(&gray, frame.width, frame.height);
        self.0
            .detect(&img)
            .into_iter()
            .max_by_key(|f| f.bbox().width() * f.bbox().height())
            .map(|f| {
                let b = f.bbox();
                BBox::new(
                    b.x(),
                    b.y(),
                    b.x() + b.width() as i32,
                    b.y() + b.height() as i32,
                )
            })
    }
}

/// Idle motion of a still: small breathing scale, head sway and nod, periodic over the loop
/// so that the ping-pong playback is smooth. Returns the output-to-source map of frame `i`.
fn idle_motion(i: usize, n: usize, centre: (f64, f64)) -> imageops::Affine {
    let t = i as f64 / n.max(1) as f64 * std::f64::consts::PI; // half a period over the loop
    let angle = 0.008 * (t).sin() - 0.004 * (2.0 * t).sin();
    let scale = 1.0 + 0.006 * (t).sin().powi(2);
    let tx = 1.5 * (t).sin();
    let ty = -(2.0 * t).sin().abs();
    imageops::similarity(centre.0, centre.1, angle, scale, tx, ty)
}

fn transform_box(m: &imageops::Affine, b: BBox) -> BBox {
    let corners = [(b.x1, b.y1), (b.x2, b.y1), (b.x1, b.y2), (b.x2, b.y2)]
        .map(|(x, y)| imageops::affine_forward(m, x as f64, y as f64));
    let xs = corners.map(|c| c.0);
    let ys = corners.map(|c| c.1);
    let min = |v: [f64; 4]| v.iter().copied().fold(f64::INFINITY, f64::min).round() as i32;
    let max = |v: [f64; 4]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max).round() as i32;
    BBox::new(min(xs), min(ys), max(xs), max(ys))
}

#[derive(serde::Serialize)]
struct Summary {
    output: String,
    frames: usize,
    width: u32,
    height: u32,
    fps: u32,
    latents: bool,
    /// "face-parsing (jaw)" or "geometric".
    mask: String,
    frames_without_face: Vec<usize>,
    seconds: f64,
    seconds_per_frame: f64,
}

/// Loads a model for `device` (falling back to CPU with a warning when the GPU is missing).
fn load(
    path: &Path,
    c: &'static contract::ModelContract,
    device: &str,
) -> anyhow::Result<std::sync::Arc<inference::SharedSession>> {
    let mut req = SessionRequest::new(path, c);
    req.device = device.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let session = inference::load_session(&req)?;
    if let Some(why) = &session.fallback {
        eprintln!("warning: {why}");
    }
    Ok(session)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let start = Instant::now();
    let quiet = a.json;
    let mut frames = decode_frames(&a.input, a.fps, a.max_frames)?;
    let still = frames.len() == 1;
    let opts = PrepareOptions {
        bbox_shift: a.bbox_shift,
        extra_margin: a.extra_margin,
        ..Default::default()
    };
    let (w, h) = (frames[0].width, frames[0].height);

    let mut detector = FaceDetector::new()?;
    let mut missing = Vec::new();
    let faces: Vec<BBox> = if still {
        let face = match a.face_box {
            Some(b) => b,
            None => detector
                .detect(&frames[0])
                .with_context(|| format!("no face found in {}", a.input.display()))?,
        };
        let n = ((a.seconds * a.fps as f64).round() as usize).max(1);
        let base = frames.pop().unwrap();
        let centre = (
            (face.x1 + face.x2) as f64 / 2.0,
            face.y2 as f64 + face.height() as f64,
        );
        let mut p = Progress::new("frames", n as u64, quiet);
        let mut boxes = Vec::with_capacity(n);
        for i in 0..n {
            if a.idle_motion {
                let m = idle_motion(i, n, centre);
                frames.push(imageops::warp_affine(&base, &m));
                boxes.push(transform_box(&m, face));
            } else {
                frames.push(base.clone());
                boxes.push(face);
            }
            p.inc(1);
        }
        p.finish();
        boxes
    } else if let Some(b) = a.face_box {
        vec![b; frames.len()]
    } else {
        let mut p = Progress::new("face detection", frames.len() as u64, quiet);
        let detected: Vec<Option<BBox>> = frames
            .iter()
            .map(|f| {
                let d = detector.detect(f);
                p.inc(1);
                d
            })
            .collect();
        p.finish();
        missing = (0..detected.len())
            .filter(|&i| detected[i].is_none())
            .collect();
        if !missing.is_empty() && !quiet {
            eprintln!(
                "no face found in {} frame(s): {:?}; using their neighbours' boxes",
                missing.len(),
                missing
            );
        }
        prepare::smooth_boxes(&detected, 2)
            .map_err(|_| anyhow::anyhow!("no face found in any frame of {}", a.input.display()))?
    };

    let infos: Vec<FrameInfo> = faces
        .iter()
        .enumerate()
        .map(|(i, &f)| {
            prepare::frame_info(f, w, h, &opts)
                .with_context(|| format!("frame {i}: face box {f} is outside the {w}x{h} frame"))
        })
        .collect::<anyhow::Result<_>>()?;
    let masks: Vec<Image> = match &a.face_parsing {
        None => infos
            .iter()
            .map(|i| prepare::geometric_mask(i, &opts))
            .collect(),
        Some(path) => {
            let session = load(path, &contract::FACE_PARSING, &a.device)?;
            let po = ParsingOptions {
                mode: a.parsing_mode,
                left_cheek_width: a.left_cheek_width,
                right_cheek_width: a.right_cheek_width,
            };
            let side = parsing::SIZE as usize;
            let mut p = Progress::new("face parsing", frames.len() as u64, quiet);
            let mut masks = Vec::with_capacity(frames.len());
            for (frame, info) in frames.iter().zip(&infos) {
                let input = parsing::network_input(frame, info, &opts);
                let out = session.run(&[Input {
                    name: "image",
                    shape: &[1, 3, side, side],
                    data: InputData::F32(&input),
                }])?;
                let classes = parsing::argmax(&out[0].data, parsing::CLASSES);
                let region = parsing::region(&classes, &po);
                masks.push(parsing::blend_mask(&region, info, &opts));
                p.inc(1);
            }
            p.finish();
            masks
        }
    };

    let latents = match &a.vae_encoder {
        None => None,
        Some(path) => {
            let session = load(path, &contract::VAE_ENCODER, &a.device)?;
            let mut p = Progress::new("latents", frames.len() as u64, quiet);
            let mut all = Vec::with_capacity(frames.len() * LATENT_LEN);
            for (frame, info) in frames.iter().zip(&infos) {
                let crop = prepare::face_crop(frame, info.face_box);
                let (masked, full) = prepare::vae_inputs(&crop);
                let mut batch = masked;
                batch.extend_from_slice(&full);
                let out = session.run(&[Input {
                    name: "image",
                    shape: &[2, 3, 256, 256],
                    data: InputData::F32(&batch),
                }])?;
                // [masked latent (4 ch), reference latent (4 ch)] scaled: MuseTalk's 8 channels.
                all.extend(out[0].data.iter().map(|v| v * LATENT_SCALE));
                p.inc(1);
            }
            p.finish();
            Some(all)
        }
    };

    let manifest = Manifest::new(
        a.fps,
        w,
        h,
        &a.input
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        infos,
    );
    if a.output.exists() {
        std::fs::remove_dir_all(&a.output)
            .with_context(|| format!("removing the old {}", a.output.display()))?;
    }
    let mut p = Progress::new("writing", 1, quiet);
    Avatar::write(&a.output, &manifest, &frames, &masks, latents.as_deref())?;
    p.inc(1);
    p.finish();
    // Read back through the loader: what we wrote must validate.
    Avatar::load(&a.output)?;

    let secs = start.elapsed().as_secs_f64();
    let summary = Summary {
        output: a.output.display().to_string(),
        frames: frames.len(),
        width: w,
        height: h,
        fps: a.fps,
        latents: latents.is_some(),
        mask: match &a.face_parsing {
            Some(_) => format!("face-parsing ({:?})", a.parsing_mode).to_lowercase(),
            None => "geometric".into(),
        },
        frames_without_face: missing,
        seconds: secs,
        seconds_per_frame: secs / frames.len() as f64,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        eprintln!(
            "avatar {}: {} frames {}x{} at {} fps, {} mask{} in {:.1} s ({:.3} s/frame)",
            summary.output,
            summary.frames,
            w,
            h,
            a.fps,
            summary.mask,
            if summary.latents {
                ", with latents"
            } else {
                ", no latents"
            },
            secs,
            summary.seconds_per_frame
        );
    }
    Ok(())
}
