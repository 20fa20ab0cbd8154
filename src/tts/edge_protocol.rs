//! The Edge read-aloud protocol, as the public edge-tts client (rany2/edge-tts) speaks it:
//! settings validation, SSML building with escaped text, splitting under the service's size
//! limit, the messages the client sends, and the parser of the frames the service sends.
//!
//! One websocket per request. The client sends a `speech.config` text message (output format
//! `audio-24khz-48kbitrate-mono-mp3`, word boundaries on) and an `ssml` text message. The
//! service answers with text messages `turn.start`, `response`, `audio.metadata` (JSON word
//! boundaries, offsets and durations in 100 ns units) and `turn.end`, and binary messages: a
//! 2-byte big-endian header length, the headers (`Path:audio`, `Content-Type:audio/mpeg`),
//! then MP3 bytes.

use std::fmt::Write as _;

/// The service's endpoint (the `Sec-MS-GEC` parameters are added per connection).
pub const ENDPOINT: &str =
    "wss://speech.platform.bing.com/consumer/speech/synthesize/readaloud/edge/v1";
pub const CHROMIUM_VERSION: &str = "143.0.3650.75";
pub const OUTPUT_FORMAT: &str = "audio-24khz-48kbitrate-mono-mp3";
/// Sample rate of [`OUTPUT_FORMAT`].
pub const RATE: u32 = 24_000;
/// Most bytes of escaped text in one request.
pub const MAX_TEXT_BYTES: usize = 4096;
pub const ORIGIN: &str = "chrome-extension://jdiccldimpdaibmpdkjnbmckianbfold";

pub fn user_agent() -> String {
    let major = CHROMIUM_VERSION.split('.').next().unwrap_or("143");
    format!(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
         Chrome/{major}.0.0.0 Safari/537.36 Edg/{major}.0.0.0"
    )
}

pub fn sec_ms_gec_version() -> String {
    format!("2-{CHROMIUM_VERSION}")
}

/// A voice name as the service wants it. Accepts the short form (`en-US-EmmaMultilingualNeural`,
/// `zh-CN-liaoning-XiaobeiNeural`) or the long one (`Microsoft Server Speech Text to Speech
/// Voice (en-US, EmmaMultilingualNeural)`).
pub fn voice_full_name(voice: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "voice '{voice}' is not an Edge voice name (expected e.g. en-US-EmmaMultilingualNeural \
             or zh-CN-YunxiaNeural)"
        )
    };
    let v = voice.trim();
    const LONG: &str = "Microsoft Server Speech Text to Speech Voice (";
    if let Some(inner) = v.strip_prefix(LONG).and_then(|r| r.strip_suffix(')')) {
        let (locale, name) = inner.split_once(", ").ok_or_else(bad)?;
        let ok =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if ok(locale) && ok(name) && name.ends_with("Neural") {
            return Ok(v.to_string());
        }
        return Err(bad());
    }
    if !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') || !v.ends_with("Neural") {
        return Err(bad());
    }
    let parts: Vec<&str> = v.split('-').collect();
    if parts.len() < 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(bad());
    }
    let lang = parts[0];
    let region = parts[1];
    if !(2..=3).contains(&lang.len())
        || !lang.chars().all(|c| c.is_ascii_lowercase())
        || region.len() < 2
    {
        return Err(bad());
    }
    // The last part is the name; anything between region and name belongs to the region
    // (zh-CN-liaoning-XiaobeiNeural: "zh-CN-liaoning", "XiaobeiNeural").
    let name = parts[parts.len() - 1];
    let locale = parts[..parts.len() - 1].join("-");
    Ok(format!("{LONG}{locale}, {name})"))
}

fn check_signed(value: &str, unit: &str, what: &str, example: &str) -> Result<(), String> {
    let err = || {
        format!("{what} '{value}' is invalid: expected a sign, digits and '{unit}', e.g. {example}")
    };
    let rest = value.strip_prefix(['+', '-']).ok_or_else(err)?;
    let digits = rest.strip_suffix(unit).ok_or_else(err)?;
    if digits.is_empty() || digits.len() > 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(err());
    }
    Ok(())
}

