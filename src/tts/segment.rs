//! Text clean-up and sentence segmentation of streamed text (an LLM's token stream).
//!
//! The rule is LiveTalking's: text is cut after a clause punctuation mark once the piece is
//! longer than [`MIN_CHARS`] characters, Chinese and Latin alike. Two refinements: a Latin
//! `.`, `,` or `:` between two digits ("3.5", "1,000", "10:30") is not a cut, and a piece that
//! grows past the `max_chars` limit without punctuation is cut at its last space (or, for text
//! without spaces, at the limit), so that no unit handed to an engine is unbounded.

/// Marks after which a piece may be cut: LiveTalking's `,.!;:，。！？：；`, plus the ASCII `?`
/// (absent from LiveTalking's list, which only has the full-width one).
pub const CUT_MARKS: &[char] = &[
    ',', '.', '!', '?', ';', ':', '，', '。', '！', '？', '：', '；',
];

/// A piece is cut at a mark only once it is longer than this many characters.
pub const MIN_CHARS: usize = 10;

/// Default upper bound of a piece without punctuation, in characters.
pub const DEFAULT_MAX_CHARS: usize = 300;

/// Replaces control characters (C0, DEL, C1) and other invisible format characters by spaces
/// and collapses runs of white space; trims the ends.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        let blank = c.is_whitespace()
            || c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{feff}');
        if blank {
            space = true;
        } else {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        }
    }
    out
}

/// Whether a piece has anything to say (a letter or a digit, in any script).
pub fn is_speakable(piece: &str) -> bool {
    piece.chars().any(|c| c.is_alphanumeric())
}

/// Cuts a stream of text fragments into pieces to speak.
#[derive(Debug, Clone)]
pub struct Segmenter {
    buf: String,
    max_chars: usize,
}

impl Default for Segmenter {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_CHARS)
    }
}

impl Segmenter {
    pub fn new(max_chars: usize) -> Self {
        Self {
            buf: String::new(),
            max_chars: max_chars.max(MIN_CHARS + 1),
        }
    }

    /// Text received but not yet cut.
    pub fn pending(&self) -> &str {
        &self.buf
    }

    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// Adds a fragment; returns the pieces that are complete, in order.
    pub fn push(&mut self, fragment: &str) -> Vec<String> {
        self.buf.push_str(fragment);
        self.cut(false)
    }

    /// The end of the stream: returns every remaining piece.
    pub fn finish(&mut self) -> Vec<String> {
        let mut out = self.cut(true);
        let rest = std::mem::take(&mut self.buf);
        out.extend(clean(&rest));
        out
    }

    fn cut(&mut self, at_end: bool) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            // A cut is always within the first `max_chars` characters (plus a run of marks
            // and one character of look-ahead): no need to look further.
            let chars: Vec<(usize, char)> =
                self.buf.char_indices().take(self.max_chars + 64).collect();
            let whole = chars.len() < self.max_chars + 64;
            let mut cut_at = None;
            for (k, &(i, c)) in chars.iter().enumerate() {
                if k + 1 > self.max_chars {
                    // Too long without a usable mark: cut at the last space before the limit.
                    let limit = i;
                    let at = self.buf[..limit]
                        .rfind(' ')
                        .filter(|&s| s > 0)
                        .map(|s| s + 1)
                        .unwrap_or(limit);
                    cut_at = Some(at);
                    break;
                }
                if !CUT_MARKS.contains(&c) || k < MIN_CHARS {
                    // k + 1 characters so far, including this one: cut only when > MIN_CHARS.
                    continue;
                }
                if matches!(c, '.' | ',' | ':') {
                    let prev_digit = k > 0 && chars[k - 1].1.is_ascii_digit();
                    match chars.get(k + 1) {
                        Some(&(_, next)) if prev_digit && next.is_ascii_digit() => continue,
                        // Wait for the next character.
                        None if prev_digit && !at_end && whole => break,
                        _ => {}
                    }
                }
                // Keep a run of marks together ("?!", "...", "。」").
                let mut end = k + 1;
                while end < chars.len()
                    && (CUT_MARKS.contains(&chars[end].1) || is_closing(chars[end].1))
                {
                    end += 1;
                }
                let (li, lc) = chars[end - 1];
                cut_at = Some(chars.get(end).map_or(li + lc.len_utf8(), |&(i, _)| i));
                break;
            }
            let Some(at) = cut_at else { break };
            let piece: String = self.buf.drain(..at).collect();
            out.extend(clean(&piece));
        }
        out
    }
}

