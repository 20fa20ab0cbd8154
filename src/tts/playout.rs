//! The playout of a TTS source as a state machine, free of GStreamer and of threads.
//!
//! Three parties drive it, each under the caller's lock:
//!
//! - the application: [`Playout::speak`], [`Playout::push_fragment`],
//!   [`Playout::end_fragments`], [`Playout::flush`], and [`Playout::push_audio`] for audio
//!   that needs no synthesis (an uploaded recording), queued and played like a sentence;
//! - the synthesis side: [`Playout::next_job`] (the next piece of text to synthesize, at most
//!   `lookahead` pieces ahead of the one playing), then [`Playout::audio`] /
//!   [`Playout::word`] as the engine delivers, and [`Playout::finished`];
//! - the output side: [`Playout::next`], which plays the next `n` samples and tells what
//!   happened in them as [`PlayoutEvent`]s.
//!
//! Sample counts are the clock: every event carries the stream offset (in samples) it belongs
//! to; the caller turns offsets into running times.
//!
//! Live, every call of `next` gives exactly `n` samples: the sentence playing (zeros where
//! synthesis is late or after the sentence's last sample) or silence while idle. A sentence
//! starts at the next buffer once it is synthesized, or once `prebuffer` samples of it are
//! there (engines that stream). Not live, `next` gives the queue's speech as fast as it is
//! synthesized, sentences back to back without silence, [`Chunk::Wait`] while synthesis is
//! behind, and [`Chunk::Eos`] once everything (streamed fragments included) is spoken.

use std::collections::VecDeque;

use super::WordBoundary;
use super::segment::{self, Segmenter};

/// Audio per live buffer.
pub const BUFFER_MS: u64 = 20;
/// Sentences synthesized ahead of the one playing.
pub const LOOKAHEAD: usize = 2;
/// Pieces (sentences, uploads) that may wait to play: past this, `speak` is refused and
/// streamed fragments are dropped, so that a flood of text cannot grow the queue forever. A
/// long document (100 KB of text is about 2000 sentences) still fits in one `speak`.
pub const MAX_QUEUED: usize = 4096;
/// A sentence still arriving (streamed engines) starts playing once this much is there.
pub const PREBUFFER_MS: u64 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Sample rate of the engine's audio.
    pub rate: u32,
    /// Live: real-time buffers of silence while idle. Not live: speech only, then EOS.
    pub live: bool,
    /// Samples a sentence still being synthesized needs before it starts (live only).
    pub prebuffer: usize,
    /// Sentences synthesized ahead of the one playing.
    pub lookahead: usize,
}

impl Config {
    pub fn new(rate: u32, live: bool) -> Self {
        Self {
            rate,
            live,
            prebuffer: samples_of_ms(rate, PREBUFFER_MS),
            lookahead: LOOKAHEAD,
        }
    }

    /// Samples in one live buffer.
    pub fn buffer_samples(&self) -> usize {
        samples_of_ms(self.rate, BUFFER_MS)
    }
}

fn samples_of_ms(rate: u32, ms: u64) -> usize {
    (rate as u64 * ms / 1000) as usize
}

/// A piece of text for the synthesis side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: u64,
    pub text: String,
}

/// What happened in the samples [`Playout::next`] gave, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlayoutEvent {
    /// A sentence's first sample is at `offset`.
    SpeechStart { text: String, offset: u64 },
    /// A sentence ended: `offset` is the sample after its last one played.
    SpeechEnd {
        text: String,
        offset: u64,
        interrupted: bool,
    },
    /// A word of the sentence that starts at `sentence_offset`; `offset_ns` and
    /// `duration_ns` count from the sentence's first sample.
    Word {
        text: String,
        sentence_offset: u64,
        offset_ns: u64,
        duration_ns: u64,
    },
    /// `flush` dropped queued and playing speech.
    Interrupt,
    /// A sentence could not be synthesized and is skipped.
    Skipped { text: String, reason: String },
    /// Whether speech is playing or queued to play changed.
    Speaking(bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// Samples starting at stream offset `offset`; `silence` when nothing was playing (GAP).
    Audio {
        offset: u64,
        samples: Vec<i16>,
        silence: bool,
    },
    /// Not live: nothing to play until synthesis delivers more.
    Wait,
    /// Not live: everything is spoken.
    Eos,
}

/// The result of [`Playout::next`]: the chunk, and the events that go before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub chunk: Chunk,
    pub events: Vec<PlayoutEvent>,
}

/// Why `speak` queued nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No speakable text: the text after clean-up.
    NothingToSpeak(String),
    /// [`MAX_QUEUED`] pieces wait already (how many).
    QueueFull { queued: usize },
}