pub fn check_rate(v: &str) -> Result<(), String> {
    check_signed(v, "%", "rate", "+10% or -5%")
}
pub fn check_volume(v: &str) -> Result<(), String> {
    check_signed(v, "%", "volume", "+0% or -50%")
}
pub fn check_pitch(v: &str) -> Result<(), String> {
    check_signed(v, "Hz", "pitch", "+0Hz or -5Hz")
}

/// Escapes text for XML character data and attribute values.
pub fn escape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 does not allow.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            '\u{fffe}' | '\u{ffff}' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Splits escaped text into pieces of at most `max` bytes: at the last newline or space
/// before the limit when there is one, never inside a UTF-8 character or an XML entity.
pub fn split_escaped(text: &str, max: usize) -> Vec<String> {
    let max = max.max(16);
    let mut out = Vec::new();
    let mut rest = text.trim();
    while rest.len() > max {
        let mut lim = max;
        while !rest.is_char_boundary(lim) {
            lim -= 1;
        }
        let mut cut = rest[..lim]
            .rfind(['\n', ' '])
            .filter(|&i| i > 0)
            .unwrap_or(lim);
        // Not inside an entity: move before an '&' that has no ';' before the cut.
        if let Some(amp) = rest[..cut].rfind('&')
            && !rest[amp..cut].contains(';')
            && amp > 0
        {
            cut = amp;
        }
        let piece = rest[..cut].trim();
        if !piece.is_empty() {
            out.push(piece.to_string());
        }
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

/// The SSML document for one request (`escaped` must come from [`escape_xml`]).
pub fn ssml(voice_full: &str, rate: &str, pitch: &str, volume: &str, escaped: &str) -> String {
    format!(
        "<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' xml:lang='en-US'>\
         <voice name='{}'><prosody pitch='{}' rate='{}' volume='{}'>{escaped}</prosody></voice>\
         </speak>",
        escape_xml(voice_full),
        escape_xml(pitch),
        escape_xml(rate),
        escape_xml(volume)
    )
}

/// The `speech.config` message.
pub fn speech_config_message(timestamp: &str) -> String {
    format!(
        "X-Timestamp:{timestamp}\r\nContent-Type:application/json; charset=utf-8\r\n\
         Path:speech.config\r\n\r\n{{\"context\":{{\"synthesis\":{{\"audio\":{{\
         \"metadataoptions\":{{\"sentenceBoundaryEnabled\":\"false\",\
         \"wordBoundaryEnabled\":\"true\"}},\"outputFormat\":\"{OUTPUT_FORMAT}\"}}}}}}}}\r\n"
    )
}

/// The `ssml` message.
pub fn ssml_message(request_id: &str, timestamp: &str, ssml: &str) -> String {
    format!(
        "X-RequestId:{request_id}\r\nContent-Type:application/ssml+xml\r\n\
         X-Timestamp:{timestamp}Z\r\nPath:ssml\r\n\r\n{ssml}"
    )
}

/// `Thu Nov 21 2026 09:00:00 GMT+0000 (Coordinated Universal Time)`, as browsers print dates.
pub fn js_date(unix_secs: u64) -> String {
    let (y, m, d, wd) = civil(unix_secs / 86_400);
    let s = unix_secs % 86_400;
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    format!(
        "{} {} {d:02} {y} {:02}:{:02}:{:02} GMT+0000 (Coordinated Universal Time)",
        DAYS[wd],
        MONTHS[m as usize - 1],
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// (year, month 1-12, day, weekday index from Thursday) of a day count since 1970-01-01.
fn civil(days: u64) -> (i64, u32, u32, usize) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, (days % 7) as usize)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses an HTTP date (`Thu, 21 Nov 2026 09:00:00 GMT`) into Unix seconds.
pub fn parse_http_date(s: &str) -> Option<u64> {
    let mut it = s.split_whitespace();
    let _weekday = it.next()?;
    let day: u32 = it.next()?.parse().ok()?;
    let mon = it.next()?;
    let month = MONTHS.iter().position(|m| *m == mon)? as u32 + 1;
    let year: i64 = it.next()?.parse().ok()?;
    let hms: Vec<u64> = it
        .next()?
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if hms.len() != 3 || it.next()? != "GMT" {
        return None;
    }
    let days = days_from_civil(year, month, day);
    u64::try_from(days)
        .ok()
        .map(|d| d * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2])
}

/// 32 random hex digits (request and connection ids, the `muid` cookie).
pub fn random_hex() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::with_capacity(32);
    for i in 0..2u64 {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(i);
        if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(t.as_nanos());
        }
        let _ = write!(out, "{:016X}", h.finish());
    }
    out
}

