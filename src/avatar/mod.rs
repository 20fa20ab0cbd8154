//! The avatar directory, format v1: what `livetalk prepare-avatar` writes and the elements read.
//!
//! ```text
//! avatar.json        format "livetalk-avatar", version 1, fps, width, height, source,
//!                    frames: [{face_box: [x1,y1,x2,y2], blend_box: [x1,y1,x2,y2]}, ...],
//!                    latents: "latents.npy" or null
//! frames/%08d.png    RGB, width x height, one per frame, stored forward
//! masks/%08d.png     gray, blend-box sized: the feathered paste-back mask of each frame
//! latents.npy        [N,8,32,32] f32: masked-lower-half latent ++ reference latent, scaled
//!                    by 0.18215 (MuseTalk's layout); absent for weight-free lip drivers
//! avatar.raw         every frame and mask uncompressed (see [`raw`]): what loading maps;
//!                    derived from the PNGs, made again when missing or out of date
//! ```
//!
//! Boxes are pixel rectangles, `x2`/`y2` exclusive. Loading checks everything and reports
//! the first problem with the file and frame it concerns. An avatar is loaded once per
//! directory and shared ([`Avatar::load_shared`]), with its frames mapped from `avatar.raw`
//! (pages shared by every session and process) and its face crops made once per avatar.
//! Playback ping-pongs ([`mirror_index`]).

mod image;
pub mod parsing;
pub mod prepare;
pub mod raw;

pub use image::{Image, ImageRef};

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::npy::NpyF32;

pub const FORMAT_NAME: &str = "livetalk-avatar";
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "avatar.json";
pub const LATENTS_FILE: &str = "latents.npy";
/// Latent layout per frame: 8 channels (4 masked + 4 reference) of 32x32.
pub const LATENT_SHAPE: [usize; 3] = [8, 32, 32];
pub const LATENT_LEN: usize = 8 * 32 * 32;

/// A pixel rectangle, `x2`/`y2` exclusive; serialised as `[x1, y1, x2, y2]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "[i32; 4]", into = "[i32; 4]")]
pub struct BBox {
    pub x1: i32,
    pub y1: i32,
    pub x2: i32,
    pub y2: i32,
}

impl From<[i32; 4]> for BBox {
    fn from(v: [i32; 4]) -> Self {
        Self {
            x1: v[0],
            y1: v[1],
            x2: v[2],
            y2: v[3],
        }
    }
}

impl From<BBox> for [i32; 4] {
    fn from(b: BBox) -> Self {
        [b.x1, b.y1, b.x2, b.y2]
    }
}

impl fmt::Display for BBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{},{},{},{}]", self.x1, self.y1, self.x2, self.y2)
    }
}

impl BBox {
    pub fn new(x1: i32, y1: i32, x2: i32, y2: i32) -> Self {
        Self { x1, y1, x2, y2 }
    }
    pub fn width(&self) -> i32 {
        self.x2 - self.x1
    }
    pub fn height(&self) -> i32 {
        self.y2 - self.y1
    }
    pub fn is_empty(&self) -> bool {
        self.width() <= 0 || self.height() <= 0
    }
    /// Whether the box lies inside a `width` x `height` image.
    pub fn inside(&self, width: u32, height: u32) -> bool {
        self.x1 >= 0 && self.y1 >= 0 && self.x2 <= width as i32 && self.y2 <= height as i32
    }
    /// The box in the coordinates of an image whose top-left corner is `origin`'s.
    pub fn relative_to(&self, origin: &BBox) -> BBox {
        BBox::new(
            self.x1 - origin.x1,
            self.y1 - origin.y1,
            self.x2 - origin.x1,
            self.y2 - origin.y1,
        )
    }
    pub fn contains(&self, other: &BBox) -> bool {
        other.x1 >= self.x1 && other.y1 >= self.y1 && other.x2 <= self.x2 && other.y2 <= self.y2
    }
}

/// Per-frame geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameInfo {
    /// The face (the region the 256x256 crop covers).
    pub face_box: BBox,
    /// The region pasted back (the face box expanded, as MuseTalk's crop box); mask-sized.
    pub blend_box: BBox,
}

