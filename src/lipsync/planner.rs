//! The batch planner: which queued frames run now, which are skipped because they would be
//! late, and until when to wait for a fuller batch. Pure: the caller feeds in the time and
//! the queue; nothing here reads a clock or sleeps.
//!
//! Every time is a [`Duration`] on one clock (the musetalk element uses its pipeline clock:
//! clock time, i.e. time since the clock's epoch). A deadline is the clock time by which a
//! frame's output must be pushed.
//!
//! # Frames
//! The caller lists [`Frame`]s: each names its queue (one per element / session), its
//! deadline if one is known, and whether it is ready (its inputs are in, so it can run now).
//! Each queue's frames are listed in that queue's output order; queues may interleave. A
//! frame that is not ready is *awaited*: a frame the caller expects (a live queue whose next
//! frame has not arrived yet) or one whose inputs are not done. Output order within a queue
//! is kept: only a queue's leading ready frames (its *head*) can be taken or skipped, and a
//! frame is never taken before an earlier frame of its queue is taken or skipped.
//!
//! # Policy
//! Offline (`live == false`) every frame is made: the planner takes up to `max_batch` head
//! frames and, while the batch is not full and frames are awaited, waits for them
//! ([`Decision::Wait`] without a time: "until something arrives").
//!
//! Live, with the time known:
//! - a head frame is *late* when it cannot make its deadline even alone:
//!   `now + cost(1) > deadline` (with no cost measured yet: when its deadline has passed).
//!   Late frames are skipped (the element pushes them as GAP, timestamps unchanged);
//! - the others run in earliest-deadline-first order (per-queue order kept), as many as fit:
//!   the largest batch of `k <= max_batch` such that `now + cost(k)` is not after the
//!   earliest deadline among them;
//! - if all of them fit, the batch is not full and frames are awaited, the planner waits for
//!   the fuller batch `M = min(max_batch, ready + awaited)` but only until
//!   `earliest deadline of those M frames - cost(M)`: the latest start that still makes every
//!   deadline if the awaited frames arrive. Past that time it runs what is there. It waits
//!   only with a measured cost and a known deadline; otherwise it runs at once.
//! - late frames are reported at once (a [`Decision::Run`] with nothing to take if the rest
//!   should wait), so that downstream gets them without delay.
//!
//! Live without a known time (no clock yet) nothing is late and nothing waits.

use std::time::Duration;

/// Identifies the queue (element, session) a frame belongs to.
pub type QueueId = u64;

/// One queued frame, as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub queue: QueueId,
    /// Clock time by which its output must be pushed; `None`: unknown (offline, no clock,
    /// no segment yet).
    pub deadline: Option<Duration>,
    /// Its inputs are in: it can run now. `false`: awaited.
    pub ready: bool,
}

impl Frame {
    pub fn ready(queue: QueueId, deadline: Option<Duration>) -> Self {
        Self {
            queue,
            deadline,
            ready: true,
        }
    }

    pub fn awaited(queue: QueueId, deadline: Option<Duration>) -> Self {
        Self {
            queue,
            deadline,
            ready: false,
        }
    }
}

/// What to do now. Indices refer to the slice given to [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run `take` as one batch (in this order: earliest deadline first) and skip `late`
    /// (ascending). Together they are, per queue, a prefix of that queue's frames.
    Run { take: Vec<usize>, late: Vec<usize> },
    /// Nothing to do before `until` (clock time), or, with `None`, before a frame arrives.
    /// Plan again when a frame arrives or the time is reached.
    Wait { until: Option<Duration> },
    /// No frame is ready.
    Idle,
}

/// The cost of a batch of `n` frames: `fixed + per_frame * n`, learned from measured batch
/// times.
///
/// The model remembers each batch size it has measured: per size, an exponentially weighted
/// mean of its times (weight `w` for the newest measurement of that size). The line is
/// fitted by weighted least squares through these per-size means, each weighted by its
/// freshness, `(1 - w)` to the power of the measurements of other sizes since its own last
/// one: sizes measured lately lead, so the model follows a device that gets slower or
/// faster, but a size never counts for nothing. A live element whose frames keep running
/// alone for a while (the start of speech, a stall) measures batches of one only; had the
/// sizes measured earlier faded out of the fit (as they did when the model averaged over
/// batches rather than sizes), a batch of 4 would be priced as four batches of one. On a
/// GPU, whose batch costs little more than one frame, that belief keeps the batches small:
/// frames run alone, and are lost, until a larger batch happens to be measured again.
///
/// With one size measured the cost is taken as proportional, `t/n` per frame and no fixed
/// part (for larger batches this errs on the slow side: the musetalk element times two
/// sizes at start-up to avoid it). Both parts are kept non-negative.
/// Until the first measurement the cost is unknown ([`CostModel::estimate`] gives `None`).
#[derive(Debug, Clone)]
pub struct CostModel {
    weight: f64,
    samples: u64,
    /// Per measured batch size, ascending: (size, weighted mean time in ns, `samples` when
    /// last measured).
    sizes: Vec<(usize, f64, u64)>,
    /// `(fixed, per_frame)` in ns, fitted to `sizes` after each change.
    fit: Option<(f64, f64)>,
    /// When the last measurement was taken ([`CostModel::observe_at`], the caller's clock)
    /// and how long that batch took.
    measured: Option<(Duration, Duration)>,
}