fn is_closing(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | ')' | ']' | '”' | '’' | '」' | '』' | '）' | '》'
    )
}

fn clean(piece: &str) -> Option<String> {
    let s = sanitize(piece);
    is_speakable(&s).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(seg: &mut Segmenter, fragments: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for f in fragments {
            out.extend(seg.push(f));
        }
        out.extend(seg.finish());
        out
    }

    #[test]
    fn sanitize_removes_controls_and_collapses_space() {
        assert_eq!(
            sanitize("  a\u{0}b\tc\r\n\u{7f}d\u{85}e\u{200b}f  "),
            "a b c d e f"
        );
        assert_eq!(sanitize("\u{1b}[31mred"), "[31mred");
        assert_eq!(sanitize(""), "");
        assert_eq!(sanitize(" \n\t "), "");
        assert_eq!(sanitize("你好 世界"), "你好 世界");
    }

    #[test]
    fn livetalk_rule_cuts_after_ten_characters() {
        let mut s = Segmenter::default();
        // "Hi, there." : the comma comes after 3 characters (no cut), the period after 10
        // (not more than 10: no cut either); the rest arrives with the next fragment.
        let out = feed(&mut s, &["Hi, there. How are", " you today? I am fine."]);
        assert_eq!(out, vec!["Hi, there. How are you today?", "I am fine."]);
    }

    #[test]
    fn token_stream_is_cut_as_it_arrives() {
        let mut s = Segmenter::default();
        let mut got = Vec::new();
        for tok in ["Hello", " world", ",", " this", " is", " a", " test", "."] {
            got.push(s.push(tok));
        }
        assert_eq!(got[2], vec!["Hello world,"]);
        assert!(got[..2].iter().all(|v| v.is_empty()));
        assert_eq!(got[7], vec!["this is a test."]);
        assert!(s.finish().is_empty());
    }

    #[test]
    fn chinese_marks_cut() {
        let mut s = Segmenter::default();
        let out = feed(&mut s, &["你好，今天天气很好，我们去公园散步吧！好的。"]);
        assert_eq!(
            out,
            vec!["你好，今天天气很好，我们去公园散步吧！", "好的。"]
        );
    }

    #[test]
    fn decimals_and_times_are_not_cut() {
        let mut s = Segmenter::default();
        let out = feed(&mut s, &["The price is 3", ".", "50 dollars at 10:30, ok."]);
        assert_eq!(out, vec!["The price is 3.50 dollars at 10:30,", "ok."]);
    }

    #[test]
    fn mark_runs_stay_together() {
        let mut s = Segmenter::default();
        let out = feed(&mut s, &["Are you serious?! \"Yes.\" Really..."]);
        assert_eq!(out, vec!["Are you serious?!", "\"Yes.\" Really..."]);
    }

    #[test]
    fn long_text_without_marks_is_cut_at_spaces() {
        let mut s = Segmenter::new(50);
        let words: Vec<String> = (0..40).map(|i| format!("w{i}")).collect();
        let text = words.join(" ");
        let out = feed(&mut s, &[&text]);
        assert!(out.len() > 1);
        assert!(out.iter().all(|p| p.chars().count() <= 50), "{out:?}");
        assert_eq!(out.join(" "), text, "nothing lost");
        // No spaces at all (CJK): a hard cut at the limit, nothing lost.
        let cjk: String = std::iter::repeat_n('字', 120).collect();
        let out = feed(&mut s, &[&cjk]);
        assert_eq!(out.concat(), cjk);
        assert!(out.iter().all(|p| p.chars().count() <= 50));
    }

    #[test]
    fn punctuation_only_pieces_are_dropped() {
        let mut s = Segmenter::default();
        assert!(feed(&mut s, &["... !!! ???"]).is_empty());
        assert!(feed(&mut s, &[""]).is_empty());
    }

    #[test]
    fn clear_drops_pending_text() {
        let mut s = Segmenter::default();
        assert!(s.push("half a sent").is_empty());
        assert_eq!(s.pending(), "half a sent");
        s.clear();
        assert!(s.finish().is_empty());
    }
}