/// What waits for the synthesis side: text, or audio that is ready as it is.
#[derive(Debug)]
enum Pending {
    Text(String),
    Audio { label: String, samples: Vec<i16> },
}

/// A sentence being synthesized, synthesized, or playing.
#[derive(Debug)]
struct Sentence {
    id: u64,
    text: String,
    samples: Vec<i16>,
    words: Vec<WordBoundary>,
    done: bool,
    /// Why synthesis failed (the sentence is skipped with a warning).
    failure: Option<String>,
    /// Synthesis stopped without a reason to report (cancelled).
    dropped: bool,
    /// Given as audio ([`Playout::push_audio`]), not synthesized.
    audio: bool,
}

#[derive(Debug)]
struct Playing {
    sentence: Sentence,
    /// Next sample of the sentence to play.
    pos: usize,
    /// Stream offset of its first sample.
    start: u64,
    next_word: usize,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Playout {
    config: Config,
    started: bool,
    /// Text waiting for synthesis (and ready audio queued behind it), in order.
    pending: VecDeque<Pending>,
    /// Streamed fragments not yet cut into a sentence.
    segmenter: Segmenter,
    /// Sentences being or done being synthesized, not yet playing.
    ready: VecDeque<Sentence>,
    playing: Option<Playing>,
    next_id: u64,
    /// Samples produced so far.
    offset: u64,
    /// A sentence ended in the last chunk: its end goes out before the next one.
    pending_end: Option<(String, u64)>,
    /// `flush` was called: the next chunk cuts the sentence playing and interrupts.
    flush_pending: bool,
    speaking: bool,
    /// Streamed pieces dropped because the queue was full.
    dropped: u64,
}

impl Playout {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            started: false,
            pending: VecDeque::new(),
            segmenter: Segmenter::default(),
            ready: VecDeque::new(),
            playing: None,
            next_id: 0,
            offset: 0,
            pending_end: None,
            flush_pending: false,
            speaking: false,
            dropped: 0,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether a stream is running (between [`Playout::start`] and [`Playout::stop`]).
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Samples produced so far in this stream.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether speech is playing or queued to play (as last reported by `next`).
    pub fn speaking(&self) -> bool {
        self.speaking
    }

    /// A new stream: offsets from 0. Text queued before (while stopped) stays queued.
    pub fn start(&mut self, config: Config) {
        self.config = config;
        self.started = true;
        self.offset = 0;
        self.playing = None;
        self.pending_end = None;
        self.flush_pending = false;
        self.speaking = false;
    }

    /// The stream ends: the sentence playing is dropped; sentences not yet playing go back to
    /// the queue (only `flush` loses text), their synthesis is no longer wanted.
    pub fn stop(&mut self) {
        self.started = false;
        self.playing = None;
        self.pending_end = None;
        for s in self.ready.drain(..).rev() {
            self.pending.push_front(if s.audio {
                Pending::Audio {
                    label: s.text,
                    samples: s.samples,
                }
            } else {
                Pending::Text(s.text)
            });
        }
        self.speaking = false;
    }

    /// `speak(text)`: the whole text, cut into sentences. Returns the pieces queued, or
    /// why nothing was: no speakable text (the cleaned text), or a full queue (nothing of
    /// the text is queued then).
    pub fn speak(&mut self, text: &str) -> Result<usize, Refused> {
        let clean = segment::sanitize(text);
        if !segment::is_speakable(&clean) {
            return Err(Refused::NothingToSpeak(clean));
        }
        let mut seg = Segmenter::default();
        let mut pieces = seg.push(&clean);
        pieces.extend(seg.finish());
        if self.queued() + pieces.len() > MAX_QUEUED {
            return Err(Refused::QueueFull {
                queued: self.queued(),
            });
        }
        Ok(self.queue(pieces))
    }

    /// `push-fragment(text)`: a piece of a streamed answer; returns the pieces queued.
    pub fn push_fragment(&mut self, fragment: &str) -> usize {
        let pieces = self.segmenter.push(fragment);
        self.queue(pieces)
    }

    /// `end-fragments()`: the stream is over; what is left of it is queued.
    pub fn end_fragments(&mut self) -> usize {
        let pieces = self.segmenter.finish();
        self.queue(pieces)
    }

    /// Queues what fits under [`MAX_QUEUED`]; the rest is dropped and counted.
    fn queue(&mut self, pieces: Vec<String>) -> usize {
        let room = MAX_QUEUED.saturating_sub(self.queued());
        let n = pieces.len().min(room);
        self.dropped += (pieces.len() - n) as u64;
        self.pending
            .extend(pieces.into_iter().take(n).map(Pending::Text));
        n
    }

