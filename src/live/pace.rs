//! Pacing of IAM writes once IAM has throttled one.
//!
//! IAM caps the write calls of an account (a rate, not published, shared with
//! everything else that writes there) and answers `Throttling` above it.
//! kftenant writes from several tenants at once, so a cold apply of many
//! tenants runs into that cap. The AWS SDK's answer, its adaptive retry mode,
//! fits badly: it charges a throttled retry 5 to 10 tokens of a bucket it
//! refills at the rate it measured (at least 0.5 a second), and lets the
//! bucket go into debt, so a burst of throttles stalls every call of the
//! process for many seconds (measured: a 50-tenant apply against a 15
//! writes/s cap took 4× the floor; a throttled read sent alone waited 15–20 s
//! before its retry).
//!
//! [`WritePacer`] instead paces writes the way TCP paces packets
//! (additive increase, multiplicative decrease): unpaced until the first
//! `Throttling`; then at 90% of the writes IAM accepted in the last second
//! (near its cap, since it was refusing), rising by one write a second per
//! second until IAM refuses again. Throttles within a second of a cut come
//! from writes sent before it and cut nothing more. Reads are never paced
//! (IAM throttles them apart). [`PacingInterceptor`] tells the pacer about
//! every attempt of a write, the SDK's retries included, and
//! [`PacingClassifier`] has the SDK retry a throttled call in the pacer's next
//! slot rather than after its own random backoff.
//!
//! The pacer takes the time as an argument, so its arithmetic is tested
//! without a clock.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Writes per second the pacer never goes below.
const MIN_RATE: f64 = 1.0;
/// After a throttle, the share of the last second's accepted writes to pace at.
const CUT: f64 = 0.9;
/// How fast the paced rate grows back, in writes per second per second.
const RAISE_PER_SECOND: f64 = 1.0;
/// Throttles this soon after a cut answer writes sent before it.
const CUT_QUIET: Duration = Duration::from_secs(1);
/// The window over which accepted writes are counted.
const WINDOW: Duration = Duration::from_secs(1);

/// Paces IAM writes after a `Throttling`; see the module docs.
#[derive(Debug, Default)]
pub struct WritePacer {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Writes per second allowed; `None` until IAM first throttles.
    rate: Option<f64>,
    /// When the next write may be sent.
    next: Option<Instant>,
    /// When the rate was last cut.
    cut_at: Option<Instant>,
    /// When the rate was last raised (or cut).
    raised_at: Option<Instant>,
    /// When IAM accepted each write of the last [`WINDOW`].
    accepted: VecDeque<Instant>,
}

impl WritePacer {
    /// The paced rate, writes per second (`None`: unpaced).
    pub fn rate(&self) -> Option<f64> {
        self.state.lock().expect("pacer lock").rate
    }

    /// Reserves the next slot for a write at `now`: how long to wait
    /// before sending it (zero while unpaced).
    pub fn reserve(&self, now: Instant) -> Duration {
        let mut s = self.state.lock().expect("pacer lock");
        let Some(rate) = s.rate else {
            return Duration::ZERO;
        };
        let since = s
            .raised_at
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        let rate = rate + since.as_secs_f64() * RAISE_PER_SECOND;
        s.rate = Some(rate);
        s.raised_at = Some(now);
        let slot = s.next.map_or(now, |n| n.max(now));
        s.next = Some(slot + Duration::from_secs_f64(1.0 / rate));
        slot - now
    }

