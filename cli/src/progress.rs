//! A progress bar on a terminal, plain progress lines otherwise.

use std::io::IsTerminal;

pub struct Progress {
    quiet: bool,
    bar: Option<indicatif::ProgressBar>,
    what: String,
    total: u64,
    done: u64,
    last_pct: u64,
}

impl Progress {
    pub fn new(what: &str, total: u64, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template("{msg:>16} [{bar:40}] {pos}/{len} {eta}")
                    .unwrap()
                    .progress_chars("=> "),
            );
            b.set_message(what.to_string());
            b
        });
        Self {
            quiet,
            bar,
            what: what.into(),
            total,
            done: 0,
            last_pct: u64::MAX,
        }
    }

    pub fn inc(&mut self, n: u64) {
        self.done += n;
        if let Some(b) = &self.bar {
            b.inc(n);
        } else if !self.quiet && self.total > 0 {
            let pct = self.done * 100 / self.total / 10 * 10;
            if pct != self.last_pct {
                self.last_pct = pct;
                eprintln!("{}: {}% ({}/{})", self.what, pct, self.done, self.total);
            }
        }
    }

    pub fn done(&self) -> u64 {
        self.done
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
