//! The synthesis thread's life: joined on stop, even when the engine takes a while to notice
//! that its job was cancelled. A test subclass of the base with an engine that holds on.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use super::{TtsBaseSrc, TtsBaseSrcExt, TtsBaseSrcImpl};
use crate::tts::{Engine, SynthError, SynthSink};

/// Delivers nothing until cancelled, then holds on for `linger` (an inference run that
/// cannot be cut) before it returns.
#[derive(Default)]
pub struct StuckEngine {
    entered: (Mutex<usize>, Condvar),
    returned: AtomicUsize,
    linger: Duration,
}

impl StuckEngine {
    fn wait_entered(&self, n: usize) {
        let (lock, cond) = &self.entered;
        let entered = lock.lock().unwrap();
        let (entered, _) = cond
            .wait_timeout_while(entered, Duration::from_secs(30), |e| *e < n)
            .unwrap();
        assert_eq!(*entered, n, "the synthesis thread never got the text");
    }
}

impl Engine for StuckEngine {
    fn rate(&self) -> u32 {
        16_000
    }

    fn synthesize(&self, _text: &str, sink: &mut dyn SynthSink) -> Result<(), SynthError> {
        {
            let (lock, cond) = &self.entered;
            *lock.lock().unwrap() += 1;
            cond.notify_all();
        }
        while !sink.cancelled() {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(self.linger);
        self.returned.fetch_add(1, Ordering::SeqCst);
        Err(SynthError::Cancelled)
    }
}

mod imp {
    use super::*;

    #[derive(Default)]
    pub struct StuckSrc {
        pub engine: Mutex<Option<Arc<StuckEngine>>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for StuckSrc {
        const NAME: &'static str = "GstTtsBaseTestStuckSrc";
        type Type = super::StuckSrc;
        type ParentType = TtsBaseSrc;
    }

    impl ObjectImpl for StuckSrc {}
    impl GstObjectImpl for StuckSrc {}
    impl ElementImpl for StuckSrc {}

    impl BaseSrcImpl for StuckSrc {
        fn start(&self) -> Result<(), gst::ErrorMessage> {
            let engine = self.engine.lock().unwrap().clone().expect("test engine");
            self.obj().set_engine(engine);
            self.parent_start()
        }
    }

    impl PushSrcImpl for StuckSrc {}
    impl TtsBaseSrcImpl for StuckSrc {}
}

glib::wrapper! {
    pub struct StuckSrc(ObjectSubclass<imp::StuckSrc>)
        @extends TtsBaseSrc, gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}

fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

#[test]
fn stop_joins_the_synthesis_thread_after_the_engine_returns() {
    gst::init().unwrap();
    let engine = Arc::new(StuckEngine {
        linger: Duration::from_millis(300),
        ..Default::default()
    });
    let src: StuckSrc = glib::Object::builder().property("name", "stuck").build();
    *src.imp().engine.lock().unwrap() = Some(engine.clone());
    let sink = gst::ElementFactory::make("fakesink").build().unwrap();
    let pipeline = gst::Pipeline::new();
    pipeline.add_many([src.upcast_ref(), &sink]).unwrap();
    src.link(&sink).unwrap();
    for cycle in 1..=3 {
        pipeline.set_state(gst::State::Playing).unwrap();
        src.emit_by_name::<bool>("speak", &[&"Something to say."]);
        engine.wait_entered(cycle);
        assert_eq!(engine.returned.load(Ordering::SeqCst), cycle - 1);
        pipeline.set_state(gst::State::Null).unwrap();
        // Joined: the engine has returned and its thread is gone when stop returns.
        assert_eq!(
            engine.returned.load(Ordering::SeqCst),
            cycle,
            "cycle {cycle}"
        );
        // (The system drops a joined thread's entry a moment after the join returns.)
        let mut left = threads_named("tts:stuck");
        for _ in 0..50 {
            if left == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
            left = threads_named("tts:stuck");
        }
        assert_eq!(left, 0, "cycle {cycle}");
        // Stopped mid-sentence: the sentence was playing or queued; flush drops it.
        src.emit_by_name::<()>("flush", &[]);
    }
}
