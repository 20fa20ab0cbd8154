//! Action clips: short sequences of full frames that play in place of the idle cycle
//! (LiveTalking's "action orchestration": a wave, a nod), loaded from a JSON file.
//!
//! ```json
//! { "clips": [
//!     { "name": "wave", "frames": "wave/", "mode": "once" },
//!     { "name": "think", "frames": "think/", "mode": "loop" }
//! ] }
//! ```
//!
//! `frames` is a folder of PNG files (played in file-name order), relative to the JSON file;
//! every frame must have the avatar's size. `mode` is `once` (default: play, then return to
//! the idle cycle) or `loop` (until stopped or speech starts). Videos are not read: extract
//! their frames first (e.g. `gst-launch-1.0 ... ! pngenc ! multifilesink`).
//! Free of GStreamer.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::avatar::Image;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Once,
    Loop,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClipSpec {
    name: String,
    #[serde(default)]
    frames: Option<PathBuf>,
    #[serde(default)]
    video: Option<PathBuf>,
    #[serde(default)]
    mode: Mode,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionsFile {
    clips: Vec<ClipSpec>,
}

/// One loaded clip.
#[derive(Debug, Clone)]
pub struct Clip {
    pub name: String,
    pub mode: Mode,
    pub frames: Vec<Image>,
}

/// Reads and checks an actions file without loading frames: names are unique.
fn read_spec(path: &Path) -> Result<ActionsFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("actions file {}: cannot read: {e}", path.display()))?;
    let spec: ActionsFile = serde_json::from_str(&text)
        .map_err(|e| format!("actions file {}: invalid: {e}", path.display()))?;
    for (i, c) in spec.clips.iter().enumerate() {
        if spec.clips[..i].iter().any(|o| o.name == c.name) {
            return Err(format!(
                "actions file {}: clip '{}' is named twice",
                path.display(),
                c.name
            ));
        }
    }
    Ok(spec)
}

/// The clip names of an actions file, in its order (what `play-action` accepts, and what a
/// clip number counts from), without reading any frame.
pub fn names(path: &Path) -> Result<Vec<String>, String> {
    Ok(read_spec(path)?.clips.into_iter().map(|c| c.name).collect())
}

/// Reads an actions file and every frame it names; each frame must be `width` x `height`.
pub fn load(path: &Path, width: u32, height: u32) -> Result<Vec<Clip>, String> {
    let spec = read_spec(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut clips: Vec<Clip> = Vec::new();
    for c in spec.clips {
        let dir = match (&c.frames, &c.video) {
            (Some(d), _) => base.join(d),
            (None, Some(v)) => {
                return Err(format!(
                    "actions file {}: clip '{}' names a video ({}); videos are not read, \
                     extract its frames into a folder and name that as \"frames\"",
                    path.display(),
                    c.name,
                    v.display()
                ));
            }
            (None, None) => {
                return Err(format!(
                    "actions file {}: clip '{}' names no \"frames\" folder",
                    path.display(),
                    c.name
                ));
            }
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| format!("clip '{}': cannot read {}: {e}", c.name, dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("png")))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(format!(
                "clip '{}': no PNG frames in {}",
                c.name,
                dir.display()
            ));
        }
        let mut frames = Vec::with_capacity(files.len());
        for f in &files {
            let img = Image::read_png(f, 3)
                .map_err(|e| format!("clip '{}': {}: {e}", c.name, f.display()))?;
            if (img.width, img.height) != (width, height) {
                return Err(format!(
                    "clip '{}': {} is {}x{}, the avatar is {width}x{height}",
                    c.name,
                    f.display(),
                    img.width,
                    img.height
                ));
            }
            frames.push(img);
        }
        clips.push(Clip {
            name: c.name,
            mode: c.mode,
            frames,
        });
    }
    Ok(clips)
}

/// Which clip plays and where it is.
#[derive(Debug, Clone, Default)]
pub struct Player {
    current: Option<(usize, usize)>,
}

