//! Reading and writing `.npy` files of little-endian `f32`, C order (NumPy format 1.0 to 3.0).
//!
//! Enough of the format for avatar latents and feature dumps; anything else (other dtypes,
//! Fortran order, truncated data) is refused with a message saying what was found.

use std::io::{Read, Write};
use std::path::Path;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// An n-dimensional `f32` array as stored in a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyF32 {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a .npy file: {0}")]
    Format(String),
}

fn format_err(msg: impl Into<String>) -> NpyError {
    NpyError::Format(msg.into())
}

/// Value of `'key': value` in the header dict, up to the next top-level comma or brace.
fn header_field<'a>(header: &'a str, key: &str) -> Result<&'a str, NpyError> {
    let pat = format!("'{key}':");
    let start = header
        .find(&pat)
        .ok_or_else(|| format_err(format!("header has no '{key}' field: {header}")))?
        + pat.len();
    let rest = header[start..].trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')').map(|i| i + 1)
    } else {
        rest.find([',', '}'])
    }
    .ok_or_else(|| format_err(format!("malformed header: {header}")))?;
    Ok(rest[..end].trim())
}

fn parse_shape(s: &str) -> Result<Vec<usize>, NpyError> {
    let inner = s
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format_err(format!("shape is not a tuple: {s}")))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<usize>()
                .map_err(|_| format_err(format!("bad dimension '{p}' in shape {s}")))
        })
        .collect()
}

impl NpyF32 {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "shape and data disagree"
        );
        Self { shape, data }
    }

    /// Parses a `.npy` file's bytes.
    pub fn from_reader(mut r: impl Read) -> Result<Self, NpyError> {
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)
            .map_err(|_| format_err("file is shorter than the .npy preamble"))?;
        if &magic[..6] != MAGIC {
            return Err(format_err("missing \\x93NUMPY magic"));
        }
        let header_len = match magic[6] {
            1 => {
                let mut b = [0u8; 2];
                r.read_exact(&mut b)
                    .map_err(|_| format_err("truncated header length"))?;
                u16::from_le_bytes(b) as usize
            }
            2 | 3 => {
                let mut b = [0u8; 4];
                r.read_exact(&mut b)
                    .map_err(|_| format_err("truncated header length"))?;
                u32::from_le_bytes(b) as usize
            }
            v => return Err(format_err(format!("unsupported format version {v}"))),
        };
        if header_len > 1 << 20 {
            return Err(format_err(format!(
                "header length {header_len} is implausible"
            )));
        }
        let mut header = vec![0u8; header_len];
        r.read_exact(&mut header)
            .map_err(|_| format_err("truncated header"))?;
        let header = String::from_utf8_lossy(&header);
        let descr = header_field(&header, "descr")?;
        if descr != "'<f4'" {
            return Err(format_err(format!(
                "dtype {descr}, expected '<f4' (little-endian float32)"
            )));
        }
        if header_field(&header, "fortran_order")? != "False" {
            return Err(format_err("Fortran order arrays are not supported"));
        }
        let shape = parse_shape(header_field(&header, "shape")?)?;
        let count = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format_err("shape overflows"))?;
        let mut bytes = Vec::new();
        r.read_to_end(&mut bytes)?;
        if bytes.len() != count * 4 {
            return Err(format_err(format!(
                "shape {:?} needs {} data bytes, file has {} (truncated or corrupt)",
                shape,
                count * 4,
                bytes.len()
            )));
        }
        let data = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(Self { shape, data })
    }

    pub fn read(path: &Path) -> Result<Self, NpyError> {
        let f = std::fs::File::open(path)?;
        Self::from_reader(std::io::BufReader::new(f))
    }

    pub fn to_writer(&self, mut w: impl Write) -> Result<(), NpyError> {
        let dims: Vec<String> = self.shape.iter().map(|d| d.to_string()).collect();
        let shape = match dims.len() {
            1 => format!("({},)", dims[0]),
            _ => format!("({})", dims.join(", ")),
        };
        let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        // Pad so that the data starts on a 64-byte boundary, header ending in '\n'.
        let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
        header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
        header.push('\n');
        w.write_all(MAGIC)?;
        w.write_all(&[1, 0])?;
        w.write_all(&(header.len() as u16).to_le_bytes())?;
        w.write_all(header.as_bytes())?;
        let mut bytes = Vec::with_capacity(self.data.len() * 4);
        for v in &self.data {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        w.write_all(&bytes)?;
        Ok(())
    }

    pub fn write(&self, path: &Path) -> Result<(), NpyError> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        self.to_writer(&mut f)?;
        f.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let a = NpyF32::new(
            vec![2, 3, 1],
            (0..6).map(|i| i as f32 * 0.5 - 1.0).collect(),
        );
        let mut buf = Vec::new();
        a.to_writer(&mut buf).unwrap();
        assert_eq!(buf.len() - 6 * 4, 128, "data starts on a 64-byte boundary");
        assert_eq!(NpyF32::from_reader(&buf[..]).unwrap(), a);
    }

    #[test]
    fn one_dimensional_shape_has_trailing_comma() {
        let a = NpyF32::new(vec![4], vec![1.0; 4]);
        let mut buf = Vec::new();
        a.to_writer(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf).contains("'shape': (4,)"));
        assert_eq!(NpyF32::from_reader(&buf[..]).unwrap().shape, vec![4]);
    }

    #[test]
    fn truncated_data_is_refused() {
        let a = NpyF32::new(vec![8], vec![0.0; 8]);
        let mut buf = Vec::new();
        a.to_writer(&mut buf).unwrap();
        buf.truncate(buf.len() - 3);
        let err = NpyF32::from_reader(&buf[..]).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn other_dtype_is_refused() {
        let mut buf = Vec::new();
        let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }\n";
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&[1, 0]);
        buf.extend_from_slice(&(header.len() as u16).to_le_bytes());
        buf.extend_from_slice(header.as_bytes());
        buf.extend_from_slice(&[0; 8]);
        let err = NpyF32::from_reader(&buf[..]).unwrap_err().to_string();
        assert!(err.contains("'<f8'"), "{err}");
    }

    #[test]
    fn garbage_is_refused() {
        assert!(NpyF32::from_reader(&b"hello world, not numpy"[..]).is_err());
        assert!(NpyF32::from_reader(&b"\x93NU"[..]).is_err());
    }
}