/// `avatar.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub fps: u32,
    pub width: u32,
    pub height: u32,
    /// Where the avatar was made from (file name, importer), for the user's information.
    #[serde(default)]
    pub source: String,
    pub frames: Vec<FrameInfo>,
    /// File name of the latents, or `None` for avatars without MuseTalk latents.
    #[serde(default)]
    pub latents: Option<String>,
}

impl Manifest {
    pub fn new(fps: u32, width: u32, height: u32, source: &str, frames: Vec<FrameInfo>) -> Self {
        Self {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            fps,
            width,
            height,
            source: source.into(),
            frames,
            latents: None,
        }
    }
}

/// A problem with an avatar directory: the file, the frame (if one), what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvatarError {
    pub path: PathBuf,
    pub frame: Option<usize>,
    pub message: String,
}

impl fmt::Display for AvatarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "avatar {}", self.path.display())?;
        if let Some(i) = self.frame {
            write!(f, " (frame {i})")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for AvatarError {}

fn err(path: &Path, frame: Option<usize>, message: impl Into<String>) -> AvatarError {
    AvatarError {
        path: path.to_path_buf(),
        frame,
        message: message.into(),
    }
}

pub fn frame_path(dir: &Path, i: usize) -> PathBuf {
    dir.join("frames").join(format!("{i:08}.png"))
}

pub fn mask_path(dir: &Path, i: usize) -> PathBuf {
    dir.join("masks").join(format!("{i:08}.png"))
}

/// The ping-pong playback index: 0,1,..,n-1,n-1,..,1,0,0,1,.. for frame counter `i`.
pub fn mirror_index(n: usize, i: u64) -> usize {
    assert!(n > 0, "mirror_index of an empty avatar");
    let n64 = n as u64;
    let j = i % (2 * n64);
    (if j < n64 { j } else { 2 * n64 - 1 - j }) as usize
}

/// A loaded, validated avatar.
#[derive(Debug)]
pub struct Avatar {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// The frames and masks (the layout of [`raw`]), mapped from the pixel file.
    pixels: raw::Pixels,
    /// Byte offset of every mask in `pixels`, and the end of the last one.
    mask_offsets: Vec<usize>,
    /// How the pixels were found (mapped from which file, made anew and why), for the log.
    storage: String,
    /// `N * 8*32*32` f32, or empty when the avatar has no latents.
    pub latents: Vec<f32>,
    /// The 256x256 face crop of every frame, made on first use and shared by every element
    /// that holds this avatar.
    crops: Box<[OnceLock<Image>]>,
}

/// Why filling a pixel file stopped: the avatar's sources are bad (fatal), or the file could
/// not be written (try elsewhere).
enum FillError {
    Source(AvatarError),
    Sink(std::io::Error),
}

impl From<std::io::Error> for FillError {
    fn from(e: std::io::Error) -> Self {
        FillError::Sink(e)
    }
}

impl Avatar {
    pub fn len(&self) -> usize {
        self.manifest.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.manifest.frames.is_empty()
    }

    pub fn has_latents(&self) -> bool {
        !self.latents.is_empty()
    }

    /// The 8x32x32 latent of frame `i`.
    pub fn latent(&self, i: usize) -> &[f32] {
        &self.latents[i * LATENT_LEN..(i + 1) * LATENT_LEN]
    }

    /// RGB frame `i`, `manifest.width` x `manifest.height`, viewed in place.
    pub fn frame(&self, i: usize) -> ImageRef<'_> {
        let len = self.manifest.width as usize * self.manifest.height as usize * 3;
        let o = raw::DATA_OFFSET as usize + i * len;
        ImageRef {
            width: self.manifest.width,
            height: self.manifest.height,
            channels: 3,
            data: &self.pixels[o..o + len],
        }
    }

    /// Every frame in order.
    pub fn frames(&self) -> impl ExactSizeIterator<Item = ImageRef<'_>> {
        (0..self.len()).map(|i| self.frame(i))
    }

    /// The gray paste-back mask of frame `i`, the size of its blend box.
    pub fn mask(&self, i: usize) -> ImageRef<'_> {
        let b = self.manifest.frames[i].blend_box;
        ImageRef {
            width: b.width() as u32,
            height: b.height() as u32,
            channels: 1,
            data: &self.pixels[self.mask_offsets[i]..self.mask_offsets[i + 1]],
        }
    }

    /// The 256x256 face crop of frame `i` (what the lip drivers start from), made on first
    /// use and then shared by every element that holds this avatar.
    pub fn face_crop(&self, i: usize) -> &Image {
        self.crops[i]
            .get_or_init(|| prepare::face_crop(self.frame(i), self.manifest.frames[i].face_box))
    }

    /// How the pixels were loaded: which file is mapped, or why it was made anew.
    pub fn storage(&self) -> &str {
        &self.storage
    }

    /// Whether the frames are mapped from a pixel file (else they were decoded into memory
    /// because no pixel file could be written).
    pub fn is_mapped(&self) -> bool {
        matches!(self.pixels, raw::Pixels::Mapped(_))
    }

    /// Reads and validates an avatar directory. The pixels come from its pixel file
    /// (`avatar.raw`, see [`raw`]), made from the PNGs on the first load if missing or out of
    /// date; where the directory is read-only it goes to `avatars/` in the set-up cache.
    pub fn load(dir: &Path) -> Result<Self, AvatarError> {
        Self::load_with_cache(dir, &crate::paths::cache_dir().join("avatars"))
    }

    /// [`Avatar::load`] with the folder for pixel files of read-only avatar directories.
    pub fn load_with_cache(dir: &Path, cache: &Path) -> Result<Self, AvatarError> {
        let manifest_path = dir.join(MANIFEST_FILE);
        if !dir.is_dir() {
            return Err(err(
                dir,
                None,
                "not a directory (make one with `livetalk prepare-avatar`)",
            ));
        }
        let text = std::fs::read_to_string(&manifest_path).map_err(|e| {
            err(
                &manifest_path,
                None,
                format!(
                    "cannot read ({e}); an avatar directory is made by `livetalk prepare-avatar`"
                ),
            )
        })?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| err(&manifest_path, None, format!("invalid JSON: {e}")))?;
        validate_manifest(&manifest_path, &manifest)?;

        let n = manifest.frames.len();
        for (sub, what) in [("frames", "frame"), ("masks", "mask")] {
            let d = dir.join(sub);
            let count = std::fs::read_dir(&d)
                .map_err(|e| err(&d, None, format!("cannot read {what} directory: {e}")))?
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
                .count();
            if count != n {
                return Err(err(
                    &d,
                    None,
                    format!("{count} {what} files, but avatar.json describes {n} frames"),
                ));
            }
        }

        let mut mask_offsets = Vec::with_capacity(n + 1);
        let mut o =
            raw::DATA_OFFSET as usize + n * manifest.width as usize * manifest.height as usize * 3;
        mask_offsets.push(o);
        for f in &manifest.frames {
            o += f.blend_box.width() as usize * f.blend_box.height() as usize;
            mask_offsets.push(o);
        }
        let expected = expected_header(dir, text.as_bytes(), &manifest)?;
        let (pixels, storage) = load_pixels(dir, cache, &manifest, &expected)?;

        let latents = match &manifest.latents {
            None => Vec::new(),
            Some(name) => {
                let lp = dir.join(name);
                let arr = NpyF32::read(&lp).map_err(|e| err(&lp, None, e.to_string()))?;
                let expected = [n, LATENT_SHAPE[0], LATENT_SHAPE[1], LATENT_SHAPE[2]];
                if arr.shape != expected {
                    return Err(err(
                        &lp,
                        None,
                        format!(
                            "latents have shape {:?}, expected {:?}",
                            arr.shape, expected
                        ),
                    ));
                }
                if let Some(bad) = arr.data.iter().position(|v| !v.is_finite()) {
                    return Err(err(
                        &lp,
                        Some(bad / LATENT_LEN),
                        "latents contain NaN or infinity",
                    ));
                }
                arr.data
            }
        };

        Ok(Avatar {
            dir: dir.to_path_buf(),
            manifest,
            pixels,
            mask_offsets,
            storage,
            latents,
            crops: (0..n).map(|_| OnceLock::new()).collect(),
        })
    }

    /// Loads an avatar once per directory: while one element holds it, others get the same
    /// `Arc`. A changed `avatar.json` (modification time) is loaded anew.
    pub fn load_shared(dir: &Path) -> Result<Arc<Self>, AvatarError> {
        type Key = (PathBuf, Option<SystemTime>);
        static CACHE: LazyLock<Mutex<HashMap<Key, Weak<Avatar>>>> = LazyLock::new(Default::default);
        if !dir.is_dir() {
            return Err(err(
                dir,
                None,
                "not a directory (make one with `livetalk prepare-avatar`)",
            ));
        }
        let canonical = dir
            .canonicalize()
            .map_err(|e| err(dir, None, format!("cannot open: {e}")))?;
        let mtime = std::fs::metadata(canonical.join(MANIFEST_FILE))
            .and_then(|m| m.modified())
            .ok();
        let key = (canonical.clone(), mtime);
        let mut cache = CACHE.lock().unwrap();
        cache.retain(|_, w| w.strong_count() > 0);
        if let Some(a) = cache.get(&key).and_then(Weak::upgrade) {
            return Ok(a);
        }
        let avatar = Arc::new(Self::load(&canonical)?);
        cache.insert(key, Arc::downgrade(&avatar));
        Ok(avatar)
    }

    /// Writes an avatar directory (creating it). `latents`, when given, is `N * 8*32*32` f32.
    pub fn write(
        dir: &Path,
        manifest: &Manifest,
        frames: &[Image],
        masks: &[Image],
        latents: Option<&[f32]>,
    ) -> Result<(), AvatarError> {
        let mut manifest = manifest.clone();
        manifest.latents = latents.map(|_| LATENTS_FILE.to_string());
        validate_manifest(&dir.join(MANIFEST_FILE), &manifest)?;
        let n = manifest.frames.len();
        if frames.len() != n || masks.len() != n {
            return Err(err(
                dir,
                None,
                format!(
                    "{} frames and {} masks for {n} frame descriptions",
                    frames.len(),
                    masks.len()
                ),
            ));
        }
        for (i, f) in frames.iter().enumerate() {
            if (f.width, f.height, f.channels) != (manifest.width, manifest.height, 3) {
                return Err(err(
                    &frame_path(dir, i),
                    Some(i),
                    "frame size or channels differ from avatar.json",
                ));
            }
        }
        for (i, (m, info)) in masks.iter().zip(&manifest.frames).enumerate() {
            let b = info.blend_box;
            if (m.width as i32, m.height as i32, m.channels) != (b.width(), b.height(), 1) {
                return Err(err(
                    &mask_path(dir, i),
                    Some(i),
                    "mask is not a gray image of its blend box's size",
                ));
            }
        }
        for sub in ["frames", "masks"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| err(dir, None, e.to_string()))?;
        }
        for i in 0..n {
            let fp = frame_path(dir, i);
            frames[i].write_png(&fp).map_err(|m| err(&fp, Some(i), m))?;
            let mp = mask_path(dir, i);
            masks[i].write_png(&mp).map_err(|m| err(&mp, Some(i), m))?;
        }
        if let Some(l) = latents {
            let lp = dir.join(LATENTS_FILE);
            if l.len() != n * LATENT_LEN {
                return Err(err(
                    &lp,
                    None,
                    format!("{} latent values for {n} frames", l.len()),
                ));
            }
            NpyF32::new(vec![n, 8, 32, 32], l.to_vec())
                .write(&lp)
                .map_err(|e| err(&lp, None, e.to_string()))?;
        }
        let mp = dir.join(MANIFEST_FILE);
        let json = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
        std::fs::write(&mp, &json).map_err(|e| err(&mp, None, e.to_string()))?;
        // The pixel file last: its fingerprint covers the files written above.
        let header = expected_header(dir, json.as_bytes(), &manifest)?;
        let rp = dir.join(raw::RAW_FILE);
        write_pixel_file(&rp, &header, |w| {
            frames.iter().try_for_each(|f| w.push_frame(&f.data))?;
            masks.iter().try_for_each(|m| w.push_mask(&m.data))?;
            Ok(())
        })
        .map_err(|e| match e {
            FillError::Source(e) => e,
            FillError::Sink(e) => err(&rp, None, format!("cannot write: {e}")),
        })
    }
}

