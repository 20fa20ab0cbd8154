//! The avatar's pixel file, `avatar.raw`: every frame (RGB, rows packed) and every mask (gray,
//! blend-box sized) uncompressed behind a small header. Loading maps it into memory instead of
//! decoding PNGs, so an avatar starts in milliseconds, and its pages are shared by every
//! session, every process and the OS page cache instead of being copied per avatar.
//!
//! ```text
//! offset  field (little-endian)
//! 0       magic "LTAVRAW" + layout version 1          8 bytes
//! 8       width, height, frames, 0                    4 x u32
//! 24      mask bytes (all masks together)             u64
//! 32      source fingerprint (see [`fingerprint`])    u64
//! 40      CRC-32 of the first frame, of the last one  2 x u32
//! 48      CRC-32 of bytes 0..48                       u32
//! 4096    frames, width*height*3 bytes each, then the masks in frame order
//! ```
//!
//! The PNGs stay the source of truth: the file is (re)made from them when it is missing, its
//! size or header does not match, the CRC of its first or last frame is wrong, or it was made
//! from other sources (the fingerprint of `avatar.json` and the PNG files' sizes and
//! modification times differ). A finished file is renamed into place, never written in place,
//! so a process that maps an older one keeps reading consistent pixels.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

pub const RAW_FILE: &str = "avatar.raw";
const MAGIC: &[u8; 8] = b"LTAVRAW\x01";
const HEADER_LEN: usize = 52;
/// Where the frames start (a page boundary).
pub const DATA_OFFSET: u64 = 4096;

/// What the header describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub width: u32,
    pub height: u32,
    pub frames: u32,
    pub mask_bytes: u64,
    pub source: u64,
    pub crc_first: u32,
    pub crc_last: u32,
}

impl Header {
    pub fn frame_len(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }

    /// The size the whole file must have.
    pub fn file_len(&self) -> u64 {
        DATA_OFFSET + self.frames as u64 * self.frame_len() as u64 + self.mask_bytes
    }

    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&self.width.to_le_bytes());
        h[12..16].copy_from_slice(&self.height.to_le_bytes());
        h[16..20].copy_from_slice(&self.frames.to_le_bytes());
        h[24..32].copy_from_slice(&self.mask_bytes.to_le_bytes());
        h[32..40].copy_from_slice(&self.source.to_le_bytes());
        h[40..44].copy_from_slice(&self.crc_first.to_le_bytes());
        h[44..48].copy_from_slice(&self.crc_last.to_le_bytes());
        let crc = crc32fast::hash(&h[..48]);
        h[48..52].copy_from_slice(&crc.to_le_bytes());
        h
    }

    fn decode(h: &[u8; HEADER_LEN]) -> Result<Self, String> {
        if h[..7] != MAGIC[..7] {
            return Err("not an avatar pixel file (bad magic)".into());
        }
        if h[7] != MAGIC[7] {
            return Err(format!(
                "pixel file layout version {} is not supported",
                h[7]
            ));
        }
        let u32_at = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().unwrap());
        if crc32fast::hash(&h[..48]) != u32_at(48) {
            return Err("header checksum mismatch (corrupt file)".into());
        }
        Ok(Self {
            width: u32_at(8),
            height: u32_at(12),
            frames: u32_at(16),
            mask_bytes: u64_at(24),
            source: u64_at(32),
            crc_first: u32_at(40),
            crc_last: u32_at(44),
        })
    }
}

/// The fingerprint of an avatar's sources: a CRC-32 of the `avatar.json` text in the high
/// half, a CRC-32 of every frame and mask PNG's size and modification time in the low half.
/// `pngs` are (frame index, path); fails with those of a PNG that cannot be read.
pub fn fingerprint(
    manifest_text: &[u8],
    pngs: impl Iterator<Item = (usize, std::path::PathBuf)>,
) -> Result<u64, (usize, std::path::PathBuf, String)> {
    let mut files = crc32fast::Hasher::new();
    for (i, p) in pngs {
        let m = std::fs::metadata(&p).map_err(|e| (i, p.clone(), format!("cannot read: {e}")))?;
        files.update(&m.len().to_le_bytes());
        if let Ok(t) = m.modified()
            && let Ok(d) = t.duration_since(std::time::UNIX_EPOCH)
        {
            files.update(&d.as_secs().to_le_bytes());
            files.update(&d.subsec_nanos().to_le_bytes());
        }
    }
    Ok(((crc32fast::hash(manifest_text) as u64) << 32) | files.finalize() as u64)
}

