//! Whisper greedy decoding, free of the model: the loop, the suppressed tokens, the
//! no-speech and repetition guards.
//!
//! As whisper (and CTranslate2's `generate` with `beam_size=1`) decode without timestamps:
//! the prompt is `<|startoftranscript|>` (then the language and `<|transcribe|>` for a
//! multilingual model) and `<|notimestamps|>`; at each step the suppressed tokens get no
//! probability (at the first step also the "begin" set: the blank and `<|endoftext|>`), the
//! most probable token is taken, until `<|endoftext|>` or the token budget.
//!
//! Guards:
//! - no speech: the probability of the no-speech token right after `<|startoftranscript|>`
//!   above `no_speech_threshold` together with an average log-probability below
//!   `logprob_threshold` means silence (whisper's rule); the text is dropped.
//! - repetition: when the tokens end with one pattern (1 to [`MAX_PATTERN`] tokens) repeated
//!   at least [`MIN_REPEATS`] times over at least [`MIN_REPEATED_TOKENS`] tokens, decoding
//!   stops and one copy of the pattern is kept (greedy decoding's loops).

/// Longest repeated pattern the repetition guard looks for.
pub const MAX_PATTERN: usize = 32;
/// A pattern must repeat this often ...
pub const MIN_REPEATS: usize = 4;
/// ... over at least this many tokens, to count as a loop.
pub const MIN_REPEATED_TOKENS: usize = 16;

/// Runs the decoder: the tokens given (the prompt, then one at a time) with everything before
/// them cached; returns the logits after each given token, `[tokens.len(), vocab]`.
pub trait DecoderStep {
    fn step(&mut self, tokens: &[i64]) -> Result<Vec<f32>, String>;
    fn vocab(&self) -> usize;
}

/// The special tokens decoding needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialTokens {
    pub sot: i64,
    pub eot: i64,
    pub no_timestamps: i64,
    /// `<|nospeech|>` (multilingual) or `<|nocaptions|>` (English-only models).
    pub no_speech: Option<i64>,
    /// `<|transcribe|>`, for multilingual models.
    pub transcribe: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DecodeParams {
    /// Language token for a multilingual model (`<|en|>`, ...); `None` for English-only.
    pub language: Option<i64>,
    pub suppress: Vec<i64>,
    pub suppress_begin: Vec<i64>,
    /// Most tokens to generate.
    pub max_tokens: usize,
    pub no_speech_threshold: f64,
    pub logprob_threshold: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    EndOfText,
    MaxTokens,
    Repetition,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The text tokens (no special tokens).
    pub tokens: Vec<i64>,
    /// Sum of the chosen tokens' log-probabilities (the end token included) over their count.
    pub avg_logprob: f64,
    /// Probability of the no-speech token after `<|startoftranscript|>`.
    pub no_speech_prob: f64,
    pub stop: Stop,
    /// The no-speech guard judged this silence (the tokens are then empty).
    pub no_speech: bool,
}

/// The prompt for these tokens and parameters.
pub fn prompt(special: &SpecialTokens, params: &DecodeParams) -> Vec<i64> {
    let mut p = vec![special.sot];
    if let (Some(lang), Some(task)) = (params.language, special.transcribe) {
        p.push(lang);
        p.push(task);
    }
    p.push(special.no_timestamps);
    p
}

fn log_softmax_at(logits: &[f32], index: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| (v as f64 - max).exp())
        .sum();
    logits[index] as f64 - max - sum.ln()
}

/// Length of the repeated tail (pattern length, repeats) if the tokens end in a loop.
pub fn repeated_tail(tokens: &[i64]) -> Option<(usize, usize)> {
    for n in 1..=MAX_PATTERN.min(tokens.len() / MIN_REPEATS) {
        let pattern = &tokens[tokens.len() - n..];
        let mut reps = 1;
        while tokens.len() >= (reps + 1) * n
            && &tokens[tokens.len() - (reps + 1) * n..tokens.len() - reps * n] == pattern
        {
            reps += 1;
        }
        if reps >= MIN_REPEATS && reps * n >= MIN_REPEATED_TOKENS {
            return Some((n, reps));
        }
    }
    None
}