/// The pixel-file header an avatar's sources call for (CRCs aside).
fn expected_header(
    dir: &Path,
    manifest_text: &[u8],
    m: &Manifest,
) -> Result<raw::Header, AvatarError> {
    let n = m.frames.len();
    let pngs = (0..n).flat_map(|i| [(i, frame_path(dir, i)), (i, mask_path(dir, i))]);
    let source = raw::fingerprint(manifest_text, pngs).map_err(|(i, p, e)| err(&p, Some(i), e))?;
    Ok(raw::Header {
        width: m.width,
        height: m.height,
        frames: n as u32,
        mask_bytes: m
            .frames
            .iter()
            .map(|f| f.blend_box.width() as u64 * f.blend_box.height() as u64)
            .sum(),
        source,
        crc_first: 0,
        crc_last: 0,
    })
}

/// Where a read-only avatar directory's pixel file goes in the cache folder: named after the
/// directory, with a hash of its full path so that two avatars of one name do not collide.
fn cache_path(dir: &Path, cache: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let hash = crc32fast::hash(dir.as_os_str().as_encoded_bytes());
    cache.join(format!("{name}-{hash:08x}.raw"))
}

/// Maps a valid pixel file, or makes one from the PNGs: in the directory, else in the cache
/// folder, else (neither writable) in memory.
fn load_pixels(
    dir: &Path,
    cache: &Path,
    m: &Manifest,
    expected: &raw::Header,
) -> Result<(raw::Pixels, String), AvatarError> {
    let candidates = [dir.join(raw::RAW_FILE), cache_path(dir, cache)];
    let mut problems = Vec::new();
    for p in &candidates {
        if !p.exists() {
            continue;
        }
        match raw::open(p, expected) {
            Ok(px) if problems.is_empty() => return Ok((px, format!("mapped {}", p.display()))),
            Ok(px) => {
                let why = problems.join("; ");
                return Ok((px, format!("mapped {} ({why})", p.display())));
            }
            Err(e) => problems.push(format!("{}: {e}", p.display())),
        }
    }
    let why = if problems.is_empty() {
        "no pixel file yet".to_string()
    } else {
        problems.join("; ")
    };
    for p in &candidates {
        if p.starts_with(cache) && std::fs::create_dir_all(cache).is_err() {
            continue;
        }
        match write_pixel_file(p, expected, |w| fill_from_pngs(dir, m, w)) {
            Ok(()) => {
                let px = raw::open(p, expected).map_err(|e| err(p, None, e))?;
                return Ok((
                    px,
                    format!("mapped {}, made from the PNGs ({why})", p.display()),
                ));
            }
            Err(FillError::Source(e)) => return Err(e),
            Err(FillError::Sink(e)) => problems.push(format!("cannot write {}: {e}", p.display())),
        }
    }
    let mut w = raw::RawWriter::new(std::io::Cursor::new(Vec::new()), *expected)
        .map_err(|e| err(dir, None, e.to_string()))?;
    match fill_from_pngs(dir, m, &mut w) {
        Ok(()) => {}
        Err(FillError::Source(e)) => return Err(e),
        Err(FillError::Sink(e)) => return Err(err(dir, None, e.to_string())),
    }
    let data = w.finish().map_err(|e| err(dir, None, e.to_string()))?;
    let note = format!(
        "decoded into memory, no pixel file could be written ({})",
        problems.join("; ")
    );
    Ok((raw::Pixels::Heap(data.into_inner()), note))
}