    /// Pieces of streamed text dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Audio to play as it is (S16 mono at the configured rate), queued behind what is
    /// already queued; `label` is the text its speech events carry. Empty audio is ignored.
    pub fn push_audio(&mut self, label: &str, samples: Vec<i16>) -> usize {
        if samples.is_empty() || self.queued() >= MAX_QUEUED {
            return 0;
        }
        self.pending.push_back(Pending::Audio {
            label: label.to_string(),
            samples,
        });
        1
    }

    /// Pieces of text queued and not yet playing (waiting, being synthesized, synthesized).
    pub fn queued(&self) -> usize {
        self.pending.len() + self.ready.len()
    }

    /// `flush()`: drops queued and in-flight speech now; the next chunk cuts the sentence
    /// playing. Returns how many queued pieces were dropped.
    pub fn flush(&mut self) -> usize {
        let dropped = self.queued();
        self.pending.clear();
        self.segmenter.clear();
        self.ready.clear();
        self.flush_pending = true;
        dropped
    }

    /// Whether [`Playout::next_job`] has a job to give.
    pub fn has_job(&self) -> bool {
        self.started && self.ready.len() < self.config.lookahead && !self.pending.is_empty()
    }

    /// The next piece to synthesize, if any and if the look-ahead allows. Queued audio on
    /// the way goes straight to the sentences ready to play.
    pub fn next_job(&mut self) -> Option<Job> {
        while self.has_job() {
            let id = self.next_id;
            self.next_id += 1;
            let mut sentence = Sentence {
                id,
                text: String::new(),
                samples: Vec::new(),
                words: Vec::new(),
                done: false,
                failure: None,
                dropped: false,
                audio: false,
            };
            match self.pending.pop_front()? {
                Pending::Audio { label, samples } => {
                    sentence.text = label;
                    sentence.samples = samples;
                    sentence.done = true;
                    sentence.audio = true;
                    self.ready.push_back(sentence);
                }
                Pending::Text(text) => {
                    sentence.text = text.clone();
                    self.ready.push_back(sentence);
                    return Some(Job { id, text });
                }
            }
        }
        None
    }

    fn sentence_mut(&mut self, id: u64) -> Option<&mut Sentence> {
        if let Some(p) = self.playing.as_mut()
            && p.sentence.id == id
        {
            return Some(&mut p.sentence);
        }
        self.ready.iter_mut().find(|s| s.id == id)
    }

    /// Whether job `id` is still wanted (not flushed, not stopped): the engine stops when not.
    pub fn is_wanted(&self, id: u64) -> bool {
        let playing =
            !self.flush_pending && self.playing.as_ref().is_some_and(|p| p.sentence.id == id);
        self.started && (playing || self.ready.iter().any(|s| s.id == id))
    }

    /// Audio of job `id` (S16 mono at the engine's rate), in order.
    pub fn audio(&mut self, id: u64, samples: &[i16]) {
        if let Some(s) = self.sentence_mut(id) {
            s.samples.extend_from_slice(samples);
        }
    }

    /// A word boundary of job `id`.
    pub fn word(&mut self, id: u64, word: WordBoundary) {
        if let Some(s) = self.sentence_mut(id) {
            s.words.push(word);
        }
    }

    /// Synthesis of job `id` is over: `Ok`, failed with a reason (skipped with a warning),
    /// or cancelled (`Err(None)`: dropped without a word).
    pub fn finished(&mut self, id: u64, result: Result<(), Option<String>>) {
        if let Some(s) = self.sentence_mut(id) {
            s.done = true;
            match result {
                Ok(()) => {}
                Err(Some(reason)) => s.failure = Some(reason),
                Err(None) => s.dropped = true,
            }
        }
    }

    /// Plays the next `n` samples (live: exactly `n`; not live: up to `n` of one sentence).
    pub fn next(&mut self, n: usize) -> Step {
        let mut events = Vec::new();
        if let Some((text, offset)) = self.pending_end.take() {
            events.push(PlayoutEvent::SpeechEnd {
                text,
                offset,
                interrupted: false,
            });
        }
        if std::mem::take(&mut self.flush_pending) {
            if let Some(p) = self.playing.take() {
                events.push(PlayoutEvent::SpeechEnd {
                    text: p.sentence.text,
                    offset: self.offset,
                    interrupted: true,
                });
            }
            events.push(PlayoutEvent::Interrupt);
        }
        let chunk = if self.config.live {
            self.next_live(n, &mut events)
        } else {
            self.next_offline(n, &mut events)
        };
        Step { chunk, events }
    }

