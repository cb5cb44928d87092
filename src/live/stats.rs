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

/// Milliseconds of a duration, for reports.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

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
