//! Piper voices: the `.onnx.json` config, text to phonemes through the espeak-ng program, and
//! phonemes to the ids the model takes, exactly as Piper builds them.
//!
//! Piper phonemizes with the espeak-ng library, clause by clause, keeping each clause's
//! punctuation (`.`, `?`, `!`, `,`, `:`, `;`; a space after the last three) and starting a new
//! sentence after `.`, `?` and `!`. Each sentence is synthesized on its own:
//! `^ _ p1 _ p2 _ ... pn _ $` (BOS, pad after every phoneme including BOS, EOS), phonemes being
//! the Unicode code points of the NFD-normalized IPA string.
//!
//! espeak-ng is GPL-3.0: this crate never links it. It runs the `espeak-ng` program
//! (`espeak-ng -q -b 1 --ipa -v VOICE`, text on standard input), which prints one line of IPA
//! per clause without the punctuation. The punctuation is put back from the text: the text is
//! cut into clauses here, one per input line; when espeak-ng prints exactly one line per clause
//! the two are paired, otherwise each clause is run on its own.

use std::collections::HashMap;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use unicode_normalization::UnicodeNormalization;

pub const BOS: &str = "^";
pub const EOS: &str = "$";
pub const PAD: &str = "_";

/// The parts of a Piper voice's `.onnx.json` the element uses.
#[derive(Debug, Clone, Deserialize)]
pub struct VoiceConfig {
    pub audio: AudioConfig,
    #[serde(default)]
    pub espeak: EspeakConfig,
    #[serde(default)]
    pub inference: InferenceConfig,
    #[serde(default = "default_phoneme_type")]
    pub phoneme_type: String,
    pub phoneme_id_map: HashMap<String, Vec<i64>>,
    #[serde(default = "one")]
    pub num_speakers: u32,
    #[serde(default)]
    pub speaker_id_map: HashMap<String, i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AudioConfig {
    pub sample_rate: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EspeakConfig {
    pub voice: String,
}

impl Default for EspeakConfig {
    fn default() -> Self {
        Self {
            voice: "en-us".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct InferenceConfig {
    #[serde(default = "noise_scale")]
    pub noise_scale: f32,
    #[serde(default = "length_scale")]
    pub length_scale: f32,
    #[serde(default = "noise_w")]
    pub noise_w: f32,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            noise_scale: noise_scale(),
            length_scale: length_scale(),
            noise_w: noise_w(),
        }
    }
}

fn default_phoneme_type() -> String {
    "espeak".into()
}
fn one() -> u32 {
    1
}
fn noise_scale() -> f32 {
    0.667
}
fn length_scale() -> f32 {
    1.0
}
fn noise_w() -> f32 {
    0.8
}

impl VoiceConfig {
    pub fn parse(json: &str) -> Result<Self, String> {
        let cfg: VoiceConfig = serde_json::from_str(json).map_err(|e| e.to_string())?;
        if cfg.phoneme_type != "espeak" {
            return Err(format!(
                "phoneme_type '{}' is not supported (only espeak voices are)",
                cfg.phoneme_type
            ));
        }
        for sym in [BOS, EOS, PAD] {
            if cfg.phoneme_id_map.get(sym).is_none_or(|v| v.is_empty()) {
                return Err(format!("phoneme_id_map has no '{sym}'"));
            }
        }
        if cfg.audio.sample_rate == 0 {
            return Err("audio.sample_rate is 0".into());
        }
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The config file that goes with a model: `voice.onnx.json` beside `voice.onnx`.
    pub fn path_for_model(model: &Path) -> PathBuf {
        let mut s = model.as_os_str().to_owned();
        s.push(".json");
        PathBuf::from(s)
    }

    /// Phoneme ids of one sentence, as Piper builds them, with the range of ids each phoneme
    /// produced (its own ids and the pad after it; empty for a phoneme the voice lacks).
    /// Phonemes missing from the map are skipped (Piper does the same, with a warning); they
    /// are returned third.
    pub fn phoneme_ids(&self, phonemes: &[String]) -> (Vec<i64>, Vec<Range<usize>>, Vec<String>) {
        let map = &self.phoneme_id_map;
        let pad = &map[PAD];
        let mut ids = Vec::with_capacity(phonemes.len() * 2 + 3);
        let mut spans = Vec::with_capacity(phonemes.len());
        let mut missing = Vec::new();
        ids.extend(&map[BOS]);
        ids.extend(pad);
        for p in phonemes {
            let start = ids.len();
            match map.get(p.as_str()) {
                Some(v) => {
                    ids.extend(v);
                    ids.extend(pad);
                }
                None => missing.push(p.clone()),
            }
            spans.push(start..ids.len());
        }
        ids.extend(&map[EOS]);
        (ids, spans, missing)
    }
}

/// A clause of the input text and the punctuation that ends it (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    pub text: String,
    pub terminator: Option<char>,
}

impl Clause {
    pub fn ends_sentence(&self) -> bool {
        matches!(self.terminator, Some('.' | '?' | '!'))
    }
}

fn terminator_of(c: char) -> Option<char> {
    Some(match c {
        '.' | '。' | '…' => '.',
        '?' | '？' => '?',
        '!' | '！' => '!',
        ',' | '，' | '、' => ',',
        ':' | '：' => ':',
        ';' | '；' => ';',
        _ => return None,
    })
}

/// Cuts text into clauses the way espeak-ng does for the common cases: after a clause mark
/// followed by white space or the end of the text (full-width marks need no space). A run of
/// marks counts once; its first mark is the terminator ("?!" is a question, "..." a period).
pub fn split_clauses(text: &str) -> Vec<Clause> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let term = terminator_of(c);
        let fullwidth = !c.is_ascii();
        let mut j = i + 1;
        while j < chars.len() && (terminator_of(chars[j]).is_some() || is_quote(chars[j])) {
            j += 1;
        }
        let boundary =
            term.is_some() && (fullwidth || j == chars.len() || chars[j].is_whitespace());
        if boundary {
            for &k in &chars[i..j] {
                if is_quote(k) {
                    cur.push(k);
                }
            }
            push_clause(&mut out, &cur, term);
            cur.clear();
            i = j;
        } else {
            if c.is_whitespace() || c.is_control() {
                cur.push(' ');
            } else {
                cur.push(c);
            }
            i += 1;
        }
    }
    push_clause(&mut out, &cur, None);
    out
}

fn is_quote(c: char) -> bool {
    matches!(c, '"' | '\'' | ')' | '”' | '’' | '」' | '』' | '）')
}

fn push_clause(out: &mut Vec<Clause>, text: &str, terminator: Option<char>) {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().any(|c| c.is_alphanumeric()) {
        out.push(Clause { text, terminator });
    } else if let (Some(last), Some(t)) = (out.last_mut(), terminator) {
        // Stray marks ("word . ."): they belong to the previous clause.
        if last.terminator.is_none() {
            last.terminator = Some(t);
        }
    }
}

/// Removes espeak-ng's language-switch marks, `(en)`, `(cmn)`, from a line of IPA.
pub fn strip_language_flags(ipa: &str) -> String {
    let mut out = String::with_capacity(ipa.len());
    let mut depth = 0;
    for c in ipa.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Builds Piper's sentences of phonemes from clauses and the IPA espeak-ng gave for each.
pub fn sentences_from_ipa(clauses: &[Clause], ipa: &[String]) -> Vec<Vec<String>> {
    let mut sentences = Vec::new();
    let mut cur = String::new();
    for (clause, ipa) in clauses.iter().zip(ipa) {
        let ipa = strip_language_flags(ipa);
        let ipa = ipa.split_whitespace().collect::<Vec<_>>().join(" ");
        if ipa.is_empty() {
            continue;
        }
        if !cur.is_empty() && !cur.ends_with(' ') {
            cur.push(' ');
        }
        cur.push_str(&ipa);
        if let Some(t) = clause.terminator {
            cur.push(t);
            if matches!(t, ',' | ':' | ';') {
                cur.push(' ');
            }
        }
        if clause.ends_sentence() {
            sentences.push(codepoints(&cur));
            cur.clear();
        }
    }
    if !cur.trim().is_empty() {
        sentences.push(codepoints(&cur));
    }
    sentences
}

/// The phonemes of an IPA string: its code points after NFD normalization.
pub fn codepoints(ipa: &str) -> Vec<String> {
    ipa.nfd().map(|c| c.to_string()).collect()
}

/// Pairs espeak-ng's output lines with the clauses that were given one per line: `None` when
/// the counts differ (espeak-ng cut somewhere else, e.g. after "Dr.").
pub fn pair_lines(clauses: &[Clause], output: &str) -> Option<Vec<String>> {
    let lines: Vec<String> = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    (lines.len() == clauses.len()).then_some(lines)
}

/// Runs the espeak-ng program.
#[derive(Debug, Clone)]
pub struct Espeak {
    pub program: PathBuf,
    pub voice: String,
}

impl Espeak {
    pub fn new(voice: &str) -> Self {
        Self {
            program: PathBuf::from(
                std::env::var_os("LIVETALK_ESPEAK").unwrap_or_else(|| "espeak-ng".into()),
            ),
            voice: voice.to_string(),
        }
    }

    /// Checks that the program runs and knows the voice.
    pub fn check(&self) -> Result<(), String> {
        let out = self.run("test").map_err(|e| {
            format!(
                "cannot run the espeak-ng program '{}' ({e}); install it (Debian: apt-get \
                 install espeak-ng)",
                self.program.display()
            )
        })?;
        if out.trim().is_empty() {
            return Err(format!(
                "espeak-ng gave no phonemes for voice '{}' (is the voice installed?)",
                self.voice
            ));
        }
        Ok(())
    }

    /// IPA of `input` (UTF-8, on standard input): one line per clause.
    pub fn run(&self, input: &str) -> Result<String, String> {
        let mut child = Command::new(&self.program)
            .args(["-q", "-b", "1", "--ipa", "-v", &self.voice])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        let input = input.to_string();
        // Written from another thread: a long text must not dead-lock on full pipes.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
            let _ = stdin.write_all(b"\n");
        });
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let _ = writer.join();
        if !out.status.success() {
            return Err(format!(
                "espeak-ng failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Text to Piper's sentences of phonemes.
    pub fn phonemize(&self, text: &str) -> Result<Vec<Vec<String>>, String> {
        let clauses = split_clauses(text);
        if clauses.is_empty() {
            return Ok(Vec::new());
        }
        let joined: Vec<&str> = clauses.iter().map(|c| c.text.as_str()).collect();
        let out = self.run(&joined.join("\n"))?;
        let ipa = match pair_lines(&clauses, &out) {
            Some(lines) => lines,
            None => {
                let mut lines = Vec::with_capacity(clauses.len());
                for c in &clauses {
                    let out = self.run(&c.text)?;
                    lines.push(out.split_whitespace().collect::<Vec<_>>().join(" "));
                }
                lines
            }
        };
        Ok(sentences_from_ipa(&clauses, &ipa))
    }
}

/// Whether a phoneme separates words (spaces and the punctuation kept in the phonemes).
fn separates_words(p: &str) -> bool {
    p.chars()
        .all(|c| c.is_whitespace() || c.is_ascii_punctuation() || "—–…«»“”¡¿".contains(c))
}

/// The words of a phoneme sentence, as ranges of phoneme indices.
pub fn phoneme_words(phonemes: &[String]) -> Vec<Range<usize>> {
    let mut words = Vec::new();
    let mut start = None;
    for (i, p) in phonemes.iter().enumerate() {
        match (separates_words(p), start) {
            (true, Some(s)) => {
                words.push(s..i);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push(s..phonemes.len());
    }
    words
}

/// The words of a text as spoken: split at whitespace, punctuation around them removed,
/// tokens of punctuation only dropped.
pub fn text_words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

/// Where each word of a synthesized sentence lies in its audio, in samples `(start, length)`
/// (`None` for a word none of whose phonemes the voice has):
/// from the voice's frames per id (`durations`, the `durations` output that
/// models/piper_durations.py exposes) and the ids each phoneme produced. The frame length
/// is the audio's length over the frame count (256 samples for Piper's voices).
pub fn word_timings(
    words: &[Range<usize>],
    spans: &[Range<usize>],
    durations: &[f32],
    audio_len: usize,
) -> Vec<Option<(usize, usize)>> {
    let frames: f64 = durations.iter().map(|&d| d as f64).sum();
    if frames <= 0.0 {
        return vec![None; words.len()];
    }
    let hop = audio_len as f64 / frames;
    let mut before = vec![0.0f64; durations.len() + 1];
    for (i, d) in durations.iter().enumerate() {
        before[i + 1] = before[i] + *d as f64;
    }
    let at = |id: usize| (before[id.min(durations.len())] * hop).round() as usize;
    words
        .iter()
        .map(|w| {
            let first = spans[w.start..w.end].iter().find(|s| !s.is_empty())?;
            let last = spans[w.start..w.end].iter().rev().find(|s| !s.is_empty())?;
            let (a, b) = (at(first.start), at(last.end));
            Some((a, b.saturating_sub(a)))
        })
        .collect()
}

/// Model output to 16-bit samples, as Piper does: scaled so that the peak is full scale
/// (peaks under 0.01 are not amplified past 100x), clipped.
pub fn to_i16(audio: &[f32]) -> Vec<i16> {
    let peak = audio.iter().fold(0f32, |m, &x| m.max(x.abs())).max(0.01);
    let gain = 32767.0 / peak;
    audio
        .iter()
        .map(|&x| (x * gain).clamp(-32767.0, 32767.0) as i16)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<String> {
        s.chars().map(String::from).collect()
    }

    #[test]
    fn words_of_phonemes_and_text() {
        let p = chars("həlˈoʊ ðˈɛɹ, hˌaʊ ɑːɹ juː?");
        let w = phoneme_words(&p);
        assert_eq!(w.len(), 5);
        assert_eq!(p[w[1].clone()].concat(), "ðˈɛɹ");
        assert_eq!(p[w[4].clone()].concat(), "juː");
        assert_eq!(
            text_words("Hello there, how are you? — \"Fine\"."),
            ["Hello", "there", "how", "are", "you", "Fine"]
        );
        assert_eq!(text_words("don't"), ["don't"]);
    }

    #[test]
    fn word_timings_add_up_the_frames_of_their_ids() {
        // ids: BOS, pad, then per phoneme (id, pad): "ab c" -> a b ' ' c, EOS.
        let spans = vec![2..4, 4..6, 6..8, 8..10];
        let words = phoneme_words(&chars("ab c"));
        assert_eq!(words, vec![0..2, 3..4]);
        // frames per id: BOS 1, pad 1, a 3, pad 1, b 2, pad 0, ' ' 4, pad 1, c 2, pad 1, EOS 1
        let d = [1.0, 1.0, 3.0, 1.0, 2.0, 0.0, 4.0, 1.0, 2.0, 1.0, 1.0];
        let frames: f32 = d.iter().sum();
        let t = word_timings(&words, &spans, &d, frames as usize * 256);
        assert_eq!(t, vec![Some((2 * 256, 6 * 256)), Some((13 * 256, 3 * 256))]);
        // A word whose phonemes the voice lacks has no timing.
        let t = word_timings(&words, &[2..4, 4..6, 6..8, 8..8], &d, frames as usize * 256);
        assert_eq!(t[1], None);
    }

    fn config() -> VoiceConfig {
        VoiceConfig::parse(
            r#"{"audio":{"sample_rate":22050},"espeak":{"voice":"en-us"},
               "inference":{"noise_scale":0.667,"length_scale":1,"noise_w":0.8},
               "phoneme_type":"espeak","num_speakers":1,"speaker_id_map":{},
               "phoneme_id_map":{"_":[0],"^":[1],"$":[2]," ":[3],"!":[4],",":[8],".":[10],
               "?":[13],"h":[20],"l":[24],"w":[35],"ə":[59],"ˈ":[120],"ː":[122],"o":[27],
               "ʊ":[100],"ɜ":[62],"d":[17],"c":[16],"̧":[140]}}"#,
        )
        .unwrap()
    }

    #[test]
    fn ids_are_built_as_piper_does() {
        let cfg = config();
        let (ids, spans, missing) = cfg.phoneme_ids(&codepoints("həlˈoʊ."));
        // ^ _ h _ ə _ l _ ˈ _ o _ ʊ _ . _ $
        assert_eq!(
            ids,
            vec![1, 0, 20, 0, 59, 0, 24, 0, 120, 0, 27, 0, 100, 0, 10, 0, 2]
        );
        assert!(missing.is_empty());
        assert_eq!((spans[0].clone(), spans[6].clone()), (2..4, 14..16));
        let (ids, spans, missing) = cfg.phoneme_ids(&codepoints("hx"));
        assert_eq!(ids, vec![1, 0, 20, 0, 2]);
        assert_eq!(spans, vec![2..4, 4..4]);
        assert_eq!(missing, vec!["x"]);
        let (ids, _, _) = cfg.phoneme_ids(&[]);
        assert_eq!(ids, vec![1, 0, 2]);
    }

    #[test]
    fn phonemes_are_nfd_code_points() {
        // U+00E7 (ç) decomposes into c + U+0327 (combining cedilla).
        assert_eq!(codepoints("\u{e7}"), vec!["c", "\u{327}"]);
        assert_eq!(codepoints("aˈb c"), vec!["a", "ˈ", "b", " ", "c"]);
    }

    #[test]
    fn config_is_checked() {
        assert!(VoiceConfig::parse("{}").is_err());
        let err = VoiceConfig::parse(
            r#"{"audio":{"sample_rate":22050},"phoneme_type":"text","phoneme_id_map":{}}"#,
        )
        .unwrap_err();
        assert!(err.contains("phoneme_type 'text'"), "{err}");
        let err =
            VoiceConfig::parse(r#"{"audio":{"sample_rate":22050},"phoneme_id_map":{"_":[0]}}"#)
                .unwrap_err();
        assert!(err.contains("no '^'"), "{err}");
        let cfg = config();
        assert_eq!(cfg.audio.sample_rate, 22050);
        assert_eq!(cfg.num_speakers, 1);
        assert_eq!(
            VoiceConfig::path_for_model(Path::new("/v/en.onnx")),
            PathBuf::from("/v/en.onnx.json")
        );
    }

    #[test]
    fn clauses_keep_their_punctuation() {
        let c = split_clauses("Hello world, this is it. How are you?! I'm fine: thanks; bye");
        let got: Vec<(&str, Option<char>)> =
            c.iter().map(|c| (c.text.as_str(), c.terminator)).collect();
        assert_eq!(
            got,
            vec![
                ("Hello world", Some(',')),
                ("this is it", Some('.')),
                ("How are you", Some('?')),
                ("I'm fine", Some(':')),
                ("thanks", Some(';')),
                ("bye", None),
            ]
        );
        // Decimals, times and full-width marks.
        let c = split_clauses("It costs 3.50 at 10:30.你好，世界。");
        let got: Vec<(&str, Option<char>)> =
            c.iter().map(|c| (c.text.as_str(), c.terminator)).collect();
        assert_eq!(
            got,
            vec![
                ("It costs 3.50 at 10:30.你好", Some(',')),
                ("世界", Some('.'))
            ]
        );
        assert!(split_clauses("... !!").is_empty());
        assert_eq!(split_clauses("Wait . .")[0].terminator, Some('.'));
    }

    #[test]
    fn ipa_lines_become_sentences_with_punctuation() {
        let clauses = split_clauses("Hello, world. Bye");
        let ipa = pair_lines(&clauses, "həlˈoʊ\nwˈɜːld\n\nbˈaɪ\n").unwrap();
        let s = sentences_from_ipa(&clauses, &ipa);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].concat(), "həlˈoʊ, wˈɜːld.");
        assert_eq!(s[1].concat(), "bˈaɪ");
        assert!(pair_lines(&clauses, "a\nb\n").is_none());
        assert_eq!(strip_language_flags("(en)nɪ5(cmn) x"), "nɪ5 x");
    }

    #[test]
    fn float_audio_is_peak_normalized() {
        assert_eq!(to_i16(&[0.5, -0.25, 0.0]), vec![32767, -16383, 0]);
        // Quiet audio is amplified at most 100x.
        assert_eq!(to_i16(&[0.001]), vec![3276]);
        assert!(to_i16(&[]).is_empty());
    }

    #[test]
    fn espeak_program_gives_piper_sentences() {
        let e = Espeak::new("en-us");
        if e.check().is_err() {
            eprintln!("espeak-ng not installed: skipped");
            return;
        }
        let s = e.phonemize("Hello world, how are you? Fine.").unwrap();
        assert_eq!(s.len(), 2);
        let first = s[0].concat();
        assert!(first.contains(", "), "{first}");
        assert!(first.ends_with('?'), "{first}");
        assert!(first.starts_with("həlˈoʊ"), "{first}");
        assert_eq!(s[1].concat(), "fˈaɪn.");
        // espeak-ng cuts after "Dr." where the text splitter does not: the per-clause
        // fallback still gives every word.
        let s = e.phonemize("Ask Dr. Smith, then e.g. Bob.").unwrap();
        let all: String = s.iter().map(|x| x.concat()).collect::<Vec<_>>().join(" ");
        assert!(all.contains("smˈɪθ"), "{all}");
        assert!(all.contains("bˈɑːb"), "{all}");
    }
}