/// Writes a pixel file: [`RawWriter::push_frame`] every frame, then [`RawWriter::push_mask`]
/// every mask, then [`RawWriter::finish`].
pub struct RawWriter<W: Write + Seek> {
    out: W,
    header: Header,
    frames: u32,
    mask_bytes: u64,
}

impl<W: Write + Seek> RawWriter<W> {
    /// `header`'s CRCs are filled in while writing.
    pub fn new(mut out: W, header: Header) -> io::Result<Self> {
        out.write_all(&[0u8; DATA_OFFSET as usize])?;
        Ok(Self {
            out,
            header,
            frames: 0,
            mask_bytes: 0,
        })
    }

    pub fn push_frame(&mut self, rgb: &[u8]) -> io::Result<()> {
        if rgb.len() != self.header.frame_len() || self.frames >= self.header.frames {
            return Err(io::Error::other(
                "frame size or count does not match the header",
            ));
        }
        let crc = crc32fast::hash(rgb);
        if self.frames == 0 {
            self.header.crc_first = crc;
        }
        self.header.crc_last = crc;
        self.frames += 1;
        self.out.write_all(rgb)
    }

    pub fn push_mask(&mut self, gray: &[u8]) -> io::Result<()> {
        if self.frames != self.header.frames {
            return Err(io::Error::other("masks must follow all frames"));
        }
        self.mask_bytes += gray.len() as u64;
        self.out.write_all(gray)
    }

    /// Writes the header; fails if fewer frames or mask bytes came than it announced.
    pub fn finish(mut self) -> io::Result<W> {
        if self.frames != self.header.frames || self.mask_bytes != self.header.mask_bytes {
            return Err(io::Error::other(format!(
                "{} frames and {} mask bytes written, the header announces {} and {}",
                self.frames, self.mask_bytes, self.header.frames, self.header.mask_bytes
            )));
        }
        self.out.seek(SeekFrom::Start(0))?;
        self.out.write_all(&self.header.encode())?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Where the pixels live: a read-only mapping of the pixel file, or (when no pixel file could
/// be written) the same layout in memory.
pub enum Pixels {
    Mapped(memmap2::Mmap),
    Heap(Vec<u8>),
}

impl std::ops::Deref for Pixels {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Pixels::Mapped(m) => m,
            Pixels::Heap(v) => v,
        }
    }
}

impl std::fmt::Debug for Pixels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pixels::Mapped(m) => write!(f, "Mapped({} bytes)", m.len()),
            Pixels::Heap(v) => write!(f, "Heap({} bytes)", v.len()),
        }
    }
}

/// Checks that `data` (a whole pixel file) matches what `expected` describes (CRCs aside) and
/// that its first and last frames have the CRCs of its header.
pub fn check(data: &[u8], expected: &Header) -> Result<(), String> {
    let Some(head) = data.get(..HEADER_LEN) else {
        return Err(format!(
            "truncated: {} bytes, not even a header",
            data.len()
        ));
    };
    let h = Header::decode(head.try_into().unwrap())?;
    check_header(&h, expected)?;
    if data.len() as u64 != h.file_len() {
        return Err(format!(
            "{} bytes, the header describes {} (truncated or overlong)",
            data.len(),
            h.file_len()
        ));
    }
    let frame = |i: usize| {
        let o = DATA_OFFSET as usize + i * h.frame_len();
        &data[o..o + h.frame_len()]
    };
    if crc32fast::hash(frame(0)) != h.crc_first
        || crc32fast::hash(frame(h.frames as usize - 1)) != h.crc_last
    {
        return Err("frame checksum mismatch (corrupt file)".into());
    }
    Ok(())
}

