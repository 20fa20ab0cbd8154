//! MP3 to 16-bit mono samples (symphonia's pure-Rust MP3 decoder).

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::DecoderOptions;
use symphonia::core::errors::Error;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Decodes a whole MP3 stream; returns its sample rate and mono samples (channels averaged).
/// Corrupt frames are skipped; a stream with no decodable frame is an error.
pub fn decode(bytes: Vec<u8>) -> Result<(u32, Vec<i16>), String> {
    let mss = MediaSourceStream::new(Box::new(std::io::Cursor::new(bytes)), Default::default());
    let mut hint = Hint::new();
    hint.with_extension("mp3");
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| format!("not MP3 audio: {e}"))?;
    let mut format = probed.format;
    let track = format.default_track().ok_or("MP3 stream without audio")?;
    let track_id = track.id;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| format!("MP3 decoder: {e}"))?;
    let mut rate = track.codec_params.sample_rate.unwrap_or(0);
    let mut out = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(Error::IoError(_)) | Err(Error::ResetRequired) => break,
            Err(Error::DecodeError(_)) => continue,
            Err(e) => return Err(format!("MP3 stream: {e}")),
        };
        if packet.track_id() != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(buf) => {
                let spec = *buf.spec();
                rate = spec.rate;
                let ch = spec.channels.count().max(1);
                let mut sb = SampleBuffer::<i16>::new(buf.capacity() as u64, spec);
                sb.copy_interleaved_ref(buf);
                for frame in sb.samples().chunks_exact(ch) {
                    let sum: i32 = frame.iter().map(|&s| s as i32).sum();
                    out.push((sum / ch as i32) as i16);
                }
            }
            Err(Error::DecodeError(_)) => continue,
            Err(e) => return Err(format!("MP3 decoding: {e}")),
        }
    }
    if out.is_empty() || rate == 0 {
        return Err("no audio could be decoded from the MP3 data".into());
    }
    Ok((rate, out))
}

#[cfg(test)]
mod tests {
    #[test]
    fn garbage_is_refused() {
        assert!(super::decode(vec![]).is_err());
        assert!(super::decode(vec![0x55; 5000]).is_err());
    }
}