    fn next_live(&mut self, n: usize, events: &mut Vec<PlayoutEvent>) -> Chunk {
        self.start_next(self.config.prebuffer, events);
        let silence = self.playing.is_none();
        // Still speaking between two sentences while the next one is being synthesized.
        let speaking = !silence || !self.pending.is_empty() || !self.ready.is_empty();
        // Underruns of a sentence still arriving and the tail after its end stay zero.
        let mut samples = vec![0i16; n];
        self.play(&mut samples, events);
        self.set_speaking(speaking, events);
        let offset = self.offset;
        self.offset += n as u64;
        Chunk::Audio {
            offset,
            samples,
            silence,
        }
    }

    fn next_offline(&mut self, n: usize, events: &mut Vec<PlayoutEvent>) -> Chunk {
        self.start_next(usize::MAX, events);
        if self.playing.is_none() {
            if !self.ready.is_empty() || !self.pending.is_empty() {
                return Chunk::Wait;
            }
            // Streamed text never ended with end-fragments: spoken all the same.
            let rest = self.segmenter.finish();
            if rest.is_empty() {
                self.set_speaking(false, events);
                return Chunk::Eos;
            }
            self.pending.extend(rest.into_iter().map(Pending::Text));
            return Chunk::Wait;
        }
        let mut samples = vec![0i16; n];
        let k = self.play(&mut samples, events);
        samples.truncate(k.max(1));
        self.set_speaking(true, events);
        let offset = self.offset;
        self.offset += samples.len() as u64;
        Chunk::Audio {
            offset,
            samples,
            silence: false,
        }
    }

    fn set_speaking(&mut self, speaking: bool, events: &mut Vec<PlayoutEvent>) {
        if speaking != self.speaking {
            self.speaking = speaking;
            events.push(PlayoutEvent::Speaking(speaking));
        }
    }

    /// Starts the next playable sentence, if none is playing. A sentence still being
    /// synthesized is playable once it has `need` samples.
    fn start_next(&mut self, need: usize, events: &mut Vec<PlayoutEvent>) {
        // Audio at the head of the queue needs no synthesis side to become ready.
        while self.started
            && self.ready.len() < self.config.lookahead
            && matches!(self.pending.front(), Some(Pending::Audio { .. }))
        {
            self.next_job();
        }
        while self.playing.is_none() {
            let Some(front) = self.ready.front() else {
                return;
            };
            if front.done && (front.failure.is_some() || front.dropped || front.samples.is_empty())
            {
                let s = self.ready.pop_front().expect("front exists");
                if let Some(reason) = s.failure {
                    events.push(PlayoutEvent::Skipped {
                        text: s.text,
                        reason,
                    });
                }
                continue;
            }
            if !front.done && front.samples.len() < need {
                return;
            }
            let sentence = self.ready.pop_front().expect("front exists");
            events.push(PlayoutEvent::SpeechStart {
                text: sentence.text.clone(),
                offset: self.offset,
            });
            self.playing = Some(Playing {
                sentence,
                pos: 0,
                start: self.offset,
                next_word: 0,
            });
        }
    }