impl Default for CostModel {
    fn default() -> Self {
        Self::new()
    }
}

impl CostModel {
    /// Weight of the newest measurement of a size.
    pub const DEFAULT_WEIGHT: f64 = 0.25;
    /// What [`CostModel::doubt`] keeps of the estimate.
    pub const DOUBT: f64 = 0.9;
    /// The least freshness a measured size keeps in the fit.
    const MIN_FRESHNESS: f64 = 1e-9;

    pub fn new() -> Self {
        Self::with_weight(Self::DEFAULT_WEIGHT)
    }

    /// `weight` (clamped to `[0.01, 1]`) is the share of the newest measurement.
    pub fn with_weight(weight: f64) -> Self {
        Self {
            weight: weight.clamp(0.01, 1.0),
            samples: 0,
            sizes: Vec::new(),
            fit: None,
            measured: None,
        }
    }

    /// Records that a batch of `frames` frames took `took`. Empty batches are ignored.
    pub fn observe(&mut self, frames: usize, took: Duration) {
        if frames == 0 {
            return;
        }
        let t = took.as_nanos() as f64;
        self.samples += 1;
        match self.sizes.binary_search_by_key(&frames, |s| s.0) {
            Ok(i) => {
                let s = &mut self.sizes[i];
                s.1 += self.weight * (t - s.1);
                s.2 = self.samples;
            }
            Err(i) => self.sizes.insert(i, (frames, t, self.samples)),
        }
        self.fit = self.fitted();
    }

    /// [`CostModel::observe`] for a batch that ended at `now` (on the clock the caller's
    /// deadlines are on): [`CostModel::doubt_skipped`] knows from it whether the estimate
    /// is being measured.
    pub fn observe_at(&mut self, frames: usize, took: Duration, now: Duration) {
        if frames == 0 {
            return;
        }
        self.observe(frames, took);
        self.measured = Some((now, took));
    }

    /// Batch sizes measured so far.
    pub fn sizes(&self) -> usize {
        self.sizes.len()
    }

    /// For `frames` frames skipped at `now` only because of the estimate (their deadline
    /// was still ahead): doubts the estimate once per frame ([`CostModel::doubt`]), unless
    /// it is being measured, that is, the last batch ended within twice its own time
    /// before `now` ([`CostModel::observe_at`]). A model that runs batch after batch is
    /// measured all the time: its skips are real overload, and doubting them would make
    /// every next batch planned too large, overrun and come late (in the batching
    /// service's simulation of 6 sessions on an H200-like cost, doubting every such skip
    /// brought 700 frames of 3000 on time, and 957 made too late; doubting only a stale
    /// estimate, 1500 and none). The estimate that nothing measures any more, the case
    /// doubt is for, is doubted after that time.
    pub fn doubt_skipped(&mut self, frames: usize, now: Duration) {
        let measured = self
            .measured
            .is_some_and(|(at, took)| now.saturating_sub(at) <= took * 2);
        if !measured {
            for _ in 0..frames {
                self.doubt();
            }
        }
    }

    /// Shrinks the estimate (both parts) by [`CostModel::DOUBT`]. Called for each frame
    /// skipped only because of the estimate (its deadline was still ahead): a skip is a
    /// decision the model never checks, so an estimate that is too high (a slow first run,
    /// a GPU's first batch of a new size, a passing stall) would otherwise skip every frame
    /// from then on and never be measured again. Shrinking it lets a frame run after a few
    /// skips; its measurement then puts the estimate right, up or down.
    pub fn doubt(&mut self) {
        for s in &mut self.sizes {
            s.1 *= Self::DOUBT;
        }
        self.fit = self.fitted();
    }

    /// How many measurements were taken.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// `(fixed, per_frame)`, or `None` before the first measurement.
    pub fn parts(&self) -> Option<(Duration, Duration)> {
        let (fixed, per) = self.fit?;
        Some((
            Duration::from_nanos(fixed.round() as u64),
            Duration::from_nanos(per.round() as u64),
        ))
    }

    /// The line through the measured sizes (see the type's documentation).
    fn fitted(&self) -> Option<(f64, f64)> {
        if let [(n, t, _)] = self.sizes[..] {
            return Some((0.0, t / n as f64));
        }
        if self.sizes.is_empty() {
            return None;
        }
        // Weighted by freshness; centred sums, so that a fit led by one fresh size stays
        // exact.
        let keep = 1.0 - self.weight;
        let fresh: Vec<(f64, f64, f64)> = self
            .sizes
            .iter()
            .map(|&(size, time, at)| {
                let age = (self.samples - at).min(i32::MAX as u64) as i32;
                (keep.powi(age).max(Self::MIN_FRESHNESS), size as f64, time)
            })
            .collect();
        let w: f64 = fresh.iter().map(|f| f.0).sum();
        let n = fresh.iter().map(|f| f.0 * f.1).sum::<f64>() / w;
        let t = fresh.iter().map(|f| f.0 * f.2).sum::<f64>() / w;
        let var: f64 = fresh.iter().map(|f| f.0 * (f.1 - n).powi(2)).sum();
        let cov: f64 = fresh.iter().map(|f| f.0 * (f.1 - n) * (f.2 - t)).sum();
        let per = cov / var;
        let fixed = t - per * n;
        Some(if per < 0.0 {
            (t, 0.0)
        } else if fixed < 0.0 {
            // The line through the origin that fits best.
            let nt: f64 = fresh.iter().map(|f| f.0 * f.1 * f.2).sum();
            let nn: f64 = fresh.iter().map(|f| f.0 * f.1 * f.1).sum();
            (0.0, nt / nn)
        } else {
            (fixed, per)
        })
    }