    /// IAM accepted a write (any answer but `Throttling`) at `now`.
    pub fn accepted(&self, now: Instant) {
        let mut s = self.state.lock().expect("pacer lock");
        s.accepted.push_back(now);
        while s
            .accepted
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > WINDOW)
        {
            s.accepted.pop_front();
        }
    }

    /// IAM answered a write `Throttling` at `now`: pace at [`CUT`] of what
    /// it accepted in the last second, unless the rate was cut just before.
    pub fn throttled(&self, now: Instant) {
        let mut s = self.state.lock().expect("pacer lock");
        if s.cut_at
            .is_some_and(|t| now.saturating_duration_since(t) < CUT_QUIET)
        {
            return;
        }
        let accepted = s
            .accepted
            .iter()
            .filter(|t| now.saturating_duration_since(**t) <= WINDOW)
            .count() as f64;
        let base = match s.rate {
            Some(rate) => rate.min(accepted.max(MIN_RATE)),
            None => accepted,
        };
        s.rate = Some((base * CUT).max(MIN_RATE));
        s.cut_at = Some(now);
        s.raised_at = Some(now);
        // Writes already given a slot at the old rate keep it; the next
        // slots are spaced at the new one.
    }
}

/// True for IAM actions that change nothing (never paced).
pub fn is_read(action: &str) -> bool {
    ["Get", "List", "Generate", "Simulate"]
        .iter()
        .any(|p| action.starts_with(p))
}

/// Tells a [`WritePacer`] how IAM answered each attempt of a write, the
/// SDK's retries included.
#[derive(Debug)]
pub struct PacingInterceptor(pub std::sync::Arc<WritePacer>);

impl aws_sdk_iam::config::Intercept for PacingInterceptor {
    fn name(&self) -> &'static str {
        "kftenant::live::pace::PacingInterceptor"
    }

    fn read_after_attempt(
        &self,
        context: &aws_sdk_iam::config::interceptors::FinalizerInterceptorContextRef<'_>,
        _runtime_components: &aws_sdk_iam::config::RuntimeComponents,
        cfg: &mut aws_sdk_iam::config::ConfigBag,
    ) -> Result<(), aws_sdk_iam::error::BoxError> {
        // The request itself was handed to the HTTP client: the operation's
        // name comes from its metadata.
        let write = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .is_some_and(|m| !is_read(m.name()));
        let Some(response) = context.response() else {
            return Ok(()); // never reached IAM: nothing learnt
        };
        if !write {
            return Ok(());
        }
        if is_throttle(response) {
            self.0.throttled(Instant::now());
        } else {
            self.0.accepted(Instant::now());
        }
        Ok(())
    }
}

/// Schedules the SDK's retry of a throttled call on the pacer's slots (once
/// pacing has begun), so the retries of refused writes do not run ahead of
/// the paced rate; other answers are left to the SDK's own classifiers.
#[derive(Debug)]
pub struct PacingClassifier(pub std::sync::Arc<WritePacer>);

impl aws_sdk_iam::config::retry::ClassifyRetry for PacingClassifier {
    fn classify_retry(
        &self,
        ctx: &aws_sdk_iam::config::interceptors::InterceptorContext,
    ) -> aws_sdk_iam::config::retry::RetryAction {
        use aws_sdk_iam::config::retry::RetryAction;
        use aws_smithy_runtime_api::client::retries::classifiers::RetryReason;
        if !ctx.response().is_some_and(is_throttle) || self.0.rate().is_none() {
            return RetryAction::NoActionIndicated;
        }
        match RetryAction::throttling_error() {
            RetryAction::RetryIndicated(RetryReason::RetryableError { kind, .. }) => {
                RetryAction::retryable_error_with_explicit_delay(
                    kind,
                    self.0.reserve(Instant::now()),
                )
            }
            other => other,
        }
    }