    /// Copies up to `buf.len()` samples of the sentence playing into `buf`; returns how many.
    /// Ends the sentence when it is over (its end goes out with the next chunk).
    fn play(&mut self, buf: &mut [i16], events: &mut Vec<PlayoutEvent>) -> usize {
        let rate = self.config.rate as u128;
        let Some(p) = self.playing.as_mut() else {
            return 0;
        };
        let s = &p.sentence;
        let k = (s.samples.len() - p.pos).min(buf.len());
        buf[..k].copy_from_slice(&s.samples[p.pos..p.pos + k]);
        p.pos += k;
        let over = s.done && p.pos >= s.samples.len();
        // Words that start in what has been played so far (all of them once it is over).
        while let Some(w) = s.words.get(p.next_word) {
            let at = (w.offset_ns as u128 * rate / 1_000_000_000) as usize;
            if at >= p.pos && !over {
                break;
            }
            events.push(PlayoutEvent::Word {
                text: w.text.clone(),
                sentence_offset: p.start,
                offset_ns: w.offset_ns,
                duration_ns: w.duration_ns,
            });
            p.next_word += 1;
        }
        if over {
            let p = self.playing.take().expect("playing");
            self.pending_end = Some((p.sentence.text, p.start + p.pos as u64));
        }
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 1000;
    /// 20 ms at 1 kHz.
    const N: usize = 20;

    fn live() -> Playout {
        let mut p = Playout::new(Config::new(RATE, true));
        p.start(Config::new(RATE, true));
        p
    }

    fn offline() -> Playout {
        let mut p = Playout::new(Config::new(RATE, false));
        p.start(Config::new(RATE, false));
        p
    }

    /// Samples `from..from + len` of a ramp that never holds a zero.
    fn ramp(from: usize, len: usize) -> Vec<i16> {
        (from..from + len).map(|i| (i % 1000) as i16 + 1).collect()
    }

    /// Synthesizes the next job completely with `len` samples; returns it.
    fn synth(p: &mut Playout, len: usize) -> Job {
        let job = p.next_job().expect("a job");
        p.audio(job.id, &ramp(0, len));
        p.finished(job.id, Ok(()));
        job
    }

    fn audio(step: &Step) -> (u64, &[i16], bool) {
        match &step.chunk {
            Chunk::Audio {
                offset,
                samples,
                silence,
            } => (*offset, samples, *silence),
            other => panic!("expected audio, got {other:?}"),
        }
    }

    fn start(text: &str, offset: u64) -> PlayoutEvent {
        PlayoutEvent::SpeechStart {
            text: text.into(),
            offset,
        }
    }

    fn end(text: &str, offset: u64, interrupted: bool) -> PlayoutEvent {
        PlayoutEvent::SpeechEnd {
            text: text.into(),
            offset,
            interrupted,
        }
    }

    #[test]
    fn the_queue_is_bounded_and_refuses_clearly() {
        let mut p = live();
        for i in 0..MAX_QUEUED {
            assert_eq!(p.speak(&format!("Sentence number {i}.")), Ok(1));
        }
        assert_eq!(
            p.speak("One too many."),
            Err(Refused::QueueFull { queued: MAX_QUEUED })
        );
        // Streamed fragments past the bound are dropped and counted; uploads refused.
        assert_eq!(p.push_fragment("Streamed. And more. "), 0);
        assert_eq!(p.end_fragments(), 0);
        assert!(p.dropped() >= 1);
        assert_eq!(p.queued(), MAX_QUEUED);
        assert_eq!(p.push_audio("upload", vec![1; 10]), 0);
        // A flush makes room again.
        p.flush();
        assert_eq!(p.speak("Room again."), Ok(1));
    }

    #[test]
    fn pushed_audio_plays_in_queue_order_like_a_sentence_and_flush_drops_it() {
        let mut p = live();
        p.speak("First.").unwrap();
        assert_eq!(p.push_audio("an upload", ramp(0, N + 10)), 1);
        p.speak("Last.").unwrap();
        assert_eq!(p.queued(), 3);
        // The synthesis side only ever sees the texts; the upload takes a look-ahead slot.
        let first = synth(&mut p, N);
        assert_eq!(first.text, "First.");
        assert!(p.next_job().is_none());
        // First., then the upload (N + 10 samples over two buffers), then Last.
        let s1 = p.next(N);
        assert_eq!(
            s1.events[..2],
            [start("First.", 0), PlayoutEvent::Speaking(true)]
        );
        let s2 = p.next(N);
        assert!(
            s2.events.contains(&end("First.", N as u64, false)),
            "{:?}",
            s2.events
        );
        assert!(
            s2.events.contains(&start("an upload", N as u64)),
            "{:?}",
            s2.events
        );
        assert_eq!(audio(&s2).1, &ramp(0, N)[..]);
        let last = p.next_job().expect("the second text");
        assert_eq!(last.text, "Last.");
        let s3 = p.next(N);
        assert_eq!(&audio(&s3).1[..10], &ramp(N, 10)[..]);
        // Flush while the upload is queued behind speech: it is dropped with the rest.
        let mut q = live();
        q.speak("Talking.").unwrap();
        q.push_audio("dropped", ramp(0, N));
        synth(&mut q, 4 * N);
        q.next(N);
        assert_eq!(q.flush(), 1);
        let events: Vec<PlayoutEvent> = (0..4).flat_map(|_| q.next(N).events).collect();
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, PlayoutEvent::SpeechStart { text, .. } if text == "dropped")),
            "{events:?}"
        );
        // Empty audio is refused.
        assert_eq!(q.push_audio("nothing", Vec::new()), 0);
    }

    #[test]
    fn idle_live_output_is_silence_without_events() {
        let mut p = live();
        for i in 0..5 {
            let step = p.next(N);
            let (offset, samples, silence) = audio(&step);
            assert_eq!(offset, (i * N) as u64);
            assert_eq!(samples, &[0; N][..]);
            assert!(silence);
            assert!(step.events.is_empty(), "{:?}", step.events);
        }
        assert!(!p.speaking());
    }

    #[test]
    fn a_sentence_plays_from_start_to_end() {
        let mut p = live();
        assert_eq!(p.speak("Hello there world."), Ok(1));
        // Idle until synthesized, but already speaking: it is queued.
        let step = p.next(N);
        assert!(audio(&step).2);
        assert_eq!(step.events, vec![PlayoutEvent::Speaking(true)]);
        let job = synth(&mut p, 50);
        assert_eq!(job.text, "Hello there world.");
        let s1 = p.next(N);
        assert_eq!(s1.events, vec![start("Hello there world.", 20)]);
        assert_eq!(audio(&s1), (20, &ramp(0, 20)[..], false));
        let s2 = p.next(N);
        assert!(s2.events.is_empty());
        assert_eq!(audio(&s2).1, &ramp(20, 20)[..]);
        // The last 10 samples, then zeros; still not GAP: the sentence played in it.
        let s3 = p.next(N);
        let (_, samples, silence) = audio(&s3);
        assert_eq!(&samples[..10], &ramp(40, 10)[..]);
        assert_eq!(&samples[10..], &[0; 10][..]);
        assert!(!silence);
        assert!(s3.events.is_empty());
        // Its end (the sample after its last) goes out before the next chunk.
        let s4 = p.next(N);
        assert_eq!(
            s4.events,
            vec![
                end("Hello there world.", 70, false),
                PlayoutEvent::Speaking(false)
            ]
        );
        assert!(audio(&s4).2);
        assert!(!p.speaking());
    }

    #[test]
    fn two_sentences_back_to_back_and_speaking_stays_true_between_them() {
        let mut p = live();
        p.speak("The first sentence is here. The second one follows.")
            .unwrap();
        let a = synth(&mut p, 30);
        // Look-ahead: the second is handed out too, but not yet synthesized.
        let b = p.next_job().expect("second job");
        assert_eq!(a.text, "The first sentence is here.");
        assert_eq!(b.text, "The second one follows.");
        let s = p.next(N);
        assert_eq!(
            s.events,
            vec![start(&a.text, 0), PlayoutEvent::Speaking(true)]
        );
        let s = p.next(N); // samples 20..30 of a, then zeros
        assert!(s.events.is_empty());
        // a is over, b still synthesizing: silence, yet speaking ("playing or queued").
        let s = p.next(N);
        assert_eq!(s.events, vec![end(&a.text, 30, false)]);
        assert!(audio(&s).2);
        assert!(p.speaking());
        p.audio(b.id, &ramp(0, 40));
        p.finished(b.id, Ok(()));
        let s = p.next(N);
        assert_eq!(s.events, vec![start(&b.text, 60)]);
        assert_eq!(audio(&s), (60, &ramp(0, 20)[..], false));
        let s = p.next(N);
        assert!(s.events.is_empty());
        let s = p.next(N);
        assert_eq!(
            s.events,
            vec![end(&b.text, 100, false), PlayoutEvent::Speaking(false)]
        );
    }

    #[test]
    fn look_ahead_limits_the_jobs_handed_out() {
        let mut p = live();
        p.speak("One sentence here. Two sentences here. Three sentences here.")
            .unwrap();
        let a = p.next_job().unwrap();
        let _b = p.next_job().unwrap();
        assert!(!p.has_job());
        assert_eq!(p.next_job(), None, "two ahead at most");
        p.audio(a.id, &ramp(0, 10));
        p.finished(a.id, Ok(()));
        p.next(N); // a starts playing: room for one more
        assert!(p.has_job());
        assert_eq!(p.next_job().unwrap().text, "Three sentences here.");
        assert!(!p.has_job(), "nothing left");
    }

    #[test]
    fn flush_mid_sentence_cuts_at_the_next_chunk() {
        let mut p = live();
        p.speak("A long sentence that is cut. Never heard at all.")
            .unwrap();
        let a = synth(&mut p, 200);
        let b = synth(&mut p, 200);
        p.next(N);
        p.next(N);
        assert!(p.is_wanted(a.id) && p.is_wanted(b.id));
        assert_eq!(p.flush(), 1, "the second sentence was queued");
        assert!(!p.is_wanted(a.id) && !p.is_wanted(b.id));
        let s = p.next(N);
        assert_eq!(
            s.events,
            vec![
                end(&a.text, 40, true),
                PlayoutEvent::Interrupt,
                PlayoutEvent::Speaking(false)
            ]
        );
        assert_eq!(audio(&s), (40, &[0; N][..], true));
        for _ in 0..20 {
            let s = p.next(N);
            assert!(audio(&s).2);
            assert!(s.events.is_empty());
        }
        // Late audio of the flushed sentences goes nowhere.
        p.audio(b.id, &ramp(0, 10));
        p.finished(b.id, Ok(()));
        assert!(audio(&p.next(N)).2);
    }

    #[test]
    fn flush_while_idle_only_interrupts() {
        let mut p = live();
        p.next(N);
        assert_eq!(p.flush(), 0);
        let s = p.next(N);
        assert_eq!(s.events, vec![PlayoutEvent::Interrupt]);
        assert!(audio(&s).2);
        assert!(p.next(N).events.is_empty(), "once");
    }

    #[test]
    fn flush_drops_text_not_yet_synthesized_and_pending_fragments() {
        let mut p = live();
        p.push_fragment("Half a sentence without");
        p.speak("Queued and never synthesized.").unwrap();
        p.flush();
        p.next(N);
        assert_eq!(p.next_job(), None);
        assert_eq!(p.end_fragments(), 0, "the fragment was dropped too");
    }

    #[test]
    fn flush_right_after_a_sentence_ended_ends_it_normally() {
        let mut p = live();
        p.speak("Short one.").unwrap();
        synth(&mut p, 10);
        p.next(N);
        p.flush();
        let s = p.next(N);
        assert_eq!(
            s.events,
            vec![
                end("Short one.", 10, false),
                PlayoutEvent::Interrupt,
                PlayoutEvent::Speaking(false)
            ]
        );
    }

    #[test]
    fn fragments_are_cut_by_the_livetalking_rule() {
        let mut p = live();
        let mut queued = Vec::new();
        for tok in [
            "Hi", ",", " there", ".", " How", " are", " you", " today", "?", " Fine",
        ] {
            queued.push(p.push_fragment(tok));
        }
        // "Hi," and "Hi, there." are not over 10 characters: the first cut is at "?".
        assert_eq!(queued, vec![0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(p.end_fragments(), 1);
        let texts: Vec<String> = std::iter::from_fn(|| {
            let j = p.next_job()?;
            p.finished(j.id, Ok(()));
            p.next(N); // empty: skipped, room for the next
            Some(j.text)
        })
        .collect();
        assert_eq!(texts, vec!["Hi, there. How are you today?", "Fine"]);
    }

    #[test]
    fn nothing_to_speak_is_refused() {
        let mut p = live();
        assert_eq!(
            p.speak("  \u{2} ... "),
            Err(Refused::NothingToSpeak("...".to_string()))
        );
        assert_eq!(p.queued(), 0);
    }

    #[test]
    fn slow_synthesis_gives_silence_then_continues() {
        let mut p = live();
        p.speak("Streamed slowly by the engine.").unwrap();
        let job = p.next_job().unwrap();
        // Less than the prebuffer (500 samples): not started.
        p.audio(job.id, &ramp(0, 499));
        let s = p.next(N);
        assert!(audio(&s).2);
        assert!(
            !s.events
                .iter()
                .any(|e| matches!(e, PlayoutEvent::SpeechStart { .. }))
        );
        p.audio(job.id, &ramp(499, 1));
        let s = p.next(N);
        assert_eq!(s.events, vec![start(&job.text, 20)]);
        // Play the 500 samples: 25 chunks.
        let mut played = audio(&s).1.to_vec();
        for _ in 1..25 {
            played.extend_from_slice(audio(&p.next(N)).1);
        }
        assert_eq!(played, ramp(0, 500));
        // Synthesis is late: zeros, not GAP, no end.
        for _ in 0..3 {
            let s = p.next(N);
            assert_eq!(audio(&s).1, &[0; N][..]);
            assert!(!audio(&s).2);
            assert!(s.events.is_empty());
        }
        // It continues where it stopped.
        p.audio(job.id, &ramp(500, 30));
        p.finished(job.id, Ok(()));
        let s = p.next(N);
        assert_eq!(audio(&s).1, &ramp(500, 20)[..]);
        let s = p.next(N);
        assert_eq!(&audio(&s).1[..10], &ramp(520, 10)[..]);
        let s = p.next(N);
        // Started at 20, 530 samples played.
        assert_eq!(s.events[0], end(&job.text, 550, false));
    }

    #[test]
    fn failed_sentence_is_skipped_with_a_reason_and_cancelled_one_silently() {
        let mut p = live();
        p.speak("This one fails. This one is cancelled. This one plays.")
            .unwrap();
        let a = p.next_job().unwrap();
        let b = p.next_job().unwrap();
        p.finished(a.id, Err(Some("refused".into())));
        p.finished(b.id, Err(None));
        let s = p.next(N);
        assert_eq!(
            s.events,
            vec![
                PlayoutEvent::Skipped {
                    text: a.text.clone(),
                    reason: "refused".into()
                },
                PlayoutEvent::Speaking(true),
            ]
        );
        assert!(audio(&s).2);
        let c = synth(&mut p, 10);
        let s = p.next(N);
        assert_eq!(s.events, vec![start(&c.text, 20)]);
        assert_eq!(&audio(&s).1[..10], &ramp(0, 10)[..]);
    }

    #[test]
    fn word_events_come_with_the_chunk_they_start_in() {
        let mut p = live();
        p.speak("Hello brave new world.").unwrap();
        p.next(N); // idle chunk at 0..20
        let job = p.next_job().unwrap();
        let w = |text: &str, ms: u64| WordBoundary {
            text: text.into(),
            offset_ns: ms * 1_000_000,
            duration_ns: 5_000_000,
        };
        // At 1 kHz: samples 0, 19, 20, 45 (and one past the audio).
        for word in [
            w("Hello", 0),
            w("brave", 19),
            w("new", 20),
            w("world", 45),
            w("tail", 90),
        ] {
            p.word(job.id, word);
        }
        p.audio(job.id, &ramp(0, 50));
        p.finished(job.id, Ok(()));
        let word = |text: &str, ms: u64| PlayoutEvent::Word {
            text: text.into(),
            sentence_offset: 20,
            offset_ns: ms * 1_000_000,
            duration_ns: 5_000_000,
        };
        let s = p.next(N);
        assert_eq!(
            s.events,
            vec![start(&job.text, 20), word("Hello", 0), word("brave", 19),]
        );
        assert_eq!(p.next(N).events, vec![word("new", 20)]);
        // The last chunk of the sentence: its words, and those past its audio.
        assert_eq!(p.next(N).events, vec![word("world", 45), word("tail", 90)]);
        assert_eq!(
            p.next(N).events,
            vec![end(&job.text, 70, false), PlayoutEvent::Speaking(false)]
        );
    }

    #[test]
    fn offline_plays_sentences_back_to_back_then_eos() {
        let mut p = offline();
        p.speak("The first sentence is here. The second one follows.")
            .unwrap();
        // Nothing synthesized yet: wait (no silence offline).
        assert_eq!(p.next(N).chunk, Chunk::Wait);
        let a = synth(&mut p, 30);
        let s = p.next(N);
        assert_eq!(
            s.events,
            vec![start(&a.text, 0), PlayoutEvent::Speaking(true)]
        );
        assert_eq!(audio(&s), (0, &ramp(0, 20)[..], false));
        // The sentence's last samples only: no zeros offline.
        let s = p.next(N);
        assert_eq!(audio(&s), (20, &ramp(20, 10)[..], false));
        // The second is still being synthesized: wait (no silence offline).
        let b = p.next_job().unwrap();
        p.audio(b.id, &ramp(0, 25));
        let s = p.next(N);
        assert_eq!(s.chunk, Chunk::Wait);
        assert_eq!(s.events, vec![end(&a.text, 30, false)]);
        p.finished(b.id, Ok(()));
        let s = p.next(N);
        assert_eq!(s.events, vec![start(&b.text, 30)]);
        assert_eq!(audio(&s).0, 30);
        let s = p.next(N);
        assert_eq!(audio(&s), (50, &ramp(20, 5)[..], false));
        let s = p.next(N);
        assert_eq!(s.chunk, Chunk::Eos);
        assert_eq!(
            s.events,
            vec![end(&b.text, 55, false), PlayoutEvent::Speaking(false)]
        );
    }

    #[test]
    fn offline_speaks_unfinished_fragments_before_eos() {
        let mut p = offline();
        p.push_fragment("No end-fragments call");
        assert_eq!(p.next(N).chunk, Chunk::Wait);
        let a = synth(&mut p, 5);
        assert_eq!(a.text, "No end-fragments call");
        assert_eq!(audio(&p.next(N)).1, &ramp(0, 5)[..]);
        assert_eq!(p.next(N).chunk, Chunk::Eos);
    }

    #[test]
    fn offline_flush_interrupts_and_ends_when_nothing_is_left() {
        let mut p = offline();
        p.speak("Cut offline. Dropped offline.").unwrap();
        let a = synth(&mut p, 100);
        p.next(N);
        p.flush();
        assert!(!p.is_wanted(a.id));
        let s = p.next(N);
        assert_eq!(s.chunk, Chunk::Eos);
        assert_eq!(
            s.events,
            vec![
                end(&a.text, 20, true),
                PlayoutEvent::Interrupt,
                PlayoutEvent::Speaking(false)
            ]
        );
    }

    #[test]
    fn stop_requeues_what_did_not_play_and_start_restarts_offsets() {
        let mut p = live();
        p.speak("Played partly here. Queued behind it. And the third.")
            .unwrap();
        let a = synth(&mut p, 100);
        let b = p.next_job().unwrap();
        p.next(N);
        p.stop();
        assert!(!p.is_wanted(a.id) && !p.is_wanted(b.id));
        assert_eq!(p.next_job(), None, "stopped: no synthesis");
        p.start(Config::new(RATE, true));
        assert_eq!(p.next_job().unwrap().text, "Queued behind it.");
        assert_eq!(p.next_job().unwrap().text, "And the third.");
        assert_eq!(audio(&p.next(N)).0, 0);
    }
}