fn check_header(h: &Header, e: &Header) -> Result<(), String> {
    if (h.width, h.height, h.frames, h.mask_bytes) != (e.width, e.height, e.frames, e.mask_bytes) {
        return Err(format!(
            "holds {} frames of {}x{} and {} mask bytes, avatar.json describes {} of {}x{} and {}",
            h.frames, h.width, h.height, h.mask_bytes, e.frames, e.width, e.height, e.mask_bytes
        ));
    }
    if h.source != e.source {
        return Err("made from other sources (avatar.json or a PNG changed since)".into());
    }
    Ok(())
}

/// Maps the pixel file at `path` and checks it against `expected`.
pub fn open(path: &Path, expected: &Header) -> Result<Pixels, String> {
    let mut file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    // The header first: a stale or foreign file is refused without mapping it.
    let mut head = [0u8; HEADER_LEN];
    file.read_exact(&mut head).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => "truncated: shorter than its header".to_string(),
        _ => format!("cannot read: {e}"),
    })?;
    check_header(&Header::decode(&head)?, expected)?;
    // SAFETY: the mapping is read-only, and pixel files are only ever replaced by renaming a
    // new file over them (never written in place), so the mapped pages do not change under us.
    // A file truncated by another program while mapped would fault on access; that is outside
    // this format's contract, as for any memory-mapped cache.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("cannot map: {e}"))?;
    check(&map, expected)?;
    Ok(Pixels::Mapped(map))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn header() -> Header {
        Header {
            width: 4,
            height: 2,
            frames: 3,
            mask_bytes: 5,
            source: 0xfeed,
            crc_first: 0,
            crc_last: 0,
        }
    }

    fn file() -> Vec<u8> {
        let mut w = RawWriter::new(Cursor::new(Vec::new()), header()).unwrap();
        for i in 0..3u8 {
            w.push_frame(&[i; 24]).unwrap();
        }
        w.push_mask(&[7, 7]).unwrap();
        w.push_mask(&[8, 8, 8]).unwrap();
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn written_file_checks_and_has_its_layout() {
        let data = file();
        assert_eq!(data.len() as u64, header().file_len());
        check(&data, &header()).unwrap();
        let o = DATA_OFFSET as usize;
        assert_eq!(&data[o + 24..o + 48], &[1u8; 24]);
        assert_eq!(&data[o + 72..], &[7, 7, 8, 8, 8]);
    }

    #[test]
    fn truncated_corrupt_and_stale_files_are_refused() {
        let data = file();
        let e = check(&data[..data.len() - 1], &header()).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        assert!(
            check(&data[..20], &header())
                .unwrap_err()
                .contains("truncated")
        );
        let mut bad = data.clone();
        bad[9] ^= 1;
        assert!(
            check(&bad, &header())
                .unwrap_err()
                .contains("header checksum")
        );
        let mut bad = data.clone();
        bad[DATA_OFFSET as usize + 50] ^= 1; // in the last frame
        assert!(
            check(&bad, &header())
                .unwrap_err()
                .contains("frame checksum")
        );
        let stale = Header {
            source: 1,
            ..header()
        };
        assert!(check(&data, &stale).unwrap_err().contains("other sources"));
        let other = Header {
            frames: 2,
            ..header()
        };
        assert!(
            check(&data, &other)
                .unwrap_err()
                .contains("3 frames of 4x2")
        );
    }

    #[test]
    fn writer_refuses_missing_or_wrong_sized_data() {
        let mut w = RawWriter::new(Cursor::new(Vec::new()), header()).unwrap();
        assert!(w.push_frame(&[0; 23]).is_err());
        w.push_frame(&[0; 24]).unwrap();
        assert!(w.push_mask(&[0; 5]).is_err());
        assert!(w.finish().is_err());
    }
}