    /// The expected time of a batch of `frames` frames; `None` before the first measurement.
    pub fn estimate(&self, frames: usize) -> Option<Duration> {
        let (fixed, per) = self.fit?;
        Some(Duration::from_nanos(
            (fixed + per * frames as f64).round() as u64
        ))
    }
}

/// The clock time by which a frame must be pushed: `base_time + running_time + latency -
/// margin` (the pipeline latency is what the sink waits past a frame's running time; the
/// margin is what the elements after this one need; saturating at zero).
pub fn deadline(
    base_time: Duration,
    running_time: Duration,
    latency: Duration,
    margin: Duration,
) -> Duration {
    (base_time + running_time + latency).saturating_sub(margin)
}

/// Sort key: earliest deadline first, unknown deadlines last, then listing order.
fn key(frames: &[Frame], i: usize) -> (bool, Duration, usize) {
    match frames[i].deadline {
        Some(d) => (false, d, i),
        None => (true, Duration::ZERO, i),
    }
}

/// How many of the `late` frames of a decision taken at `now` were skipped only because of
/// the cost estimate: their deadline was still ahead. The caller doubts its cost model once
/// for each ([`CostModel::doubt`]).
pub fn skipped_on_estimate(now: Option<Duration>, frames: &[Frame], late: &[usize]) -> usize {
    let Some(now) = now else { return 0 };
    late.iter()
        .filter(|&&i| {
            frames
                .get(i)
                .and_then(|f| f.deadline)
                .is_some_and(|d| d >= now)
        })
        .count()
}

/// Merges per-queue lists (each in queue order) earliest deadline first, keeping each
/// queue's order.
fn merge_edf(frames: &[Frame], idx: &[usize]) -> Vec<usize> {
    let mut queues: Vec<(QueueId, Vec<usize>)> = Vec::new();
    for &i in idx {
        match queues.iter_mut().find(|(q, _)| *q == frames[i].queue) {
            Some((_, v)) => v.push(i),
            None => queues.push((frames[i].queue, vec![i])),
        }
    }
    let mut pos = vec![0usize; queues.len()];
    let mut out = Vec::with_capacity(idx.len());
    while out.len() < idx.len() {
        let (qi, _) = queues
            .iter()
            .enumerate()
            .filter(|(qi, (_, v))| pos[*qi] < v.len())
            .min_by_key(|(qi, (_, v))| key(frames, v[pos[*qi]]))
            .expect("frames left");
        out.push(queues[qi].1[pos[qi]]);
        pos[qi] += 1;
    }
    out
}

/// Keeps, per queue, only the frames of `chosen` that form a prefix of that queue's frames
/// (in listing order); returns `chosen` without the others.
fn queue_prefix(frames: &[Frame], chosen: &[usize]) -> Vec<usize> {
    let mut cut: Vec<QueueId> = Vec::new();
    let mut keep = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        if cut.contains(&f.queue) {
            continue;
        }
        if chosen.contains(&i) {
            keep.push(i);
        } else {
            cut.push(f.queue);
        }
    }
    keep
}

