//! What a tool may do at once and how often: the settings the [`crate::Scheduler`] enforces, and
//! the retry policy's backoff.

use std::time::Duration;

/// A token bucket: `per_second` tokens refill continuously up to `burst`; each call takes one.
///
/// ```
/// use taskwire_engine::Rate;
/// let five_per_second = Rate::per_second(5.0).burst(5);
/// assert_eq!(five_per_second.burst, 5);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Sustained calls per second.
    pub per_second: f64,
    /// Calls allowed at once after a quiet period (at least 1).
    pub burst: u32,
}

impl Rate {
    /// `n` calls per second, burst 1.
    pub fn per_second(n: f64) -> Self {
        Self { per_second: n.max(f64::MIN_POSITIVE), burst: 1 }
    }

    /// Sets the burst.
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst.max(1);
        self
    }

    /// How it reads in a tool description: `5/s (burst 5)`.
    pub fn describe(&self) -> String {
        let n = self.per_second;
        let rate = if n >= 1.0 || n == 0.0 {
            format!("{}/s", trim(n))
        } else if n * 60.0 >= 1.0 {
            format!("{}/min", trim(n * 60.0))
        } else {
            format!("{}/h", trim(n * 3600.0))
        };
        format!("{rate} (burst {})", self.burst)
    }
}

fn trim(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// What a call over a rate limit gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WhenRateLimited {
    /// An immediate error with a retry-after hint (the default).
    #[default]
    Refuse,
    /// It waits for its token (in the queue, so the queue bound still applies).
    Wait,
}

/// One tool's limits. The default is no limit at all (the tool never waits).
///
/// ```
/// use taskwire_engine::{Rate, ToolLimits};
/// let limits = ToolLimits::default().max_running(2).max_queued(100).rate_per_owner(Rate::per_second(5.0).burst(5));
/// assert_eq!(limits.max_running, Some(2));
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ToolLimits {
    /// At most this many executions run at once; the rest wait in the queue.
    pub max_running: Option<usize>,
    /// At most this many executions wait (default [`ToolLimits::DEFAULT_MAX_QUEUED`]); beyond,
    /// calls are refused.
    pub max_queued: Option<usize>,
    /// A token bucket per caller (principal, else session).
    pub rate_per_owner: Option<Rate>,
    /// A token bucket for the tool, all callers together.
    pub rate_per_tool: Option<Rate>,
    /// Refuse or wait when a bucket is empty.
    pub when_rate_limited: WhenRateLimited,
}

impl ToolLimits {
    /// The queue bound when none is set.
    pub const DEFAULT_MAX_QUEUED: usize = 1000;

    /// Sets [`ToolLimits::max_running`].
    pub fn max_running(mut self, n: usize) -> Self {
        self.max_running = Some(n.max(1));
        self
    }

    /// Sets [`ToolLimits::max_queued`].
    pub fn max_queued(mut self, n: usize) -> Self {
        self.max_queued = Some(n);
        self
    }

    /// Sets [`ToolLimits::rate_per_owner`].
    pub fn rate_per_owner(mut self, rate: Rate) -> Self {
        self.rate_per_owner = Some(rate);
        self
    }

    /// Sets [`ToolLimits::rate_per_tool`].
    pub fn rate_per_tool(mut self, rate: Rate) -> Self {
        self.rate_per_tool = Some(rate);
        self
    }

    /// Makes calls over a rate limit wait for their token instead of failing.
    pub fn wait_when_rate_limited(mut self) -> Self {
        self.when_rate_limited = WhenRateLimited::Wait;
        self
    }

    /// Whether any limit is set (an unlimited tool skips the scheduler entirely).
    pub fn is_limited(&self) -> bool {
        self.max_running.is_some() || self.rate_per_owner.is_some() || self.rate_per_tool.is_some()
    }

    /// The queue bound in force: [`ToolLimits::max_queued`] or the default.
    pub fn queue_bound(&self) -> usize {
        self.max_queued.unwrap_or(Self::DEFAULT_MAX_QUEUED)
    }
}

/// Limits across all tools.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalLimits {
    /// At most this many limited executions run at once, whatever the tool.
    pub max_running: Option<usize>,
    /// At most this many wait, whatever the tool (default 10,000).
    pub max_queued: usize,
}

impl Default for GlobalLimits {
    fn default() -> Self {
        Self { max_running: None, max_queued: 10_000 }
    }
}

/// Retries after transient failures: exponential backoff with full jitter (the delay before
/// attempt `n + 1` is uniform in `[0, min(cap, base · 2^(n-1))]`), at most `max_attempts`
/// starts in all.
///
/// ```
/// use std::time::Duration;
/// use taskwire_engine::RetryPolicy;
/// let policy = RetryPolicy { max_attempts: 4, base: Duration::from_millis(100), cap: Duration::from_secs(1) };
/// assert_eq!(policy.ceiling(1), Duration::from_millis(100)); // before attempt 2
/// assert_eq!(policy.ceiling(3), Duration::from_millis(400)); // before attempt 4
/// assert!(policy.delay(2, 0.5) <= policy.ceiling(2));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Starts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The ceiling of the first delay.
    pub base: Duration,
    /// The largest ceiling.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 3, base: Duration::from_millis(200), cap: Duration::from_secs(30) }
    }
}

impl RetryPolicy {
    /// The longest delay after failed attempt `failed` (1-based).
    pub fn ceiling(&self, failed: u32) -> Duration {
        let doubling = 2u32.saturating_pow(failed.saturating_sub(1).min(31));
        self.base.saturating_mul(doubling).min(self.cap)
    }

    /// The delay after failed attempt `failed`, given `unit`, a random number in `[0, 1)`.
    pub fn delay(&self, failed: u32, unit: f64) -> Duration {
        self.ceiling(failed).mul_f64(unit.clamp(0.0, 1.0))
    }

    /// A uniformly random number in `[0, 1)` from the OS generator, for [`RetryPolicy::delay`].
    pub fn random_unit() -> f64 {
        (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_ceilings_double_up_to_the_cap_and_delays_stay_under_them() {
        let p = RetryPolicy { max_attempts: 10, base: Duration::from_millis(50), cap: Duration::from_millis(300) };
        let ceilings: Vec<u128> = (1..=6).map(|n| p.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [50, 100, 200, 300, 300, 300]);
        for n in 1..=6 {
            for _ in 0..200 {
                let d = p.delay(n, RetryPolicy::random_unit());
                assert!(d <= p.ceiling(n), "{d:?} above the ceiling of attempt {n}");
            }
        }
        assert_eq!(p.delay(3, 0.0), Duration::ZERO);
        assert_eq!(p.ceiling(u32::MAX), p.cap, "no overflow on absurd attempt numbers");
    }

    #[test]
    fn jitter_covers_the_whole_range() {
        let samples: Vec<f64> = (0..2000).map(|_| RetryPolicy::random_unit()).collect();
        assert!(samples.iter().all(|u| (0.0..1.0).contains(u)));
        assert!(samples.iter().any(|u| *u < 0.1) && samples.iter().any(|u| *u > 0.9), "not uniform");
    }

    #[test]
    fn rates_describe_themselves_in_the_unit_a_person_would_use() {
        assert_eq!(Rate::per_second(5.0).burst(5).describe(), "5/s (burst 5)");
        assert_eq!(Rate::per_second(0.5).describe(), "30/min (burst 1)");
        assert_eq!(Rate::per_second(1.0 / 7200.0).describe(), "0.5/h (burst 1)");
    }
}
