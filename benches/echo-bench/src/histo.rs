//! Latency recording: an HDR histogram per worker thread, merged at the end.
//!
//! Gil Tene's HdrHistogram records every value with a fixed relative precision (here three
//! significant digits) in constant memory and constant time, so the generator can record every
//! single message instead of a sample, and the tail (p99.9, max) is the real tail. Each worker
//! records into its own histogram with no sharing; the run merges them once it is over.
//!
//! Values are nanoseconds. Percentiles are reported in microseconds, the unit in which loopback
//! echo latencies are easy to read (tens of microseconds at rest, milliseconds under overload).

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency the histogram can hold: longer ones are clamped to it (and a message that
/// takes that long is reported as stalled anyway).
const MAX_NANOS: u64 = 3_600 * 1_000_000_000;

/// Three significant digits: a 25.3 µs median is told apart from 25.4 µs.
const SIGNIFICANT_DIGITS: u8 = 3;

/// A latency histogram in nanoseconds.
#[derive(Clone, Debug)]
pub struct Latency {
    histogram: Histogram<u64>,
}

/// The percentiles a report shows, in microseconds (JSON: `latency_us: {p50, p99...}`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Number of messages recorded.
    pub count: u64,
    /// Mean latency.
    #[serde(rename = "mean")]
    pub mean_us: f64,
    /// Median.
    #[serde(rename = "p50")]
    pub p50_us: f64,
    /// 90th percentile.
    #[serde(rename = "p90")]
    pub p90_us: f64,
    /// 99th percentile: one message in a hundred waits longer.
    #[serde(rename = "p99")]
    pub p99_us: f64,
    /// 99.9th percentile.
    #[serde(rename = "p99_9")]
    pub p999_us: f64,
    /// The slowest message.
    #[serde(rename = "max")]
    pub max_us: f64,
}

impl Latency {
    /// An empty histogram covering 1 ns to one hour.
    pub fn new() -> Latency {
        let histogram = Histogram::new_with_bounds(1, MAX_NANOS, SIGNIFICANT_DIGITS)
            .expect("constant histogram bounds are valid");
        Latency { histogram }
    }

    /// Records one message's latency (clamped to the histogram's range).
    pub fn record(&mut self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(MAX_NANOS);
        self.histogram.saturating_record(nanos.clamp(1, MAX_NANOS));
    }

    /// Adds every value of `other` to this histogram.
    pub fn merge(&mut self, other: &Latency) {
        // Both histograms have the same bounds, so `add` cannot fail.
        self.histogram
            .add(&other.histogram)
            .expect("histograms share their bounds");
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The summary, or `None` when nothing was recorded (percentiles of nothing mean nothing).
    pub fn summary(&self) -> Option<LatencySummary> {
        if self.histogram.is_empty() {
            return None;
        }
        let us = |nanos: u64| nanos as f64 / 1_000.0;
        let h = &self.histogram;
        Some(LatencySummary {
            count: h.len(),
            mean_us: h.mean() / 1_000.0,
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        })
    }
}

impl Default for Latency {
    fn default() -> Latency {
        Latency::new()
    }
}

/// The median of `values` (the mean of the two middle ones for an even count), or `None` if empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// The smallest and largest of `values`, or `None` if empty.
pub fn min_max(values: &[f64]) -> Option<(f64, f64)> {
    let finite = values.iter().copied().filter(|v| v.is_finite());
    finite.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_out_in_microseconds() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        for us in 1..=99 {
            a.record(Duration::from_micros(us));
        }
        b.record(Duration::from_millis(5));
        a.merge(&b);
        let s = a.summary().unwrap();
        assert_eq!(s.count, 100);
        assert!((s.p50_us - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.max_us - 5_000.0).abs() < 5.0, "{s:?}");
        assert!(Latency::new().summary().is_none());
    }

    #[test]
    fn median_and_range() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(min_max(&[3.0, 1.0, 2.0]), Some((1.0, 3.0)));
    }
}
