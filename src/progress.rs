//! Progress bars on stderr (hidden with `--no-progress` or when stderr is not a terminal).

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Duration;

/// The bars of one run: an overall bar of units (days), and one bar per unit at work.
#[derive(Debug, Clone)]
pub struct Progress {
    multi: Option<MultiProgress>,
    overall: ProgressBar,
}

impl Progress {
    /// Bars for `total` units; nothing is drawn when `enabled` is false.
    pub fn new(enabled: bool, total: u64, what: &str) -> Progress {
        if !enabled {
            return Progress::hidden();
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(total));
        overall.set_style(
            ProgressStyle::with_template(
                "{prefix:>12} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        overall.set_prefix(what.to_string());
        overall.enable_steady_tick(Duration::from_millis(250));
        Progress {
            multi: Some(multi),
            overall,
        }
    }

    /// No bars at all.
    pub fn hidden() -> Progress {
        Progress {
            multi: None,
            overall: ProgressBar::hidden(),
        }
    }

    /// A bar for one unit of work (e.g. `HLSS30 2024-05-15`), counting items.
    pub fn unit(&self, label: &str) -> UnitBar {
        let Some(multi) = &self.multi else {
            return UnitBar(ProgressBar::hidden());
        };
        let bar = multi.add(ProgressBar::new(0));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>20} [{bar:30}] {pos}/{len} items {rate} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key(
                    "rate",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = w.write_str(&rate(state.per_sec()));
                    },
                )
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        UnitBar(bar)
    }

    /// One unit finished.
    pub fn unit_done(&self) {
        self.overall.inc(1);
    }

    /// Sets the overall message (e.g. counts of failures).
    pub fn message(&self, msg: String) {
        self.overall.set_message(msg);
    }

    /// Removes every bar.
    pub fn finish(&self) {
        self.overall.finish_and_clear();
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }
}

/// A rate of items for people: whole items per second (`1234/s`), one decimal below 10.
pub fn rate(per_sec: f64) -> String {
    if !per_sec.is_finite() || per_sec <= 0.0 {
        "0/s".to_string()
    } else if per_sec < 10.0 {
        format!("{per_sec:.1}/s")
    } else {
        format!("{per_sec:.0}/s")
    }
}

/// The bar of one unit of work.
#[derive(Debug, Clone)]
pub struct UnitBar(ProgressBar);

impl UnitBar {
    /// A bar that draws nothing.
    pub fn hidden() -> UnitBar {
        UnitBar(ProgressBar::hidden())
    }

    /// Sets the expected number of items.
    pub fn set_total(&self, n: u64) {
        self.0.set_length(n);
    }

    /// Adds done items.
    pub fn inc(&self, n: u64) {
        self.0.inc(n);
    }

    /// Sets the expected number of items and starts counting again from zero, with a
    /// message saying what is being counted now (e.g. `writing`).
    pub fn restart(&self, n: u64, msg: &str) {
        self.0.set_length(n);
        self.0.set_position(0);
        self.0.set_message(msg.to_string());
    }

    /// Removes the bar.
    pub fn done(&self) {
        self.0.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_shown_without_four_decimals() {
        assert_eq!(rate(14_706.318_4), "14706/s");
        assert_eq!(rate(10.0), "10/s");
        assert_eq!(rate(2.345_6), "2.3/s");
        assert_eq!(rate(0.0), "0/s");
        assert_eq!(rate(f64::NAN), "0/s");
    }
}
