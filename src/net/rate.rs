//! A token bucket for client actions (DESIGN §6: `actions_per_second`, burst `actions_burst`);
//! the shard keeps one per user (`Shard::take_user_action`), not per connection. Pure
//! arithmetic on a caller-supplied clock, so it is testable without time.

/// Tokens refill at `per_second` up to `burst`; each action takes one.
#[derive(Debug, Clone)]
pub struct RateLimit {
    per_second: u32,
    burst: u32,
    /// Available tokens, in thousandths (integer math, no float drift).
    milli_tokens: u64,
    /// When tokens were last refilled, ms.
    refilled_ms: u64,
}

impl RateLimit {
    /// A full bucket at `now_ms`.
    pub fn new(per_second: u32, burst: u32, now_ms: u64) -> Self {
        RateLimit { per_second, burst, milli_tokens: u64::from(burst) * 1000, refilled_ms: now_ms }
    }

    /// True when the bucket would be full at `now_ms` (its owner has been idle).
    pub fn is_full(&self, now_ms: u64, burst: u32) -> bool {
        let elapsed = now_ms.saturating_sub(self.refilled_ms);
        self.milli_tokens.saturating_add(elapsed.saturating_mul(u64::from(self.per_second)))
            >= u64::from(burst) * 1000
    }

    /// Takes one token; false when the caller is over its rate (refuse the action: 429 or the
    /// dialect's error).
    pub fn take(&mut self, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.refilled_ms);
        if elapsed > 0 {
            let refill = elapsed.saturating_mul(u64::from(self.per_second));
            self.milli_tokens =
                (self.milli_tokens.saturating_add(refill)).min(u64::from(self.burst) * 1000);
            self.refilled_ms = now_ms;
        }
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RateLimit;

    #[test]
    fn burst_then_refill_at_the_configured_rate() {
        let mut limit = RateLimit::new(100, 200, 0);
        assert_eq!((0..300).filter(|_| limit.take(0)).count(), 200, "the burst");
        assert!(!limit.take(5), "half a token after 5 ms");
        assert!(limit.take(10), "one token per 10 ms at 100/s");
        assert!(!limit.take(10));
        assert_eq!(
            (0..1000).filter(|_| limit.take(10_000)).count(),
            200,
            "refill stops at the burst"
        );
    }
}
