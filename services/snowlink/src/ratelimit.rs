//! Per-key rate limits: a token bucket per API key.
//!
//! A bucket holds up to `limit` tokens (the key's requests per minute) and
//! refills continuously at `limit` per minute; each management request takes
//! one. With Redis configured the bucket lives there, updated by one Lua
//! script under Redis's own clock, so every instance draws from the same
//! bucket. If Redis cannot be reached the instance falls back to its own
//! bucket for that key (each instance then allows the limit on its own):
//! the API stays up, the limit is approximate until Redis is back.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use moka::sync::Cache;
use redis::aio::ConnectionManager;

const KEY_PREFIX: &str = "snowlink:ratelimit:";
/// How long Redis waits for a bucket before the local one answers.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// Takes `ARGV[2]` tokens (all or none), refilling by Redis's clock;
/// returns `{allowed, tokens_left_after}`. A bucket left alone until full
/// expires.
const TAKE: &str = r#"
local cap = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local per_ms = cap / 60000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1]) or cap
local at = tonumber(b[2]) or now
tokens = math.min(cap, tokens + math.max(0, now - at) * per_ms)
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], 60000)
return {allowed, tostring(tokens)}
"#;

/// What one request's token draw found, for the response headers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests per minute.
    pub limit: u32,
    /// Tokens left after this request.
    pub remaining: f64,
}

impl Decision {
    fn per_second(&self) -> f64 {
        f64::from(self.limit) / 60.0
    }

    /// Seconds until the bucket is full again.
    pub fn reset_secs(&self) -> u64 {
        ((f64::from(self.limit) - self.remaining).max(0.0) / self.per_second()).ceil() as u64
    }

    /// Seconds until the next request would be allowed.
    pub fn retry_after_secs(&self) -> u64 {
        ((1.0 - self.remaining).max(0.0) / self.per_second())
            .ceil()
            .max(1.0) as u64
    }