/// A word boundary from `audio.metadata`, in the service's 100 ns units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordMeta {
    pub text: String,
    pub offset: u64,
    pub duration: u64,
}

/// A message from the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    TurnStart,
    Response,
    TurnEnd,
    Words(Vec<WordMeta>),
    Audio(Vec<u8>),
    /// A binary audio message with no data (the service sends one at the end).
    AudioEnd,
}

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.split("\r\n").find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim().eq_ignore_ascii_case(name)).then_some(v.trim())
    })
}

fn unescape_xml(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Parses a text message.
pub fn parse_text(msg: &str) -> Result<Frame, String> {
    let (headers, body) = msg.split_once("\r\n\r\n").unwrap_or((msg, ""));
    let path = header(headers, "Path").ok_or("text message without a Path header")?;
    match path {
        "turn.start" => Ok(Frame::TurnStart),
        "response" => Ok(Frame::Response),
        "turn.end" => Ok(Frame::TurnEnd),
        "audio.metadata" => parse_metadata(body).map(Frame::Words),
        other => Err(format!("unknown path '{other}'")),
    }
}

fn parse_metadata(body: &str) -> Result<Vec<WordMeta>, String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("audio.metadata is not JSON: {e}"))?;
    let items = v["Metadata"]
        .as_array()
        .ok_or("audio.metadata without a Metadata array")?;
    let mut words = Vec::new();
    for item in items {
        match item["Type"].as_str() {
            Some("WordBoundary") => {
                let data = &item["Data"];
                let (Some(offset), Some(duration), Some(text)) = (
                    data["Offset"].as_u64(),
                    data["Duration"].as_u64(),
                    data["text"]["Text"].as_str(),
                ) else {
                    return Err("WordBoundary without Offset, Duration or text".into());
                };
                words.push(WordMeta {
                    text: unescape_xml(text),
                    offset,
                    duration,
                });
            }
            Some("SessionEnd" | "SentenceBoundary") => {}
            other => return Err(format!("unknown metadata type {other:?}")),
        }
    }
    Ok(words)
}

/// Parses a binary message: 2-byte big-endian header length, headers, data.
pub fn parse_binary(data: &[u8]) -> Result<Frame, String> {
    if data.len() < 2 {
        return Err(format!(
            "binary message of {} byte(s), no header length",
            data.len()
        ));
    }
    let n = u16::from_be_bytes([data[0], data[1]]) as usize;
    if 2 + n > data.len() {
        return Err(format!(
            "binary message header length {n} beyond its {} bytes",
            data.len()
        ));
    }
    let headers =
        std::str::from_utf8(&data[2..2 + n]).map_err(|_| "binary headers are not UTF-8")?;
    let body = &data[2 + n..];
    if header(headers, "Path") != Some("audio") {
        return Err("binary message whose Path is not audio".into());
    }
    match header(headers, "Content-Type") {
        Some("audio/mpeg") if !body.is_empty() => Ok(Frame::Audio(body.to_vec())),
        Some("audio/mpeg") => Err("audio message without data".into()),
        None if body.is_empty() => Ok(Frame::AudioEnd),
        None => Err("audio data without a Content-Type".into()),
        Some(other) => Err(format!("audio of type '{other}'")),
    }
}

