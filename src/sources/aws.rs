//! What the AWS sources share: SDK configuration, errors and how far they reach, and a
//! client-side rate limit.
//!
//! An API error either fails the whole fetch (the source keeps its last good answer and
//! retries with backoff) or stands for one item, which is left out while the rest is
//! published ([`item_error`]). Only the codes by which a call says the item it was asked
//! about is gone or invalid are per item; throttling, server errors, timeouts, expired
//! credentials and missing permissions fail the fetch, because they would otherwise empty the
//! source one item at a time.

use std::{sync::Mutex, time::{Duration, SystemTime}};

use aws_config::SdkConfig;
use aws_sdk_ec2::{
    error::{ProvideErrorMetadata, SdkError},
    primitives::{DateTime, DateTimeFormat},
};

use crate::config::AwsAccess;
use tokio::time::Instant;

/// Why a fetch failed. The refresh loop keeps the source's last good records meanwhile.
#[derive(Debug, thiserror::Error)]
#[error("{call} in {region}: {message}")]
pub struct FetchError {
    /// The API call.
    pub call: &'static str,
    /// The region.
    pub region: String,
    /// The SDK's error, with its causes.
    pub message: String,
}

/// A source's name for logs and the state file: kind, region, and role when one is assumed.
pub fn source_id(kind: &str, region: &str, role_arn: Option<&str>) -> String {
    match role_arn {
        Some(role) => format!("{kind}/{region}/{role}"),
        None => format!("{kind}/{region}"),
    }
}

/// When `error` is one of `codes` — the codes by which the call names the item it was asked
/// about as gone or invalid — that code and its message: the item is left out and the rest
/// of the fetch stands. Each call site lists its own codes, with the API reference's word for
/// them. Everything else (throttling, 5xx, timeouts, credentials, permissions, any other
/// code) is `None`: the whole fetch fails and the last good answer stays, since those would
/// otherwise empty a source one item at a time.
pub fn item_error<E, R>(error: &SdkError<E, R>, codes: &[&str]) -> Option<String>
where
    E: ProvideErrorMetadata,
{
    let SdkError::ServiceError(service) = error else { return None };
    let code = service.err().code()?;
    codes.contains(&code).then(|| format!("{code}: {}", service.err().message().unwrap_or("")))
}

/// Whether a call about several items failed in a way one of them may have caused (one of
/// `codes`, or another `Invalid…` client error that is not about credentials): worth asking
/// about each item alone.
pub fn worth_narrowing<E, R>(error: &SdkError<E, R>, codes: &[&str]) -> bool
where
    E: ProvideErrorMetadata,
{
    item_error(error, codes).is_some()
        || matches!(error, SdkError::ServiceError(s) if s.err().code().is_some_and(|c| c.starts_with("Invalid") && !c.contains("Token") && !c.contains("Access")))
}

/// Whether a change in account `theirs` may concern a source reading account `mine`: yes
/// unless both are known and differ (an unneeded fetch costs a call; a missed one, a stale name).
pub fn same_account(mine: Option<&str>, theirs: Option<&str>) -> bool {
    match (mine, theirs) {
        (Some(mine), Some(theirs)) => mine == theirs,
        _ => true,
    }
}

/// Now, as RFC 3339 text.
pub fn now_rfc3339() -> String {
    DateTime::from(SystemTime::now()).fmt(DateTimeFormat::DateTime).unwrap_or_default()
}

/// An SDK error with its chain of causes, for logs.
pub fn sdk_message<E: std::error::Error + 'static>(error: &E) -> String {
    aws_sdk_ec2::error::DisplayErrorContext(error).to_string()
}

/// SDK settings for one source: region, retries, timeouts, and credentials from the standard
/// chain — or fixed local ones for a stand-in, or a role. The source's `endpoint_url` is not
/// among them: it goes on the source's own client only ([`with_endpoint`]).
pub async fn sdk_config(access: &AwsAccess<'_>) -> SdkConfig {
    // endpoint_url is the source's own API's address, set on its client alone (see
    // `client_config`): the shared settings also reach STS for roles, which must keep its own
    // address. Without it, the SDK's standard settings apply (AWS_ENDPOINT_URL,
    // AWS_ENDPOINT_URL_<SERVICE>, the config file's `services` sections).
    let AwsAccess { region, role_arn, max_attempts, api_timeout_secs, static_credentials, .. } = *access;
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(max_attempts))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(api_timeout_secs))
                .build(),
        );
    if static_credentials {
        loader = loader.credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "hubdns-local",
            "hubdns-local",
            None,
            None,
            "hubdns-static",
        ));
    }
    let shared = loader.load().await;
    match role_arn {
        Some(role) => {
            let provider =
                aws_config::sts::AssumeRoleProvider::builder(role).session_name("hubdns").configure(&shared).build().await;
            shared
                .into_builder()
                .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(provider))
                .build()
        }
        None => shared,
    }
}

