//! How the registry client behaves: retries, timeouts, credentials,
//! plain-HTTP hosts, cancellation.

use super::*;

/// How often and how patiently to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included (at least 1).
    pub attempts: u32,
    /// The delay after the first failed attempt; doubled after each further one.
    pub initial_delay: Duration,
    /// The longest delay between two attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, 200 ms doubling up to 10 s.
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt number `attempt` (1-based) before its
    /// jitter: `initial_delay * 2^(attempt-1)`, at most `max_delay`.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(20);
        self.initial_delay
            .saturating_mul(factor)
            .min(self.max_delay)
    }

    /// The delay actually waited: [`Self::base_delay`] scaled by a random
    /// factor in [0.5, 1.0] so that parallel requests do not retry in step.
    pub fn delay(&self, attempt: u32) -> Duration {
        use std::hash::{BuildHasher, Hasher};
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let fraction = 0.5 + (random % 1000) as f64 / 2000.0;
        self.base_delay(attempt).mul_f64(fraction)
    }
}

/// How to reach registries.
#[derive(Clone)]
pub struct RegistryOptions {
    /// Registries (`host` or `host:port`) to reach over plain HTTP besides
    /// the loopback ones; a bare host covers all its ports.
    pub insecure: Vec<String>,
    /// Retries of failed requests.
    pub retry: RetryPolicy,
    /// The limit for one attempt of a small request (manifests, HEADs,
    /// mounts, tag writes).
    pub request_timeout: Duration,
    /// The limit for opening a connection.
    pub connect_timeout: Duration,
    /// The limit for a pause while reading a response (blob transfers).
    pub read_timeout: Duration,
    /// Where credentials come from; `None`: the user's Docker configuration
    /// ([`AuthService::from_env`]).
    pub auth: Option<AuthService>,
    /// Once cancelled, every request of the client stops at once (the
    /// attempt in flight is dropped, no retry is made) and fails with
    /// [`RegistryError::Interrupted`].
    pub cancel: CancellationToken,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure: Vec::new(),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            auth: None,
            cancel: CancellationToken::new(),
        }
    }
}

impl fmt::Debug for RegistryOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryOptions")
            .field("insecure", &self.insecure)
            .field("retry", &self.retry)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("auth", &self.auth.as_ref().map(|_| "<configured>"))
            .field("cancelled", &self.cancel.is_cancelled())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded() {
        let p = RetryPolicy::default();
        assert_eq!(p.base_delay(1), Duration::from_millis(200));
        assert_eq!(p.base_delay(2), Duration::from_millis(400));
        assert_eq!(p.base_delay(4), Duration::from_millis(1600));
        assert_eq!(p.base_delay(10), Duration::from_secs(10));
        assert_eq!(p.base_delay(64), Duration::from_secs(10));
        for n in 1..8 {
            let d = p.delay(n);
            assert!(d <= p.base_delay(n) && d >= p.base_delay(n) / 2, "{d:?}");
        }
    }
}