/// Builds a binary audio message as the service does (for test servers).
pub fn binary_audio_message(request_id: &str, mp3: &[u8]) -> Vec<u8> {
    let headers = format!(
        "X-RequestId:{request_id}\r\nContent-Type:audio/mpeg\r\nX-StreamId:{request_id}\r\nPath:audio\r\n"
    );
    let mut out = Vec::with_capacity(2 + headers.len() + mp3.len());
    out.extend_from_slice(&(headers.len() as u16).to_be_bytes());
    out.extend_from_slice(headers.as_bytes());
    out.extend_from_slice(mp3);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voices_are_validated_and_expanded() {
        assert_eq!(
            voice_full_name("en-US-EmmaMultilingualNeural").unwrap(),
            "Microsoft Server Speech Text to Speech Voice (en-US, EmmaMultilingualNeural)"
        );
        assert_eq!(
            voice_full_name("zh-CN-liaoning-XiaobeiNeural").unwrap(),
            "Microsoft Server Speech Text to Speech Voice (zh-CN-liaoning, XiaobeiNeural)"
        );
        let long = "Microsoft Server Speech Text to Speech Voice (zh-CN, YunxiaNeural)";
        assert_eq!(voice_full_name(long).unwrap(), long);
        for bad in [
            "",
            "Emma",
            "en-US-Emma",
            "en-US-Emma'Neural",
            "en-US-<x>Neural",
            "EN-US-EmmaNeural",
            "en--EmmaNeural",
            "Microsoft Server Speech Text to Speech Voice (en-US, Emma'); DROP)",
        ] {
            let err = voice_full_name(bad).unwrap_err();
            assert!(err.contains("is not an Edge voice name"), "{bad}: {err}");
        }
    }

    #[test]
    fn prosody_values_are_validated() {
        for ok in ["+0%", "-50%", "+10%", "+100%"] {
            check_rate(ok).unwrap();
            check_volume(ok).unwrap();
        }
        check_pitch("+0Hz").unwrap();
        check_pitch("-5Hz").unwrap();
        for bad in [
            "10%", "+10", "fast", "+1.5%", "+%", "+10%'", "-5hz", "+99999%",
        ] {
            assert!(check_rate(bad).is_err(), "{bad}");
        }
        let err = check_pitch("5Hz").unwrap_err();
        assert!(err.contains("pitch '5Hz' is invalid"), "{err}");
        assert!(check_pitch("+5%").is_err());
    }

    #[test]
    fn text_cannot_inject_ssml() {
        let e = escape_xml("a < b & c > d \"q\" 'x' </speak><voice name='evil'>\u{1}");
        assert_eq!(
            e,
            "a &lt; b &amp; c &gt; d &quot;q&quot; &apos;x&apos; &lt;/speak&gt;&lt;voice \
             name=&apos;evil&apos;&gt; "
        );
        let doc = ssml("V", "+0%", "+0Hz", "+0%", &e);
        assert_eq!(doc.matches("<speak").count(), 1);
        assert_eq!(doc.matches("</speak>").count(), 1);
        assert!(doc.ends_with("</prosody></voice></speak>"));
    }

    #[test]
    fn long_text_is_split_under_the_limit() {
        let text = escape_xml(&"Tom & Jerry say hello. ".repeat(400));
        let pieces = split_escaped(&text, MAX_TEXT_BYTES);
        assert!(pieces.len() > 2);
        for p in &pieces {
            assert!(p.len() <= MAX_TEXT_BYTES);
            // No broken entity at either end.
            assert!(!p.ends_with('&') && !p.starts_with("amp;"), "{p}");
            let amps = p.matches('&').count();
            assert_eq!(amps, p.matches("&amp;").count());
        }
        assert_eq!(pieces.join(" "), text.trim());
        // No spaces: cut at UTF-8 boundaries, nothing lost.
        let cjk = "字".repeat(3000);
        let pieces = split_escaped(&cjk, MAX_TEXT_BYTES);
        assert!(pieces.iter().all(|p| p.len() <= MAX_TEXT_BYTES));
        assert_eq!(pieces.concat(), cjk);
        // An entity that straddles the limit moves to the next piece.
        let t = format!("{}&amp;b", "a".repeat(30));
        let pieces = split_escaped(&t, 32);
        assert_eq!(pieces, vec!["a".repeat(30), "&amp;b".to_string()]);
    }

    #[test]
    fn messages_have_the_expected_headers() {
        let cfg = speech_config_message("T");
        assert!(cfg.starts_with("X-Timestamp:T\r\n"));
        assert!(cfg.contains("Path:speech.config\r\n\r\n{"));
        assert!(cfg.contains("\"outputFormat\":\"audio-24khz-48kbitrate-mono-mp3\""));
        let body = cfg.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
        assert_eq!(
            v["context"]["synthesis"]["audio"]["metadataoptions"]["wordBoundaryEnabled"],
            "true"
        );
        let m = ssml_message("ID", "T", "<speak/>");
        assert_eq!(
            m,
            "X-RequestId:ID\r\nContent-Type:application/ssml+xml\r\nX-Timestamp:TZ\r\nPath:ssml\r\n\r\n<speak/>"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(
            js_date(0),
            "Thu Jan 01 1970 00:00:00 GMT+0000 (Coordinated Universal Time)"
        );
        assert_eq!(
            js_date(1_700_000_000),
            "Tue Nov 14 2023 22:13:20 GMT+0000 (Coordinated Universal Time)"
        );
        assert_eq!(
            parse_http_date("Tue, 14 Nov 2023 22:13:20 GMT"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("yesterday"), None);
        let a = random_hex();
        assert_eq!(a.len(), 32);
        assert_ne!(a, random_hex());
    }

    #[test]
    fn frames_are_parsed_and_garbage_refused() {
        assert_eq!(
            parse_text("X-RequestId:1\r\nPath:turn.start\r\n\r\n{}"),
            Ok(Frame::TurnStart)
        );
        assert_eq!(parse_text("Path:turn.end\r\n\r\n"), Ok(Frame::TurnEnd));
        assert_eq!(parse_text("Path: response\r\n\r\n{}"), Ok(Frame::Response));
        let meta = "Path:audio.metadata\r\n\r\n{\"Metadata\":[{\"Type\":\"WordBoundary\",\
                    \"Data\":{\"Offset\":1000000,\"Duration\":3250000,\"text\":{\"Text\":\
                    \"Tom &amp; Jerry\",\"Length\":5,\"BoundaryType\":\"WordBoundary\"}}}]}";
        assert_eq!(
            parse_text(meta),
            Ok(Frame::Words(vec![WordMeta {
                text: "Tom & Jerry".into(),
                offset: 1_000_000,
                duration: 3_250_000
            }]))
        );
        assert!(parse_text("garbage").is_err());
        assert!(parse_text("Path:audio.metadata\r\n\r\n{not json").is_err());
        assert!(parse_text("Path:whatever\r\n\r\n").is_err());

        let msg = binary_audio_message("R", &[0xFF, 0xFB, 1, 2]);
        assert_eq!(parse_binary(&msg), Ok(Frame::Audio(vec![0xFF, 0xFB, 1, 2])));
        let end = {
            let h = b"X-RequestId:R\r\nPath:audio\r\n";
            let mut v = (h.len() as u16).to_be_bytes().to_vec();
            v.extend_from_slice(h);
            v
        };
        assert_eq!(parse_binary(&end), Ok(Frame::AudioEnd));
        assert!(parse_binary(&[]).is_err());
        assert!(parse_binary(&[7]).is_err());
        assert!(parse_binary(&[0xFF, 0xFF, 1, 2, 3]).is_err());
        assert!(parse_binary(&[0, 2, 0xC3, 0x28]).is_err());
        let wrong_path = {
            let h = b"Path:video\r\nContent-Type:audio/mpeg\r\n";
            let mut v = (h.len() as u16).to_be_bytes().to_vec();
            v.extend_from_slice(h);
            v.push(1);
            v
        };
        assert!(parse_binary(&wrong_path).is_err());
    }
}