/// Greedy decoding. `cancelled` is asked before each step.
pub fn greedy(
    model: &mut dyn DecoderStep,
    special: &SpecialTokens,
    params: &DecodeParams,
    cancelled: &dyn Fn() -> bool,
) -> Result<Decoded, String> {
    let vocab = model.vocab();
    let prompt = prompt(special, params);
    let mut input = prompt.clone();
    let mut tokens = Vec::new();
    let mut sum_logprob = 0.0f64;
    let mut no_speech_prob = 0.0;
    let mut stop = Stop::MaxTokens;
    for step in 0..params.max_tokens + 1 {
        if cancelled() {
            stop = Stop::Cancelled;
            break;
        }
        let logits = model.step(&input)?;
        if logits.len() != input.len() * vocab {
            return Err(format!(
                "decoder gave {} logits for {} tokens of a {vocab}-token vocabulary",
                logits.len(),
                input.len()
            ));
        }
        if step == 0
            && let Some(ns) = special.no_speech
            && (ns as usize) < vocab
        {
            // logits after <|startoftranscript|>, before any suppression
            no_speech_prob = log_softmax_at(&logits[..vocab], ns as usize).exp();
        }
        let mut last = logits[logits.len() - vocab..].to_vec();
        for &t in &params.suppress {
            if let Some(v) = last.get_mut(t as usize) {
                *v = f32::NEG_INFINITY;
            }
        }
        if step == 0 {
            for &t in &params.suppress_begin {
                if let Some(v) = last.get_mut(t as usize) {
                    *v = f32::NEG_INFINITY;
                }
            }
        }
        let (best, _) =
            last.iter()
                .enumerate()
                .fold((0usize, f32::NEG_INFINITY), |acc, (i, &v)| {
                    if v > acc.1 { (i, v) } else { acc }
                });
        sum_logprob += log_softmax_at(&last, best);
        let best = best as i64;
        if best == special.eot {
            stop = Stop::EndOfText;
            break;
        }
        if step == params.max_tokens {
            break;
        }
        tokens.push(best);
        if let Some((n, reps)) = repeated_tail(&tokens) {
            tokens.truncate(tokens.len() - (reps - 1) * n);
            stop = Stop::Repetition;
            break;
        }
        input = vec![best];
    }
    // whisper divides by the text tokens plus one (the end token)
    let avg_logprob = sum_logprob / (tokens.len() + 1) as f64;
    let no_speech =
        no_speech_prob > params.no_speech_threshold && avg_logprob < params.logprob_threshold;
    if no_speech {
        tokens.clear();
    }
    Ok(Decoded {
        tokens,
        avg_logprob,
        no_speech_prob,
        stop,
        no_speech,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: usize = 16;

    /// A decoder that says a fixed script: after the prompt, token `script[i]` at step i;
    /// logits put `margin` on the chosen token.
    struct Script {
        script: Vec<i64>,
        calls: Vec<Vec<i64>>,
        no_speech_logit: f32,
    }

    impl DecoderStep for Script {
        fn step(&mut self, tokens: &[i64]) -> Result<Vec<f32>, String> {
            let i = self.calls.len();
            self.calls.push(tokens.to_vec());
            let mut out = vec![0.0f32; tokens.len() * V];
            if i == 0 {
                out[9] = self.no_speech_logit;
            }
            let next = *self.script.get(i).unwrap_or(&1);
            let last = &mut out[(tokens.len() - 1) * V..];
            last[next as usize] = 10.0;
            Ok(out)
        }
        fn vocab(&self) -> usize {
            V
        }
    }

    fn special() -> SpecialTokens {
        SpecialTokens {
            sot: 13,
            eot: 1,
            no_timestamps: 14,
            no_speech: Some(9),
            transcribe: Some(12),
        }
    }

    fn params() -> DecodeParams {
        DecodeParams {
            language: None,
            suppress: vec![7],
            suppress_begin: vec![2, 1],
            max_tokens: 50,
            no_speech_threshold: 0.6,
            logprob_threshold: -1.0,
        }
    }

    #[test]
    fn prompt_for_english_only_and_multilingual() {
        assert_eq!(prompt(&special(), &params()), vec![13, 14]);
        let p = DecodeParams {
            language: Some(11),
            ..params()
        };
        assert_eq!(prompt(&special(), &p), vec![13, 11, 12, 14]);
    }

    #[test]
    fn greedy_feeds_the_prompt_then_one_token_and_stops_at_eot() {
        let mut m = Script {
            script: vec![3, 4, 5, 1],
            calls: vec![],
            no_speech_logit: 0.0,
        };
        let d = greedy(&mut m, &special(), &params(), &|| false).unwrap();
        assert_eq!(d.tokens, vec![3, 4, 5]);
        assert_eq!(d.stop, Stop::EndOfText);
        assert_eq!(m.calls, vec![vec![13, 14], vec![3], vec![4], vec![5]]);
        assert!(
            d.avg_logprob > -0.01 && d.avg_logprob <= 0.0,
            "{}",
            d.avg_logprob
        );
        assert!(!d.no_speech);
    }

    #[test]
    fn suppressed_tokens_are_never_chosen() {
        // 7 is always suppressed; at the first step 2 and EOT are too: the best left wins
        let mut m = Script {
            script: vec![2, 7, 1],
            calls: vec![],
            no_speech_logit: 0.0,
        };
        let d = greedy(&mut m, &special(), &params(), &|| false).unwrap();
        assert!(!d.tokens.contains(&7) && d.tokens[0] != 2, "{:?}", d.tokens);
    }

    #[test]
    fn no_speech_guard_needs_both_conditions() {
        // high no-speech probability but confident text: kept
        let mut m = Script {
            script: vec![3, 1],
            calls: vec![],
            no_speech_logit: 20.0,
        };
        let d = greedy(&mut m, &special(), &params(), &|| false).unwrap();
        assert!(d.no_speech_prob > 0.9);
        assert_eq!(d.tokens, vec![3]);
        // and unsure text (suppressed winners force flat choices): dropped
        let mut m = Script {
            script: vec![7, 7, 7, 1],
            calls: vec![],
            no_speech_logit: 20.0,
        };
        let d = greedy(&mut m, &special(), &params(), &|| false).unwrap();
        assert!(d.avg_logprob < -1.0, "{}", d.avg_logprob);
        assert!(d.no_speech && d.tokens.is_empty());
    }

    #[test]
    fn repetition_guard_keeps_one_copy() {
        let mut script = vec![3];
        for _ in 0..10 {
            script.extend([4, 5, 6, 8]);
        }
        let mut m = Script {
            script,
            calls: vec![],
            no_speech_logit: 0.0,
        };
        let d = greedy(&mut m, &special(), &params(), &|| false).unwrap();
        assert_eq!(d.stop, Stop::Repetition);
        assert_eq!(d.tokens, vec![3, 4, 5, 6, 8]);
        assert_eq!(repeated_tail(&[5, 5, 5]), None);
        assert_eq!(repeated_tail(&[9, 9, 9, 9, 9]), None);
        assert_eq!(repeated_tail(&[5; 16]), Some((1, 16)));
    }

    #[test]
    fn token_budget_and_cancel() {
        let mut m = Script {
            script: (2..=6).chain(2..=6).chain(2..=6).collect(),
            calls: vec![],
            no_speech_logit: 0.0,
        };
        let p = DecodeParams {
            max_tokens: 4,
            suppress_begin: vec![],
            ..params()
        };
        let d = greedy(&mut m, &special(), &p, &|| false).unwrap();
        assert_eq!(d.tokens, vec![2, 3, 4, 5]);
        assert_eq!(d.stop, Stop::MaxTokens);
        let d = greedy(&mut m, &special(), &p, &|| true).unwrap();
        assert_eq!(d.stop, Stop::Cancelled);
        assert!(d.tokens.is_empty());
    }
}