/// Sets `endpoint_url`, when given, on one service's client settings: `with_endpoint!(
/// aws_sdk_ec2, &shared, url)`.
#[macro_export]
macro_rules! with_endpoint {
    ($sdk:ident, $shared:expr, $url:expr) => {{
        let mut builder = $sdk::config::Builder::from($shared);
        if let Some(url) = $url {
            builder = builder.endpoint_url(url);
        }
        $sdk::Client::from_conf(builder.build())
    }};
}

/// An API whose request tokens AWS keeps in one bucket per account (and, for EC2, region).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiFamily {
    /// EC2's non-mutating (Describe*) actions: a bucket of 100 tokens refilled at 20 a
    /// second, per account and region (EC2 API reference, "Request throttling").
    Ec2Describe,
    /// Route 53's API, one bucket per account (it is global): five requests a second per
    /// account (Route 53 developer guide, "Quotas", API requests), so a burst of 5 refilled
    /// at 5 a second.
    Route53,
    /// VPC Lattice's read calls, per account and region. AWS publishes no request rate for
    /// them (VPC Lattice user guide, "Quotas" lists none), so a bucket of 10 refilled at 10 a
    /// second is assumed; a throttled lookup keeps its item's last answer.
    Lattice,
}

impl ApiFamily {
    /// AWS's bucket: (burst, refill per second).
    fn aws_bucket(self) -> (f64, f64) {
        match self {
            Self::Ec2Describe => (100.0, 20.0),
            Self::Route53 => (5.0, 5.0),
            Self::Lattice => (10.0, 10.0),
        }
    }
}

/// Buckets in use, by family, account ("" for a source's own credentials), region (none for
/// Route 53, which is global) and share (in thousandths). Sources of one account share one:
/// together they take at most `share` of AWS's bucket, leaving the rest to the account's other
/// tooling. Held weakly, so a bucket goes with its last source.
type BudgetKey = (ApiFamily, String, Option<String>, u32);
static BUDGETS: std::sync::LazyLock<Mutex<std::collections::HashMap<BudgetKey, std::sync::Weak<TokenBucket>>>> =
    std::sync::LazyLock::new(Mutex::default);

/// The bucket calls of `family` into `account` (and `region`) take from, sized to `share`
/// of AWS's.
pub fn budget(family: ApiFamily, account: Option<&str>, region: Option<&str>, share: f64) -> std::sync::Arc<TokenBucket> {
    let share = share.clamp(0.01, 1.0);
    let key = (family, account.unwrap_or_default().to_owned(), region.map(str::to_owned), (share * 1000.0).round() as u32);
    let mut budgets = BUDGETS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    budgets.retain(|_, bucket| bucket.strong_count() > 0);
    if let Some(bucket) = budgets.get(&key).and_then(std::sync::Weak::upgrade) {
        return bucket;
    }
    let (burst, rate) = family.aws_bucket();
    let bucket = std::sync::Arc::new(TokenBucket::with_rate((burst * share).max(1.0), (rate * share).max(0.1)));
    budgets.insert(key, std::sync::Arc::downgrade(&bucket));
    bucket
}

/// A token bucket: up to `burst` calls at once, then `per_second`.
pub struct TokenBucket {
    burst: f64,
    per_second: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(burst: u32, per_second: u32) -> Self {
        Self::with_rate(f64::from(burst.max(1)), f64::from(per_second.max(1)))
    }

    /// A full bucket of `burst` tokens refilled at `per_second` (fractions allowed).
    pub fn with_rate(burst: f64, per_second: f64) -> Self {
        Self { burst, per_second, state: Mutex::new((burst, Instant::now())) }
    }

    /// Waits until a call may be made, and takes its token.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                // A poisoned lock only means another task panicked mid-update: the numbers
                // are still numbers, so carry on with them.
                let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = Instant::now();
                let (tokens, last) = *state;
                let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.per_second).min(self.burst);
                if tokens >= 1.0 {
                    *state = (tokens - 1.0, now);
                    return;
                }
                *state = (tokens, now);
                Duration::from_secs_f64((1.0 - tokens) / self.per_second)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_of_one_account_share_a_budget_sized_to_their_share() {
        let a = budget(ApiFamily::Ec2Describe, Some("222233334444"), Some("us-east-1"), 0.5);
        let b = budget(ApiFamily::Ec2Describe, Some("222233334444"), Some("us-east-1"), 0.5);
        assert!(std::sync::Arc::ptr_eq(&a, &b), "one account and region: one bucket");
        assert_eq!((a.burst, a.per_second), (50.0, 10.0), "half of EC2's 100 and 20/s");
        let other = budget(ApiFamily::Ec2Describe, Some("222233334444"), Some("eu-west-1"), 0.5);
        assert!(!std::sync::Arc::ptr_eq(&a, &other), "EC2 buckets are per region");
        let zones = budget(ApiFamily::Route53, Some("222233334444"), None, 0.5);
        assert_eq!((zones.burst, zones.per_second), (2.5, 2.5), "half of Route 53's five a second");
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_allows_a_burst_then_the_rate() {
        let bucket = TokenBucket::new(5, 10);
        let start = Instant::now();
        for _ in 0..5 {
            bucket.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst is free");
        for _ in 0..10 {
            bucket.acquire().await;
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(990) && took <= Duration::from_millis(1100), "{took:?}");
    }
}