impl Player {
    /// Starts clip `clip` from its first frame (replacing one that plays).
    pub fn start(&mut self, clip: usize) {
        self.current = Some((clip, 0));
    }

    pub fn stop(&mut self) {
        self.current = None;
    }

    pub fn playing(&self) -> Option<usize> {
        self.current.map(|(c, _)| c)
    }

    /// The next (clip, frame) to show, advancing; `None` when no clip plays (or one just ended).
    pub fn next(&mut self, clips: &[Clip]) -> Option<(usize, usize)> {
        let (c, pos) = self.current?;
        let clip = clips.get(c)?;
        let next = pos + 1;
        self.current = if next < clip.frames.len() {
            Some((c, next))
        } else if clip.mode == Mode::Loop {
            Some((c, 0))
        } else {
            None
        };
        Some((c, pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_clip(dir: &Path, name: &str, n: usize, w: u32, h: u32) {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        for i in 0..n {
            Image::from_fn(w, h, 3, |_, _, _| i as u8)
                .write_png(&dir.join(name).join(format!("{i:04}.png")))
                .unwrap();
        }
    }

    #[test]
    fn loads_and_plays_once_and_loop() {
        let d = tempfile::tempdir().unwrap();
        write_clip(d.path(), "wave", 3, 8, 6);
        write_clip(d.path(), "spin", 2, 8, 6);
        let f = d.path().join("actions.json");
        std::fs::write(
            &f,
            r#"{"clips":[{"name":"wave","frames":"wave"},{"name":"spin","frames":"spin","mode":"loop"}]}"#,
        )
        .unwrap();
        let clips = load(&f, 8, 6).unwrap();
        assert_eq!(clips.len(), 2);
        assert_eq!(names(&f).unwrap(), ["wave", "spin"]);
        assert_eq!(clips[0].mode, Mode::Once);
        assert_eq!(clips[0].frames[2].data[0], 2);
        let mut p = Player::default();
        assert_eq!(p.next(&clips), None);
        p.start(0);
        let seq: Vec<_> = (0..4).map(|_| p.next(&clips)).collect();
        assert_eq!(seq, [Some((0, 0)), Some((0, 1)), Some((0, 2)), None]);
        p.start(1);
        let seq: Vec<_> = (0..5).map(|_| p.next(&clips).unwrap().1).collect();
        assert_eq!(seq, [0, 1, 0, 1, 0]);
        p.stop();
        assert_eq!(p.next(&clips), None);
    }

    #[test]
    fn clear_errors() {
        let d = tempfile::tempdir().unwrap();
        write_clip(d.path(), "wave", 1, 8, 6);
        let f = d.path().join("a.json");
        std::fs::write(&f, r#"{"clips":[{"name":"wave","frames":"wave"}]}"#).unwrap();
        let e = load(&f, 10, 6).unwrap_err();
        assert!(e.contains("is 8x6, the avatar is 10x6"), "{e}");
        std::fs::write(&f, r#"{"clips":[{"name":"v","video":"v.mp4"}]}"#).unwrap();
        assert!(load(&f, 8, 6).unwrap_err().contains("videos are not read"));
        std::fs::write(&f, r#"{"clips":[{"name":"x","frames":"nope"}]}"#).unwrap();
        assert!(load(&f, 8, 6).unwrap_err().contains("cannot read"));
        std::fs::write(
            &f,
            r#"{"clips":[{"name":"w","frames":"wave","mode":"bounce"}]}"#,
        )
        .unwrap();
        assert!(load(&f, 8, 6).unwrap_err().contains("invalid"));
        std::fs::write(
            &f,
            r#"{"clips":[{"name":"w","frames":"wave"},{"name":"w","frames":"wave"}]}"#,
        )
        .unwrap();
        assert!(names(&f).unwrap_err().contains("named twice"));
        assert!(load(&f, 8, 6).unwrap_err().contains("named twice"));
    }
}