/// Decides what to do with `frames` at clock time `now` (`None`: unknown). `max_batch` (at
/// least 1) bounds a batch. See the module documentation for the policy.
pub fn plan(
    now: Option<Duration>,
    frames: &[Frame],
    cost: &CostModel,
    max_batch: usize,
    live: bool,
) -> Decision {
    let max_batch = max_batch.max(1);
    // Each queue's head (leading ready frames) is eligible; the rest are awaited.
    let mut blocked: Vec<QueueId> = Vec::new();
    let (mut eligible, mut awaited) = (Vec::new(), Vec::new());
    for (i, f) in frames.iter().enumerate() {
        if f.ready && !blocked.contains(&f.queue) {
            eligible.push(i);
        } else {
            if !blocked.contains(&f.queue) {
                blocked.push(f.queue);
            }
            awaited.push(i);
        }
    }
    if eligible.is_empty() {
        return Decision::Idle;
    }

    let now = match (live, now) {
        (true, Some(now)) => now,
        _ => {
            // Offline, or live without a clock: nothing is late.
            let order = merge_edf(frames, &eligible);
            let take: Vec<usize> = order.into_iter().take(max_batch).collect();
            if !live && take.len() < max_batch && !awaited.is_empty() {
                return Decision::Wait { until: None };
            }
            return Decision::Run {
                take,
                late: Vec::new(),
            };
        }
    };

    let alone = cost.estimate(1).unwrap_or(Duration::ZERO);
    let (late, fit): (Vec<usize>, Vec<usize>) = eligible
        .iter()
        .partition(|&&i| matches!(frames[i].deadline, Some(d) if now + alone > d));
    let order = merge_edf(frames, &fit);
    let earliest = |set: &[usize]| set.iter().filter_map(|&i| frames[i].deadline).min();
    let most = order.len().min(max_batch);
    let k = match cost.estimate(1) {
        None => most,
        Some(_) => (1..=most)
            .rev()
            .find(|&k| {
                let c = cost.estimate(k).unwrap_or_default();
                earliest(&order[..k]).is_none_or(|d| now + c <= d)
            })
            .unwrap_or(0),
    };
    let take: Vec<usize> = order[..k].to_vec();

    // Wait for a fuller batch while the earliest deadline allows.
    if k > 0 && k == order.len() && k < max_batch && !awaited.is_empty() {
        let mut more = awaited.clone();
        more.sort_by_key(|&i| key(frames, i));
        let m = max_batch.min(k + more.len());
        let mut members = take.clone();
        members.extend_from_slice(&more[..m - k]);
        let start_by = match (earliest(&members), cost.estimate(m)) {
            (Some(d), Some(c)) => d.checked_sub(c),
            _ => None,
        };
        if let Some(until) = start_by.filter(|t| *t > now) {
            let late_now = queue_prefix(frames, &late);
            if late_now.is_empty() {
                return Decision::Wait { until: Some(until) };
            }
            return Decision::Run {
                take: Vec::new(),
                late: late_now,
            };
        }
    }
    let mut chosen = take.clone();
    chosen.extend_from_slice(&late);
    let keep = queue_prefix(frames, &chosen);
    Decision::Run {
        take: take.into_iter().filter(|i| keep.contains(i)).collect(),
        late: late.into_iter().filter(|i| keep.contains(i)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// A cost model that has measured exactly `fixed + per * n`.
    fn cost(fixed: u64, per: u64) -> CostModel {
        let mut c = CostModel::new();
        for n in [1usize, 2, 3, 4, 1, 4] {
            c.observe(n, ms(fixed + per * n as u64));
        }
        c
    }

    fn one_queue(deadlines: &[Option<u64>]) -> Vec<Frame> {
        deadlines
            .iter()
            .map(|d| Frame::ready(0, d.map(ms)))
            .collect()
    }

    fn run(take: &[usize], late: &[usize]) -> Decision {
        Decision::Run {
            take: take.to_vec(),
            late: late.to_vec(),
        }
    }

    /// Plans until nothing is ready, removing what runs or is skipped; returns the batches
    /// (as the frames' original indices) and the skipped frames. `now` advances by the
    /// batch's cost after each batch.
    fn drain(
        mut frames: Vec<Frame>,
        mut now: Duration,
        cost: &CostModel,
        max: usize,
        live: bool,
    ) -> (Vec<Vec<usize>>, Vec<usize>) {
        let mut ids: Vec<usize> = (0..frames.len()).collect();
        let (mut batches, mut skipped) = (Vec::new(), Vec::new());
        loop {
            match plan(Some(now), &frames, cost, max, live) {
                Decision::Run { take, late } => {
                    assert!(!take.is_empty() || !late.is_empty(), "an empty run");
                    assert!(take.len() <= max);
                    if !take.is_empty() {
                        batches.push(take.iter().map(|&i| ids[i]).collect());
                        now += cost.estimate(take.len()).unwrap_or_default();
                    }
                    skipped.extend(late.iter().map(|&i| ids[i]));
                    let mut gone: Vec<usize> = take.into_iter().chain(late).collect();
                    gone.sort_unstable();
                    for i in gone.into_iter().rev() {
                        frames.remove(i);
                        ids.remove(i);
                    }
                }
                Decision::Idle => break,
                Decision::Wait { until } => panic!("unexpected wait until {until:?}"),
            }
        }
        (batches, skipped)
    }

    #[test]
    fn offline_takes_everything_in_batches() {
        // Deadlines long past and a slow model do not matter offline.
        let frames = one_queue(&[Some(0); 10]);
        let (batches, skipped) = drain(frames, ms(10_000), &cost(500, 500), 4, false);
        assert_eq!(
            batches,
            [vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]],
            "every frame, in order, in full batches"
        );
        assert!(skipped.is_empty());
        // A partial batch waits for the awaited frames, without a time limit...
        let mut frames = one_queue(&[None, None]);
        frames.push(Frame::awaited(0, None));
        assert_eq!(
            plan(Some(ms(5)), &frames, &CostModel::new(), 4, false),
            Decision::Wait { until: None }
        );
        // ... and runs once nothing more is awaited.
        frames.pop();
        assert_eq!(
            plan(None, &frames, &CostModel::new(), 4, false),
            run(&[0, 1], &[])
        );
    }

    #[test]
    fn live_skips_exactly_the_frames_that_cannot_make_their_deadline() {
        let c = cost(10, 5); // cost(1) = 15 ms
        // now = 100: 90 has passed; 114 needs 115; 115 makes it exactly; 200, 300 easily.
        let frames = one_queue(&[Some(90), Some(114), Some(115), Some(200), Some(300)]);
        // A batch of 3 (25 ms) or 2 (20 ms) would miss 115: frame 2 runs alone.
        assert_eq!(
            plan(Some(ms(100)), &frames, &c, 4, true),
            run(&[2], &[0, 1])
        );
        let (batches, skipped) = drain(frames, ms(100), &c, 4, true);
        assert_eq!(batches, [vec![2], vec![3, 4]]);
        assert_eq!(skipped, [0, 1]);

        // Behind real time: frames every 40 ms, each batch costs 10 + 45 n ms. Every frame
        // is either made in time or skipped, and a skipped frame could not have been made
        // alone at the time it was skipped.
        let c = cost(10, 45);
        let mut now = ms(0);
        let mut frames: Vec<Frame> = Vec::new();
        let mut ids: Vec<u64> = Vec::new();
        let (mut made, mut skipped) = (0, 0);
        for n in 0..200u64 {
            frames.push(Frame::ready(0, Some(ms(40 * n + 60))));
            ids.push(n);
            now = now.max(ms(40 * n));
            while let Decision::Run { take, late } = plan(Some(now), &frames, &c, 4, true) {
                for &i in &late {
                    let d = frames[i].deadline.unwrap();
                    assert!(now + c.estimate(1).unwrap() > d, "frame {} skipped", ids[i]);
                }
                if !take.is_empty() {
                    now += c.estimate(take.len()).unwrap();
                    for &i in &take {
                        assert!(now <= frames[i].deadline.unwrap(), "frame {} late", ids[i]);
                    }
                }
                made += take.len();
                skipped += late.len();
                let mut gone: Vec<usize> = take.into_iter().chain(late).collect();
                gone.sort_unstable();
                for i in gone.into_iter().rev() {
                    frames.remove(i);
                    ids.remove(i);
                }
            }
        }
        assert_eq!(made + skipped + frames.len(), 200);
        assert!(made > 0 && skipped > 0, "made {made}, skipped {skipped}");
    }

    #[test]
    fn live_waits_for_a_fuller_batch_only_while_the_earliest_deadline_allows() {
        let c = cost(10, 5); // cost(4) = 30 ms, cost(3) = 25 ms
        // One frame due at 100, three awaited behind it.
        let mut frames = one_queue(&[Some(100)]);
        frames.extend([140, 180, 220].map(|d| Frame::awaited(0, Some(ms(d)))));
        // The full batch of 4 must start by 100 - 30 = 70.
        assert_eq!(
            plan(Some(ms(0)), &frames, &c, 4, true),
            Decision::Wait {
                until: Some(ms(70))
            }
        );
        assert_eq!(
            plan(Some(ms(69)), &frames, &c, 4, true),
            Decision::Wait {
                until: Some(ms(70))
            }
        );
        // At 70 nothing more came: run what is there.
        assert_eq!(plan(Some(ms(70)), &frames, &c, 4, true), run(&[0], &[]));
        // Two awaited only: a batch of 3 starts by 75.
        frames.pop();
        assert_eq!(
            plan(Some(ms(0)), &frames, &c, 4, true),
            Decision::Wait {
                until: Some(ms(75))
            }
        );
        // An awaited frame of another queue due earlier bounds the wait.
        frames.push(Frame::awaited(1, Some(ms(50))));
        assert_eq!(
            plan(Some(ms(0)), &frames, &c, 4, true),
            Decision::Wait {
                until: Some(ms(20))
            }
        );
        // A full batch runs at once.
        let full = one_queue(&[Some(500); 4]);
        assert_eq!(
            plan(Some(ms(0)), &full, &c, 4, true),
            run(&[0, 1, 2, 3], &[])
        );
        // Late frames go out at once, before the wait for the rest.
        let mut frames = one_queue(&[Some(10), Some(100)]);
        frames.push(Frame::awaited(0, Some(ms(140))));
        assert_eq!(plan(Some(ms(20)), &frames, &c, 4, true), run(&[], &[0]));
        frames.remove(0);
        // (a batch of 2, 20 ms, must start by 100 - 20)
        assert_eq!(
            plan(Some(ms(20)), &frames, &c, 4, true),
            Decision::Wait {
                until: Some(ms(80))
            }
        );
        // Without a measured cost, or without deadlines, a live planner does not wait.
        let mut frames = one_queue(&[Some(100)]);
        frames.push(Frame::awaited(0, Some(ms(140))));
        assert_eq!(
            plan(Some(ms(0)), &frames, &CostModel::new(), 4, true),
            run(&[0], &[])
        );
        let mut frames = one_queue(&[None]);
        frames.push(Frame::awaited(0, None));
        assert_eq!(plan(Some(ms(0)), &frames, &c, 4, true), run(&[0], &[]));
    }

    /// One live queue at 25 fps with 140 ms of slack per frame, a model that really takes
    /// 8 ms, and a first measurement of 300 ms (a slow first run). Returns which frames ran.
    fn after_a_slow_first_run(doubting: bool) -> Vec<bool> {
        let mut c = CostModel::new();
        // (the slow run ended just before the first frame came)
        c.observe_at(1, ms(300), ms(0));
        (0..50u64)
            .map(|n| {
                let now = ms(40 * n);
                let frames = [Frame::ready(0, Some(now + ms(140)))];
                match plan(Some(now), &frames, &c, 1, true) {
                    Decision::Run { take, late } if take.is_empty() => {
                        if doubting {
                            c.doubt_skipped(skipped_on_estimate(Some(now), &frames, &late), now);
                        }
                        false
                    }
                    Decision::Run { .. } => {
                        c.observe_at(1, ms(8), now + ms(8));
                        true
                    }
                    other => panic!("frame {n}: {other:?}"),
                }
            })
            .collect()
    }

    #[test]
    fn a_slow_first_run_does_not_skip_every_frame_after_it() {
        // Without doubt the estimate is never measured again: every frame is skipped.
        assert!(after_a_slow_first_run(false).iter().all(|ran| !ran));
        // With it: for twice the slow run's time (600 ms, frames 0 to 15) the estimate
        // counts as measured and skips are not doubted; then 300 ms * 0.9^k falls under the
        // 140 ms of slack after 8 doubted skips; the frame that then runs is measured at
        // 8 ms, and every frame after it runs.
        let ran = after_a_slow_first_run(true);
        let first = ran.iter().position(|&r| r).expect("a frame ran");
        assert_eq!(first, 16 + 8, "{ran:?}");
        assert!(ran[first..].iter().all(|&r| r), "{ran:?}");
        // A frame whose deadline has passed is late whatever the estimate: no doubt.
        let frames = [Frame::ready(0, Some(ms(10))), Frame::ready(0, Some(ms(90)))];
        assert_eq!(skipped_on_estimate(Some(ms(50)), &frames, &[0, 1]), 1);
        assert_eq!(skipped_on_estimate(None, &frames, &[0, 1]), 0);
        let mut c = cost(0, 10);
        c.doubt();
        assert_eq!(c.estimate(2), Some(ms(18)));
    }

    #[test]
    fn skips_under_overload_do_not_doubt_a_measured_estimate() {
        // A model busy batch after batch: each batch of 4 takes 100 ms and ends as the
        // next begins; the skips decided between them (the frames could not make it) leave
        // the estimate as measured.
        let mut c = CostModel::new();
        for k in 1..=10u64 {
            c.observe_at(4, ms(100), ms(100 * k));
            c.doubt_skipped(3, ms(100 * k + 60));
        }
        assert_eq!(c.estimate(4), Some(ms(100)));
        // Nothing measured for more than twice the last batch's time: doubted, per frame.
        c.doubt_skipped(2, ms(1000 + 201));
        assert_eq!(c.estimate(4), Some(ms(81)));
        // Without a time (observe), nothing counts as measured.
        let mut c = CostModel::new();
        c.observe(4, ms(100));
        c.doubt_skipped(1, ms(0));
        assert_eq!(c.estimate(4), Some(ms(90)));
    }

    #[test]
    fn cost_model_converges_to_measured_costs() {
        // Batches of 1..=5 frames costing 20 ms + 10 ms per frame, with +-1 ms jitter.
        let mut c = CostModel::new();
        assert_eq!(c.estimate(1), None);
        for k in 0..60u64 {
            let n = 1 + (k % 5) as usize;
            let jitter = [0i64, 1, -1, 1, 0, -1][(k % 6) as usize];
            let t = 20_000 + 10_000 * n as i64 + jitter * 1000;
            c.observe(n, Duration::from_micros(t as u64));
        }
        let (fixed, per) = c.parts().unwrap();
        assert!(
            (fixed.as_secs_f64() - 0.020).abs() < 0.002,
            "fixed {fixed:?}"
        );
        assert!((per.as_secs_f64() - 0.010).abs() < 0.0005, "per {per:?}");
        for n in [1usize, 4, 8] {
            let e = c.estimate(n).unwrap().as_secs_f64();
            let want = 0.020 + 0.010 * n as f64;
            assert!((e - want).abs() < 0.03 * want, "{n} frames: {e} vs {want}");
        }
        // The device becomes twice as slow: the model follows, size by size (each size's
        // mean keeps a quarter of the old time after 5 batches of it, 0.3 % after 20); the
        // size no longer run (5) fades from the fit.
        for k in 0..80u64 {
            let n = 1 + (k % 4) as usize;
            c.observe(n, ms(40 + 20 * n as u64));
        }
        let e = c.estimate(4).unwrap().as_secs_f64();
        assert!((e - 0.120).abs() < 0.0012, "after the change: {e}");
        // Exact measurements give the exact line.
        assert_eq!(cost(20, 10).parts(), Some((ms(20), ms(10))));
        // One batch size only: proportional.
        let mut c = CostModel::new();
        for _ in 0..5 {
            c.observe(4, ms(60));
        }
        assert_eq!(c.estimate(4), Some(ms(60)));
        assert_eq!(c.estimate(2), Some(ms(30)));
        assert_eq!(c.parts(), Some((ms(0), ms(15))));
        // Empty batches teach nothing.
        let mut c = CostModel::new();
        c.observe(0, ms(5));
        assert_eq!(c.samples(), 0);
        assert_eq!(c.estimate(1), None);
    }

    #[test]
    fn a_batch_size_measured_once_is_not_forgotten() {
        // A GPU-like model: 50 ms a batch plus 8 ms a frame. Timed at start-up with batches
        // of 1 and 4; then a live element runs batches of one only, for a while.
        let mut c = CostModel::new();
        c.observe(1, ms(58));
        c.observe(4, ms(82));
        for _ in 0..200 {
            c.observe(1, ms(58));
        }
        // A batch of 4 is still priced as measured, not as four batches of one (232 ms):
        // the planner can still choose it.
        assert_eq!(c.estimate(4), Some(ms(82)));
        assert_eq!(c.parts(), Some((ms(50), ms(8))));
        assert_eq!(c.sizes(), 2);
        // Sizes measured lately lead the fit: 1 and 2 fresh, 8 long ago (and since slower).
        let mut c = CostModel::new();
        c.observe(8, ms(500));
        for _ in 0..100 {
            c.observe(1, ms(58));
            c.observe(2, ms(66));
        }
        let e = c.estimate(8).unwrap().as_secs_f64();
        assert!((e - 0.114).abs() < 0.001, "{e}");
        // Doubt shrinks every size.
        let mut c = CostModel::new();
        c.observe(1, ms(50));
        c.observe(3, ms(70));
        c.doubt();
        assert_eq!(c.estimate(1), Some(ms(45)));
        assert_eq!(c.estimate(3), Some(ms(63)));
    }

    /// One live queue at 25 fps, as the musetalk element plans it (batch-size 4, awaited
    /// frames listed up to a full batch, latency 4 frames plus 1.25 times a batch of 4,
    /// deadlines half a frame before), on a model that takes `fixed + per * k` ms for `k`
    /// frames, for 500 frames; the cost model starts as `cost`. Returns the frames made on
    /// time and the mean batch.
    fn one_live_queue(mut cost: CostModel, fixed: u64, per: u64) -> (usize, f64) {
        let model = |k: usize| ms(fixed + per * k as u64);
        let step = ms(40);
        let latency = step * 4 + model(4) * 5 / 4;
        let due = |n: u64| step * n as u32 + latency - step / 2;
        let (mut next, mut queue) = (0u64, Vec::<u64>::new());
        let (mut on_time, mut batches, mut made) = (0, 0, 0);
        let mut now = ms(0);
        while next < 500 || !queue.is_empty() {
            while next < 500 && step * next as u32 <= now {
                queue.push(next);
                next += 1;
            }
            let mut frames: Vec<Frame> = queue
                .iter()
                .map(|&n| Frame::ready(0, Some(due(n))))
                .collect();
            if queue.len() < 4 && next < 500 {
                let last = queue.last().map_or(next, |n| n + 1);
                frames.extend(
                    (0..(4 - queue.len()) as u64).map(|k| Frame::awaited(0, Some(due(last + k)))),
                );
            }
            let mut wake = None;
            match plan(Some(now), &frames, &cost, 4, true) {
                Decision::Run { take, late } => {
                    cost.doubt_skipped(skipped_on_estimate(Some(now), &frames, &late), now);
                    let gone = take.len() + late.len();
                    let ran: Vec<u64> = take.iter().map(|&i| queue[i]).collect();
                    queue.drain(..gone);
                    if !ran.is_empty() {
                        now += model(ran.len());
                        cost.observe_at(ran.len(), model(ran.len()), now);
                        on_time += ran.iter().filter(|&&n| now <= due(n)).count();
                        batches += 1;
                        made += ran.len();
                    }
                    continue;
                }
                Decision::Wait { until } => wake = until,
                Decision::Idle => {}
            }
            let arrival = step * next as u32;
            now = wake
                .map_or(arrival, |w| w.min(arrival))
                .max(now + Duration::from_micros(1));
        }
        (on_time, made as f64 / batches.max(1) as f64)
    }

    #[test]
    fn a_gpu_like_cost_runs_a_live_queue_in_batches() {
        // 57 ms a batch plus 8 ms a frame: a frame alone takes longer than a frame lasts,
        // four in a batch take 89 ms. Timed at start-up with batches of 1 and 4 (as the
        // element does at READY), every frame is made on time, in batches of 4.
        let mut timed = CostModel::new();
        timed.observe(1, ms(65));
        timed.observe(4, ms(89));
        let (on_time, batch) = one_live_queue(timed, 57, 8);
        assert!(
            on_time >= 495 && batch > 3.5,
            "{on_time} on time, batches of {batch}"
        );
        // Started from a batch of one alone (cost taken as proportional: a batch of 4 looks
        // like 260 ms, more than the slack) it runs frames alone until two wait together;
        // their batch measures a second size, and the line is right from then on.
        let mut one = CostModel::new();
        one.observe(1, ms(65));
        let (on_time, batch) = one_live_queue(one, 57, 8);
        assert!(
            on_time >= 490 && batch > 3.5,
            "{on_time} on time, batches of {batch}"
        );
    }

    #[test]
    fn cost_model_keeps_both_parts_non_negative() {
        // Larger batches measured cheaper (noise): no negative per-frame cost.
        let mut c = CostModel::new();
        c.observe(1, ms(30));
        c.observe(4, ms(20));
        let (_, per) = c.parts().unwrap();
        assert_eq!(per, Duration::ZERO);
        assert!(c.estimate(8).unwrap() > Duration::ZERO);
        // Cost growing faster than proportional: no negative fixed part.
        let mut c = CostModel::new();
        c.observe(1, ms(1));
        c.observe(4, ms(40));
        let (fixed, per) = c.parts().unwrap();
        assert_eq!(fixed, Duration::ZERO);
        assert!(per > ms(5));
    }

    #[test]
    fn edge_cases() {
        let c = cost(10, 5);
        // Empty queue; only awaited frames.
        assert_eq!(plan(Some(ms(0)), &[], &c, 4, true), Decision::Idle);
        assert_eq!(plan(None, &[], &c, 4, false), Decision::Idle);
        let awaited = [Frame::awaited(0, Some(ms(100)))];
        assert_eq!(plan(Some(ms(0)), &awaited, &c, 4, true), Decision::Idle);
        // max_batch 1 (and 0, taken as 1): one frame at a time, never waiting.
        let mut frames = one_queue(&[Some(100), Some(140)]);
        frames.push(Frame::awaited(0, Some(ms(180))));
        assert_eq!(plan(Some(ms(0)), &frames, &c, 1, true), run(&[0], &[]));
        assert_eq!(plan(Some(ms(0)), &frames, &c, 0, true), run(&[0], &[]));
        assert_eq!(plan(None, &frames, &c, 1, false), run(&[0], &[]));
        // Every deadline already passed: all skipped, nothing run.
        let frames = one_queue(&[Some(1), Some(2), Some(3)]);
        assert_eq!(
            plan(Some(ms(1000)), &frames, &c, 2, true),
            run(&[], &[0, 1, 2])
        );
        // No deadline known (no latency, no segment yet): nothing is late, nothing waits.
        let mut frames = one_queue(&[None, None]);
        frames.push(Frame::awaited(0, None));
        assert_eq!(
            plan(Some(ms(1000)), &frames, &c, 4, true),
            run(&[0, 1], &[])
        );
        // Live without a clock: runs what is there.
        assert_eq!(plan(None, &frames, &c, 4, true), run(&[0, 1], &[]));
        // No cost measured yet: late only once the deadline has passed.
        let frames = one_queue(&[Some(99), Some(100), Some(101)]);
        assert_eq!(
            plan(Some(ms(100)), &frames, &CostModel::new(), 4, true),
            run(&[1, 2], &[0])
        );
    }

    #[test]
    fn queues_keep_their_order_and_batch_earliest_deadline_first() {
        let c = cost(0, 1);
        // Two queues interleaved: earliest deadlines first.
        let frames = [
            Frame::ready(7, Some(ms(100))),
            Frame::ready(9, Some(ms(120))),
            Frame::ready(7, Some(ms(140))),
            Frame::ready(9, Some(ms(160))),
            Frame::ready(7, Some(ms(180))),
        ];
        assert_eq!(
            plan(Some(ms(0)), &frames, &c, 3, true),
            run(&[0, 1, 2], &[])
        );
        let frames = [
            Frame::ready(9, Some(ms(120))),
            Frame::ready(7, Some(ms(100))),
            Frame::ready(9, Some(ms(160))),
            Frame::ready(7, Some(ms(140))),
        ];
        assert_eq!(
            plan(Some(ms(0)), &frames, &c, 3, true),
            run(&[1, 0, 3], &[])
        );
        // A queue's later frame never overtakes an earlier one, whatever its deadline.
        let frames = one_queue(&[Some(300), Some(100)]);
        assert_eq!(plan(Some(ms(0)), &frames, &c, 1, true), run(&[0], &[]));
        // An awaited frame holds back the frames behind it in its queue only.
        let frames = [
            Frame::ready(1, Some(ms(100))),
            Frame::awaited(1, Some(ms(140))),
            Frame::ready(1, Some(ms(180))),
            Frame::ready(2, Some(ms(200))),
        ];
        assert_eq!(plan(None, &frames, &c, 4, true), run(&[0, 3], &[]));
        // A late frame behind one that is neither run nor skipped waits its turn.
        let frames = one_queue(&[Some(300), Some(5), Some(400)]);
        assert_eq!(plan(Some(ms(10)), &frames, &c, 1, true), run(&[0], &[1]));
        let frames = [
            Frame::ready(1, Some(ms(300))),
            Frame::ready(1, Some(ms(5))),
            Frame::ready(2, Some(ms(50))),
        ];
        assert_eq!(plan(Some(ms(10)), &frames, &c, 1, true), run(&[2], &[]));
    }

    #[test]
    fn one_queue_runs_and_skips_a_prefix() {
        // Many random single-queue situations (deadlines non-decreasing, as one element's
        // frames are): what runs and what is skipped is always a prefix of the queue, late
        // frames first, and never empty while a frame is ready.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for _ in 0..2000 {
            let c = cost(rnd(30), rnd(20));
            let now = ms(rnd(500));
            let mut d = rnd(400);
            let ready = 1 + rnd(8) as usize;
            let mut frames = Vec::new();
            for _ in 0..ready {
                d += rnd(60);
                frames.push(Frame::ready(0, Some(ms(d))));
            }
            for _ in 0..rnd(4) {
                d += 40;
                frames.push(Frame::awaited(0, Some(ms(d))));
            }
            let max = 1 + rnd(6) as usize;
            match plan(Some(now), &frames, &c, max, true) {
                Decision::Run { take, late } => {
                    assert!(!take.is_empty() || !late.is_empty());
                    let all: Vec<usize> = late.iter().chain(&take).copied().collect();
                    assert_eq!(all, (0..all.len()).collect::<Vec<_>>(), "{take:?} {late:?}");
                    assert!(take.len() <= max);
                }
                Decision::Wait { until } => {
                    let until = until.expect("live waits have a time");
                    assert!(until > now);
                    let d0 = frames[0].deadline.unwrap();
                    assert!(now + c.estimate(1).unwrap() <= d0, "a late frame waits");
                }
                Decision::Idle => panic!("frames were ready"),
            }
        }
    }

    #[test]
    fn deadline_adds_latency_and_takes_the_margin() {
        assert_eq!(deadline(ms(1000), ms(80), ms(180), ms(20)), ms(1240));
        assert_eq!(deadline(ms(0), ms(0), ms(0), ms(20)), ms(0));
    }
}
