//! Fixed-size timing histogram (1 µs bins) for per-hop processing times.

use std::time::Duration;

/// Histogram of durations with 1 µs resolution up to [`Histogram::RANGE_US`]; longer durations
/// land in an overflow bin but still count for [`Histogram::max`]. Memory is fixed (no growth
/// with run time).
#[derive(Clone)]
pub struct Histogram {
    bins: Vec<u32>,
    count: u64,
    sum_ns: u128,
    max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// Upper end of the 1 µs bins (longer durations are counted in the overflow bin).
    pub const RANGE_US: usize = 100_000;

    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            bins: vec![0; Self::RANGE_US + 1],
            count: 0,
            sum_ns: 0,
            max_ns: 0,
        }
    }

    /// Add one observation.
    pub fn record(&mut self, d: Duration) {
        let ns = d.as_nanos().min(u64::MAX as u128) as u64;
        let us = (ns / 1000) as usize;
        self.bins[us.min(Self::RANGE_US)] += 1;
        self.count += 1;
        self.sum_ns += ns as u128;
        self.max_ns = self.max_ns.max(ns);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of all observations.
    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.sum_ns.min(u64::MAX as u128) as u64)
    }

    /// Mean (zero when empty).
    pub fn mean(&self) -> Duration {
        if self.count == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos((self.sum_ns / self.count as u128) as u64)
        }
    }

    /// Longest observation.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max_ns)
    }

    /// The `q`-quantile (0..=1), to 1 µs (upper edge of its bin; the maximum for the overflow
    /// bin). Zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (us, &n) in self.bins.iter().enumerate() {
            seen += n as u64;
            if seen >= rank {
                if us == Self::RANGE_US {
                    return self.max();
                }
                return Duration::from_micros(us as u64 + 1).min(self.max());
            }
        }
        self.max()
    }

    /// Merge another histogram into this one.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.bins.iter_mut().zip(&other.bins) {
            *a += b;
        }
        self.count += other.count;
        self.sum_ns += other.sum_ns;
        self.max_ns = self.max_ns.max(other.max_ns);
    }
}

/// Means of a quantity over consecutive stretches of captured audio (e.g. the output queue's fill
/// per half second of input), so a report can show how latency moved during a run. Memory is
/// bounded: all storage is allocated up front, and when [`Timeline::MAX_BUCKETS`] are full,
/// neighbouring buckets merge and the bucket length doubles.
#[derive(Clone, Debug)]
pub struct Timeline {
    bucket_frames: u64,
    sums: Vec<(f64, u64)>,
}

impl Timeline {
    /// Most buckets kept (at 0.5 s each: 34 minutes before the first merge).
    pub const MAX_BUCKETS: usize = 4096;

    /// An empty timeline with buckets of `bucket_frames` input frames (at least 1).
    pub fn new(bucket_frames: u64) -> Self {
        Self {
            bucket_frames: bucket_frames.max(1),
            sums: Vec::with_capacity(Self::MAX_BUCKETS),
        }
    }

    /// Add `value` observed when `at_frame` input frames had been captured.
    pub fn record(&mut self, at_frame: u64, value: f64) {
        while at_frame / self.bucket_frames >= Self::MAX_BUCKETS as u64 {
            // In place: no allocation on the processing thread.
            let half = self.sums.len().div_ceil(2);
            for i in 0..half {
                let (a, b) = (self.sums[2 * i], self.sums.get(2 * i + 1).copied().unwrap_or((0.0, 0)));
                self.sums[i] = (a.0 + b.0, a.1 + b.1);
            }
            self.sums.truncate(half);
            self.bucket_frames *= 2;
        }
        let i = (at_frame / self.bucket_frames) as usize;
        if self.sums.len() <= i {
            self.sums.resize(i + 1, (0.0, 0));
        }
        self.sums[i].0 += value;
        self.sums[i].1 += 1;
    }

    /// Input frames per bucket.
    pub fn bucket_frames(&self) -> u64 {
        self.bucket_frames
    }

    /// Mean per bucket, from the first frame on (`None` where nothing was observed).
    pub fn means(&self) -> Vec<Option<f64>> {
        self.sums.iter().map(|&(s, n)| (n > 0).then(|| s / n as f64)).collect()
    }
}

/// Milliseconds of a duration, for reports.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_means_per_bucket_and_merges_when_full() {
        let mut t = Timeline::new(10);
        t.record(0, 1.0);
        t.record(9, 3.0);
        t.record(25, 5.0);
        assert_eq!(t.means(), vec![Some(2.0), None, Some(5.0)]);
        // Past the last bucket: pairs merge, the bucket doubles, storage stays bounded.
        t.record(10 * Timeline::MAX_BUCKETS as u64, 7.0);
        assert_eq!(t.bucket_frames(), 20);
        let m = t.means();
        assert_eq!(m.len(), Timeline::MAX_BUCKETS / 2 + 1);
        assert_eq!(&m[..2], &[Some(2.0), Some(5.0)]);
        assert_eq!(m[Timeline::MAX_BUCKETS / 2], Some(7.0));
        assert!(t.sums.capacity() <= Timeline::MAX_BUCKETS);
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile(0.5), Duration::ZERO);
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us) + Duration::from_nanos(500));
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.quantile(0.5), Duration::from_micros(51));
        assert_eq!(h.quantile(0.99), Duration::from_micros(100));
        assert_eq!(h.quantile(1.0), Duration::from_nanos(100_500));
        assert_eq!(h.max(), Duration::from_nanos(100_500));
        h.record(Duration::from_secs(1));
        assert_eq!(h.quantile(1.0), Duration::from_secs(1));
        assert!(h.mean() > Duration::from_millis(9));
    }
}