/// Writes a pixel file through a temporary file renamed into place.
fn write_pixel_file(
    path: &Path,
    header: &raw::Header,
    fill: impl FnOnce(&mut raw::RawWriter<std::io::BufWriter<std::fs::File>>) -> Result<(), FillError>,
) -> Result<(), FillError> {
    let tmp = path.with_extension(format!("raw.tmp{}", std::process::id()));
    let result = (|| {
        let file = std::fs::File::create(&tmp)?;
        let mut w = raw::RawWriter::new(std::io::BufWriter::with_capacity(1 << 20, file), *header)?;
        fill(&mut w)?;
        let file = w.finish()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Decodes every frame and mask PNG into `w`, checking their sizes against the manifest.
fn fill_from_pngs<W: std::io::Write + std::io::Seek>(
    dir: &Path,
    m: &Manifest,
    w: &mut raw::RawWriter<W>,
) -> Result<(), FillError> {
    for i in 0..m.frames.len() {
        let fp = frame_path(dir, i);
        let frame = Image::read_png(&fp, 3).map_err(|e| FillError::Source(err(&fp, Some(i), e)))?;
        if (frame.width, frame.height) != (m.width, m.height) {
            return Err(FillError::Source(err(
                &fp,
                Some(i),
                format!(
                    "frame is {}x{}, avatar.json says {}x{}",
                    frame.width, frame.height, m.width, m.height
                ),
            )));
        }
        w.push_frame(&frame.data)?;
    }
    for (i, info) in m.frames.iter().enumerate() {
        let mp = mask_path(dir, i);
        let mask = Image::read_png(&mp, 1).map_err(|e| FillError::Source(err(&mp, Some(i), e)))?;
        let b = info.blend_box;
        if (mask.width as i32, mask.height as i32) != (b.width(), b.height()) {
            return Err(FillError::Source(err(
                &mp,
                Some(i),
                format!(
                    "mask is {}x{}, its blend box {} is {}x{}",
                    mask.width,
                    mask.height,
                    b,
                    b.width(),
                    b.height()
                ),
            )));
        }
        w.push_mask(&mask.data)?;
    }
    Ok(())
}

fn validate_manifest(path: &Path, m: &Manifest) -> Result<(), AvatarError> {
    if m.format != FORMAT_NAME {
        return Err(err(
            path,
            None,
            format!("format is '{}', expected '{FORMAT_NAME}'", m.format),
        ));
    }
    if m.version != FORMAT_VERSION {
        return Err(err(
            path,
            None,
            format!(
                "format version {} is not supported (this build reads version {FORMAT_VERSION})",
                m.version
            ),
        ));
    }
    if m.fps == 0 || m.fps > 240 {
        return Err(err(
            path,
            None,
            format!("fps {} is out of range 1..=240", m.fps),
        ));
    }
    if m.width == 0 || m.height == 0 || m.width > 16384 || m.height > 16384 {
        return Err(err(
            path,
            None,
            format!("frame size {}x{} is out of range", m.width, m.height),
        ));
    }
    if m.frames.is_empty() {
        return Err(err(path, None, "no frames"));
    }
    for (i, f) in m.frames.iter().enumerate() {
        for (name, b) in [("face_box", f.face_box), ("blend_box", f.blend_box)] {
            if b.is_empty() {
                return Err(err(path, Some(i), format!("{name} {b} is empty")));
            }
            if !b.inside(m.width, m.height) {
                return Err(err(
                    path,
                    Some(i),
                    format!(
                        "{name} {b} is not inside the {}x{} frame",
                        m.width, m.height
                    ),
                ));
            }
        }
        if !f.blend_box.contains(&f.face_box) {
            return Err(err(
                path,
                Some(i),
                format!(
                    "blend_box {} does not contain face_box {}",
                    f.blend_box, f.face_box
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_index_ping_pongs() {
        let seq: Vec<usize> = (0..10).map(|i| mirror_index(3, i)).collect();
        assert_eq!(seq, [0, 1, 2, 2, 1, 0, 0, 1, 2, 2]);
        assert!((0..5).all(|i| mirror_index(1, i) == 0));
        assert_eq!(mirror_index(4, u64::MAX - 1), {
            let j = (u64::MAX - 1) % 8;
            (if j < 4 { j } else { 7 - j }) as usize
        });
    }

    #[test]
    fn bbox_serialises_as_array() {
        let b = BBox::new(1, 2, 30, 40);
        assert_eq!(serde_json::to_string(&b).unwrap(), "[1,2,30,40]");
        assert_eq!(serde_json::from_str::<BBox>("[1,2,30,40]").unwrap(), b);
    }
}