    /// `RateLimit-*` headers and their `X-RateLimit-*` aliases, plus
    /// `Retry-After` when the request was refused.
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        let values = [
            ("limit", u64::from(self.limit)),
            ("remaining", self.remaining.max(0.0).floor() as u64),
            ("reset", self.reset_secs()),
        ];
        for (name, value) in values {
            for prefix in ["ratelimit-", "x-ratelimit-"] {
                if let Ok(name) = HeaderName::try_from(format!("{prefix}{name}")) {
                    headers.insert(name, HeaderValue::from(value));
                }
            }
        }
        if !self.allowed {
            headers.insert(
                actix_web::http::header::RETRY_AFTER,
                HeaderValue::from(self.retry_after_secs()),
            );
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every key, in Redis when configured, else in process.
pub struct RateLimiter {
    local: Cache<String, Arc<Mutex<Bucket>>>,
    redis: Option<(ConnectionManager, redis::Script)>,
}

impl RateLimiter {
    pub fn new(redis: Option<ConnectionManager>) -> Self {
        Self {
            local: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(120))
                .build(),
            redis: redis.map(|conn| (conn, redis::Script::new(TAKE))),
        }
    }

    /// Takes a token from the bucket of `key` (a key's hash), whose limit is
    /// `per_minute`.
    pub async fn take(&self, key: &str, per_minute: u32) -> Decision {
        self.take_n(key, per_minute, 1).await
    }

    /// Takes `cost` tokens at once, or none: a request that does the work
    /// of `cost` requests (a bulk create) pays for each.
    pub async fn take_n(&self, key: &str, per_minute: u32, cost: u32) -> Decision {
        let limit = per_minute.max(1);
        if let Some((conn, script)) = &self.redis {
            let mut conn = conn.clone();
            let mut invocation = script.key(format!("{KEY_PREFIX}{key}:{limit}"));
            invocation.arg(limit).arg(cost);
            let call = invocation.invoke_async::<(i64, String)>(&mut conn);
            match tokio::time::timeout(REDIS_TIMEOUT, call).await {
                Ok(Ok((allowed, remaining))) => {
                    return Decision {
                        allowed: allowed == 1,
                        limit,
                        remaining: remaining.parse().unwrap_or(0.0),
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "rate limit bucket in Redis unavailable; using the local one")
                }
                Err(_) => {
                    tracing::warn!("rate limit bucket in Redis timed out; using the local one")
                }
            }
        }
        self.take_local(key, limit, cost)
    }

    /// Takes a token from a bucket kept in this process only, whatever
    /// Redis: for keys that must not leave memory (a client's address).
    pub fn take_in_process(&self, key: &str, per_minute: u32) -> Decision {
        self.take_local(key, per_minute.max(1), 1)
    }

    fn take_local(&self, key: &str, limit: u32, cost: u32) -> Decision {
        let bucket = self.local.get_with(format!("{key}:{limit}"), || {
            Arc::new(Mutex::new(Bucket {
                tokens: f64::from(limit),
                at: Instant::now(),
            }))
        });
        let mut b = bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let per_second = f64::from(limit) / 60.0;
        b.tokens =
            (b.tokens + now.duration_since(b.at).as_secs_f64() * per_second).min(f64::from(limit));
        b.at = now;
        let allowed = b.tokens >= f64::from(cost);
        if allowed {
            b.tokens -= f64::from(cost);
        }
        Decision {
            allowed,
            limit,
            remaining: b.tokens,
        }
    }
}

/// `600/min`, `10/s`, `36000/h` or a bare number (per minute), as requests
/// per minute.
pub fn parse_rate(s: &str) -> Result<u32, String> {
    let (n, per) = s.split_once('/').unwrap_or((s, "min"));
    let n: u64 = n
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a rate such as 600/min"))?;
    let per_minute = match per.trim() {
        "s" | "sec" | "second" => n.saturating_mul(60),
        "m" | "min" | "minute" => n,
        "h" | "hour" => n.div_ceil(60),
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?}; use /s, /min or /h"
            ))
        }
    };
    u32::try_from(per_minute)
        .ok()
        .filter(|&r| r > 0)
        .ok_or_else(|| {
            format!(
                "rate {s:?} must be at least 1/min and at most {}/min",
                u32::MAX
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_bucket_allows_its_limit_then_refuses() {
        let limiter = RateLimiter::new(None);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let decisions: Vec<Decision> = (0..6)
            .map(|_| runtime.block_on(limiter.take("k", 5)))
            .collect();
        assert!(decisions[..5].iter().all(|d| d.allowed));
        assert!(!decisions[5].allowed);
        assert_eq!(decisions[0].remaining.floor(), 4.0);
        assert!(decisions[5].retry_after_secs() >= 1);
        // Another key has its own bucket.
        assert!(runtime.block_on(limiter.take("other", 5)).allowed);
    }

    #[test]
    fn rates_are_read_per_minute() {
        assert_eq!(parse_rate("600/min"), Ok(600));
        assert_eq!(parse_rate("10/s"), Ok(600));
        assert_eq!(parse_rate("120/h"), Ok(2));
        assert_eq!(parse_rate("90"), Ok(90));
        assert!(parse_rate("0/min").is_err());
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("5/day").is_err());
    }

    #[test]
    fn headers_name_the_limit_the_rest_and_the_reset() {
        let mut headers = HeaderMap::new();
        Decision {
            allowed: false,
            limit: 60,
            remaining: 0.25,
        }
        .write_headers(&mut headers);
        assert_eq!(headers.get("ratelimit-limit").unwrap(), "60");
        assert_eq!(headers.get("x-ratelimit-limit").unwrap(), "60");
        assert_eq!(headers.get("ratelimit-remaining").unwrap(), "0");
        // 59.75 tokens at one per second.
        assert_eq!(headers.get("ratelimit-reset").unwrap(), "60");
        assert_eq!(headers.get("retry-after").unwrap(), "1");
    }
}