    fn name(&self) -> &'static str {
        "kftenant::live::pace::PacingClassifier"
    }

    fn priority(
        &self,
    ) -> aws_smithy_runtime_api::client::retries::classifiers::RetryClassifierPriority {
        use aws_smithy_runtime_api::client::retries::classifiers::RetryClassifierPriority;
        // After the SDK's own classifiers, so its decision is replaced.
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

/// IAM answered `Throttling` (its errors are XML with a `<Code>`; the body
/// is in memory once the attempt was read).
fn is_throttle(response: &aws_smithy_runtime_api::http::Response) -> bool {
    response.status().as_u16() == 400
        && response
            .body()
            .bytes()
            .is_some_and(|b| contains(b, b"<Code>Throttling</Code>"))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn unpaced_until_the_first_throttle() {
        let p = WritePacer::default();
        let t0 = Instant::now();
        for i in 0..100 {
            assert_eq!(p.reserve(t0 + ms(i)), Duration::ZERO);
            p.accepted(t0 + ms(i));
        }
        assert_eq!(p.rate(), None);
    }

    #[test]
    fn a_throttle_paces_at_nine_tenths_of_what_iam_accepted_in_the_last_second() {
        let p = WritePacer::default();
        let t0 = Instant::now();
        // 15 accepted in the last second (and 5 more before it).
        for i in 0..20 {
            p.accepted(t0 + ms(i * 1000 / 15));
        }
        let now = t0 + ms(20 * 1000 / 15);
        p.throttled(now);
        let rate = p.rate().unwrap();
        assert!((rate - 0.9 * 15.0).abs() < 0.01 * 15.0 + 0.9, "{rate}");
        // Slots are spaced at that rate.
        assert_eq!(p.reserve(now), Duration::ZERO);
        let second = p.reserve(now);
        assert!(
            (second.as_secs_f64() - 1.0 / rate).abs() < 1e-6,
            "{second:?} at {rate}/s"
        );
        let third = p.reserve(now);
        assert!((third.as_secs_f64() - 2.0 / rate).abs() < 1e-6);
    }

    #[test]
    fn throttles_of_one_burst_cut_once_and_the_rate_grows_back() {
        let p = WritePacer::default();
        let t0 = Instant::now();
        for i in 0..15 {
            p.accepted(t0 + ms(i * 60));
        }
        p.throttled(t0 + ms(900));
        let cut = p.rate().unwrap();
        for i in 1..=8 {
            p.throttled(t0 + ms(900 + i * 100));
        }
        assert_eq!(p.rate(), Some(cut), "the writes in flight were refused too");
        // Two seconds on, the rate has grown by two writes a second.
        p.reserve(t0 + ms(2900));
        let grown = p.rate().unwrap();
        assert!((grown - (cut + 2.0)).abs() < 1e-9, "{cut} -> {grown}");
        // A throttle after the quiet second cuts again, from the lesser of
        // the paced rate and what was accepted.
        for i in 0..5 {
            p.accepted(t0 + ms(2000 + i * 100));
        }
        p.throttled(t0 + ms(2950));
        assert!((p.rate().unwrap() - 0.9 * 5.0).abs() < 1e-9);
    }

    #[test]
    fn the_rate_never_falls_below_one_write_a_second() {
        let p = WritePacer::default();
        let t0 = Instant::now();
        p.throttled(t0);
        assert_eq!(p.rate(), Some(MIN_RATE));
        p.throttled(t0 + ms(1500));
        assert_eq!(p.rate(), Some(MIN_RATE));
    }

    #[test]
    fn a_throttle_is_told_by_its_code() {
        assert!(contains(
            b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>",
            b"<Code>Throttling</Code>"
        ));
        assert!(!contains(
            b"<Code>ThrottlingX</Code>",
            b"<Code>Throttling</Code>"
        ));
    }

    #[test]
    fn reads_are_told_apart_from_writes() {
        for read in [
            "GetRole",
            "ListRoles",
            "GetAccountAuthorizationDetails",
            "GenerateServiceLastAccessedDetails",
            "SimulatePrincipalPolicy",
        ] {
            assert!(is_read(read), "{read}");
        }
        for write in [
            "CreateRole",
            "AttachRolePolicy",
            "TagRole",
            "DeletePolicyVersion",
        ] {
            assert!(!is_read(write), "{write}");
        }
    }
}
