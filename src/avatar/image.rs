//! Plain 8-bit images and PNG reading/writing, free of GStreamer.

use std::io::BufWriter;
use std::path::Path;

/// An 8-bit image, `channels` interleaved bytes per pixel, rows packed (stride = width * channels).
#[derive(Clone, PartialEq, Eq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Image({}x{}x{})", self.width, self.height, self.channels)
    }
}

/// A borrowed 8-bit image in the same layout as [`Image`] (rows packed): an avatar frame or
/// mask viewed in place, e.g. in a memory-mapped pixel file.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ImageRef<'a> {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub data: &'a [u8],
}

impl std::fmt::Debug for ImageRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ImageRef({}x{}x{})",
            self.width, self.height, self.channels
        )
    }
}

impl<'a> ImageRef<'a> {
    pub fn stride(&self) -> usize {
        self.width as usize * self.channels as usize
    }

    /// An owned copy.
    pub fn to_image(&self) -> Image {
        Image {
            width: self.width,
            height: self.height,
            channels: self.channels,
            data: self.data.to_vec(),
        }
    }
}

impl<'a> From<&'a Image> for ImageRef<'a> {
    fn from(img: &'a Image) -> Self {
        img.view()
    }
}

impl PartialEq<Image> for ImageRef<'_> {
    fn eq(&self, other: &Image) -> bool {
        *self == other.view()
    }
}

impl Image {
    /// The image borrowed as an [`ImageRef`].
    pub fn view(&self) -> ImageRef<'_> {
        ImageRef {
            width: self.width,
            height: self.height,
            channels: self.channels,
            data: &self.data,
        }
    }

    pub fn new(width: u32, height: u32, channels: u8) -> Self {
        Self {
            width,
            height,
            channels,
            data: vec![0; width as usize * height as usize * channels as usize],
        }
    }

    pub fn from_fn(
        width: u32,
        height: u32,
        channels: u8,
        mut f: impl FnMut(u32, u32, u8) -> u8,
    ) -> Self {
        let mut img = Self::new(width, height, channels);
        let mut i = 0;
        for y in 0..height {
            for x in 0..width {
                for c in 0..channels {
                    img.data[i] = f(x, y, c);
                    i += 1;
                }
            }
        }
        img
    }

    pub fn stride(&self) -> usize {
        self.width as usize * self.channels as usize
    }

    /// Reads a PNG, converting gray/RGBA/16-bit to 8-bit with `channels` (1 = gray, 3 = RGB).
    pub fn read_png(path: &Path, channels: u8) -> Result<Self, String> {
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder
            .read_info()
            .map_err(|e| format!("not a readable PNG: {e}"))?;
        let mut buf = vec![0; reader.output_buffer_size().ok_or("PNG too large")?];
        let info = reader
            .next_frame(&mut buf)
            .map_err(|e| format!("corrupt or truncated PNG: {e}"))?;
        buf.truncate(info.buffer_size());
        let (w, h) = (info.width, info.height);
        let src_channels = info.color_type.samples();
        let pixels = w as usize * h as usize;
        let mut out = Image::new(w, h, channels);
        for p in 0..pixels {
            let s = &buf[p * src_channels..(p + 1) * src_channels];
            let d = &mut out.data[p * channels as usize..(p + 1) * channels as usize];
            match (src_channels, channels) {
                (1 | 2, 1) | (3 | 4, 3) => d.copy_from_slice(&s[..channels as usize]),
                (1 | 2, 3) => d.fill(s[0]),
                (3 | 4, 1) => {
                    // ITU-R BT.601 luma, as OpenCV's RGB2GRAY.
                    let y = 0.299 * s[0] as f32 + 0.587 * s[1] as f32 + 0.114 * s[2] as f32;
                    d[0] = y.round() as u8;
                }
                _ => return Err(format!("unsupported PNG layout ({src_channels} channels)")),
            }
        }
        Ok(out)
    }

    pub fn write_png(&self, path: &Path) -> Result<(), String> {
        let file = std::fs::File::create(path).map_err(|e| e.to_string())?;
        let mut enc = png::Encoder::new(BufWriter::new(file), self.width, self.height);
        enc.set_color(match self.channels {
            1 => png::ColorType::Grayscale,
            3 => png::ColorType::Rgb,
            4 => png::ColorType::Rgba,
            c => return Err(format!("cannot write a {c}-channel PNG")),
        });
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Fast);
        let mut w = enc.write_header().map_err(|e| e.to_string())?;
        w.write_image_data(&self.data).map_err(|e| e.to_string())?;
        w.finish().map_err(|e| e.to_string())
    }
}
