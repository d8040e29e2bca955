//! Leader election with a `coordination.k8s.io/v1` Lease: only the holder
//! writes, and only while it is sure to hold it.
//!
//! Timing follows client-go's `leaderelection`:
//!
//! - **Expiry by local observation.** A replica never compares the Lease's
//!   `renewTime` (written by another node's clock) with its own clock. It
//!   records, by its own monotonic clock, when it last saw the lease record
//!   (holder, renew and acquire times, duration, transitions) change, and
//!   takes the lease over only when that observation is older than
//!   `leaseDurationSeconds`. Clock skew between nodes does not matter; only
//!   the rates of the clocks do.
//! - **The leader renews all the time**, every `retry` period, in its own
//!   task: an apply in progress does not hold renewals back.
//! - **Writes are fenced in time.** [`Leadership`] is the executor's
//!   [`WriteGuard`]: a write may be sent only while the last *successful*
//!   renewal was sent less than `renew_deadline` ago by the local clock.
//!   A follower waits at least `duration` after it saw that renewal, so the
//!   old leader stops `duration - renew_deadline` (5 s by default) before any
//!   follower can take over. That margin covers the write in flight and the
//!   difference in clock rates.
//! - **A failed renewal stops writing at once** (an error, a conflict, a
//!   timeout): nothing is written until a renewal succeeds again.
//!   Updates carry the Lease's `resourceVersion`, so two replicas never both
//!   win one.
//!
//! The Lease also carries the last good commit (annotation
//! [`LAST_GOOD_ANNOTATION`]), written by the holder with its renewals so
//! that a restarted daemon whose branch head is broken still knows what to
//! heal from.

use crate::live::apply::{Stopped, WriteGuard};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The Lease annotation that holds the last commit that passed validation.
pub const LAST_GOOD_ANNOTATION: &str = "kftenant.io/last-good-commit";

/// The stable code of writes refused because leadership is not certain.
pub const LOST_LEADERSHIP: &str = "LostLeadership";

/// Where the lease lives and how it is timed.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a follower waits, after it last saw the lease change, before
    /// taking it over (`leaseDurationSeconds`).
    pub duration: Duration,
    /// How long after its last successful renewal the leader still writes.
    /// Shorter than `duration`; the difference is the safety margin.
    pub renew_deadline: Duration,
    /// How often every replica tries to acquire or renew.
    pub retry: Duration,
}

impl LeaseConfig {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry period.
    pub fn new(name: String, namespace: String, identity: String) -> LeaseConfig {
        LeaseConfig {
            name,
            namespace,
            identity,
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

/// What this replica knows of the lease, judged by its own monotonic clock.
#[derive(Debug)]
pub struct Leadership {
    identity: String,
    lease: String,
    duration: Duration,
    renew_deadline: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The lease record last read (its spec and `resourceVersion`), and
    /// when this replica first saw it.
    observed: Option<((LeaseSpec, Option<String>), Instant)>,
    /// When the last successful renewal was sent; `None` when not leading.
    renewed: Option<Instant>,
    /// Why this replica is not leading, for the guard's message.
    why_not: String,
    /// The last good commit, written on the lease with each renewal.
    last_good: Option<String>,
}

impl Leadership {
    /// Nothing known yet: not leading.
    pub fn new(cfg: &LeaseConfig) -> Leadership {
        Leadership {
            identity: cfg.identity.clone(),
            lease: format!("{}/{}", cfg.namespace, cfg.name),
            duration: cfg.duration,
            renew_deadline: cfg.renew_deadline,
            state: Mutex::new(State {
                why_not: "the lease has not been acquired yet".into(),
                ..Default::default()
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True while the last successful renewal was sent less than the renew
    /// deadline ago: writes are allowed.
    pub fn leading(&self) -> bool {
        self.state()
            .renewed
            .is_some_and(|t| t.elapsed() < self.renew_deadline)
    }

    /// Who holds the lease as this replica last read it (`None`: nobody, or
    /// not read yet), for the status page.
    pub fn holder(&self) -> Option<String> {
        self.state()
            .observed
            .as_ref()
            .and_then(|((spec, _), _)| spec.holder_identity.clone())
            .filter(|h| !h.is_empty())
    }

    /// The commit to write on the lease with the next renewal.
    pub fn set_last_good(&self, commit: &str) {
        self.state().last_good = Some(commit.to_string());
    }

    /// Records the lease read from (or written to) the API server; its time
    /// is restarted when the record or its `resourceVersion` differs from
    /// the last one seen.
    fn observe(&self, lease: &Lease) {
        let record = (
            lease.spec.clone().unwrap_or_default(),
            lease.metadata.resource_version.clone(),
        );
        let mut st = self.state();
        if st.observed.as_ref().is_none_or(|(seen, _)| *seen != record) {
            st.observed = Some((record, Instant::now()));
        }
    }

    /// True when `spec` may be taken: free, ours, or unchanged for a whole
    /// lease duration by this replica's clock.
    fn may_take(&self, spec: &LeaseSpec) -> bool {
        let holder = spec.holder_identity.as_deref().unwrap_or_default();
        if holder.is_empty() || holder == self.identity {
            return true;
        }
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.duration, Duration::from_secs);
        self.state()
            .observed
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() >= duration)
    }

    fn renewed(&self, sent: Instant) {
        self.state().renewed = Some(sent);
    }

    /// Stops writing at once.
    fn lost(&self, why: impl Into<String>) {
        let mut st = self.state();
        st.renewed = None;
        st.why_not = why.into();
    }
}

impl WriteGuard for Leadership {
    fn check(&self) -> Result<(), Stopped> {
        let st = self.state();
        let reason = match st.renewed {
            Some(t) if t.elapsed() < self.renew_deadline => return Ok(()),
            Some(t) => format!(
                "the last successful renewal of lease {} was {:.1} s ago, over the {} s renew deadline",
                self.lease,
                t.elapsed().as_secs_f64(),
                self.renew_deadline.as_secs()
            ),
            None => format!("not leading ({}): lease {}", st.why_not, self.lease),
        };
        Err(Stopped {
            code: LOST_LEADERSHIP,
            reason,
        })
    }
}

/// The calls leader election makes, so that its timing can be tested
/// without an API server.
pub trait LeaseStore: Send + Sync {
    /// The lease, if it exists.
    fn get(&self) -> impl Future<Output = Result<Option<Lease>, kube::Error>> + Send;
    /// Creates it (409 when another replica was first).
    fn create(&self, lease: &Lease) -> impl Future<Output = Result<Lease, kube::Error>> + Send;
    /// Replaces it, if its `resourceVersion` is still current (else 409).
    fn replace(&self, lease: &Lease) -> impl Future<Output = Result<Lease, kube::Error>> + Send;
}

/// The lease on the API server.
pub struct KubeLease {
    api: Api<Lease>,
    name: String,
}

impl KubeLease {
    /// The lease `cfg` names.
    pub fn new(client: kube::Client, cfg: &LeaseConfig) -> KubeLease {
        KubeLease {
            api: Api::namespaced(client, &cfg.namespace),
            name: cfg.name.clone(),
        }
    }
}

impl LeaseStore for KubeLease {
    async fn get(&self) -> Result<Option<Lease>, kube::Error> {
        self.api.get_opt(&self.name).await
    }

    async fn create(&self, lease: &Lease) -> Result<Lease, kube::Error> {
        self.api.create(&PostParams::default(), lease).await
    }

    async fn replace(&self, lease: &Lease) -> Result<Lease, kube::Error> {
        self.api
            .replace(&self.name, &PostParams::default(), lease)
            .await
    }
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// One attempt to take or renew the lease; true when this replica holds it
/// afterwards. Updates `leadership` either way.
pub async fn try_acquire(
    store: &impl LeaseStore,
    cfg: &LeaseConfig,
    leadership: &Leadership,
) -> Result<bool, kube::Error> {
    // Taken before the first call: the renewal is at least this old, never younger.
    let sent = Instant::now();
    let last_good = leadership.state().last_good.clone();
    let fresh = |spec: LeaseSpec, metadata: ObjectMeta| {
        let mut metadata = metadata;
        if let Some(commit) = &last_good {
            metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(LAST_GOOD_ANNOTATION.into(), commit.clone());
        }
        Lease {
            metadata,
            spec: Some(spec),
        }
    };
    let duration = i32::try_from(cfg.duration.as_secs()).unwrap_or(i32::MAX);
    let Some(lease) = store.get().await? else {
        let spec = LeaseSpec {
            holder_identity: Some(cfg.identity.clone()),
            lease_duration_seconds: Some(duration),
            acquire_time: Some(now()),
            renew_time: Some(now()),
            lease_transitions: Some(0),
            ..Default::default()
        };
        let metadata = ObjectMeta {
            name: Some(cfg.name.clone()),
            ..Default::default()
        };
        return match store.create(&fresh(spec, metadata)).await {
            Ok(created) => {
                leadership.observe(&created);
                leadership.renewed(sent);
                Ok(true)
            }
            Err(e) if conflict(&e) => {
                leadership.lost("another replica created the lease first");
                Ok(false)
            }
            Err(e) => Err(e),
        };
    };
    leadership.observe(&lease);
    let current = lease.spec.clone().unwrap_or_default();
    let holder = current.holder_identity.clone().unwrap_or_default();
    if !leadership.may_take(&current) {
        leadership.lost(format!("held by {holder}"));
        return Ok(false);
    }
    let mine = holder == cfg.identity;
    let transitions = current.lease_transitions.unwrap_or(0);
    let spec = LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(duration),
        acquire_time: if mine {
            current.acquire_time
        } else {
            Some(now())
        },
        renew_time: Some(now()),
        lease_transitions: Some(if mine { transitions } else { transitions + 1 }),
        ..current
    };
    match store.replace(&fresh(spec, lease.metadata)).await {
        Ok(updated) => {
            leadership.observe(&updated);
            leadership.renewed(sent);
            if !mine {
                tracing::info!(lease = %cfg.name, previous = %holder, "took the lease over");
            }
            Ok(true)
        }
        Err(e) if conflict(&e) => {
            leadership.lost("another replica updated the lease first");
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Keeps trying to hold the lease, every `cfg.retry`, publishing the result
/// in `leadership`. Each attempt is bounded by the renew deadline; a failed
/// or timed-out attempt stops writing at once.
pub async fn keep(store: impl LeaseStore, cfg: LeaseConfig, leadership: &Leadership) {
    let mut was_leading = false;
    loop {
        match tokio::time::timeout(cfg.renew_deadline, try_acquire(&store, &cfg, leadership)).await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "lease renewal failed: writing stops");
                leadership.lost(format!("the last renewal failed: {e}"));
            }
            Err(_) => {
                tracing::warn!(
                    timeout_s = cfg.renew_deadline.as_secs(),
                    "lease renewal timed out: writing stops"
                );
                leadership.lost("the last renewal timed out");
            }
        }
        let leading = leadership.leading();
        if leading != was_leading {
            tracing::info!(leader = leading, lease = %cfg.name, "leadership changed");
            was_leading = leading;
        }
        tokio::time::sleep(cfg.retry).await;
    }
}

/// The last good commit recorded on the lease, if any (a 40-digit hex id).
pub async fn read_last_good(store: &impl LeaseStore) -> Result<Option<String>, kube::Error> {
    let lease = store.get().await?;
    let commit = lease
        .and_then(|l| l.metadata.annotations)
        .and_then(|mut a| a.remove(LAST_GOOD_ANNOTATION));
    Ok(commit.filter(|c| c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit())))
}

/// Gives the lease up (on shutdown) so a follower takes over at once; its
/// annotations (the last good commit) stay.
pub async fn release(store: &impl LeaseStore, cfg: &LeaseConfig, leadership: &Leadership) {
    leadership.lost("released on shutdown");
    if let Ok(Some(mut lease)) = store.get().await {
        if lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(cfg.identity.as_str())
        {
            if let Some(spec) = lease.spec.as_mut() {
                spec.holder_identity = None;
            }
            let _ = store.replace(&lease).await;
        }
    }
}

#[cfg(test)]
mod tests {
    //! The timing, on an in-memory lease and tokio's paused clock: no API
    //! server, no real sleeps.
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A lease in memory with the API server's optimistic concurrency, and
    /// switches to make one replica's calls fail or hang (its network cut,
    /// or the process stopped).
    #[derive(Default)]
    struct Memory {
        lease: Mutex<Option<Lease>>,
        version: Mutex<u64>,
    }

    fn status(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(reason, reason)
                .with_code(code)
                .boxed(),
        )
    }

    impl Memory {
        fn stored(&self) -> Option<Lease> {
            self.lease.lock().unwrap().clone()
        }

        fn write(&self, mut lease: Lease) -> Lease {
            let mut v = self.version.lock().unwrap();
            *v += 1;
            lease.metadata.resource_version = Some(v.to_string());
            *self.lease.lock().unwrap() = Some(lease.clone());
            lease
        }

        /// Another node renews with a renewTime from its own (wrong) clock.
        fn renew_as(&self, holder: &str, renew_time: &str) {
            let mut lease = self.stored().unwrap_or_default();
            lease.spec = Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(renew_time.parse().unwrap())),
                ..Default::default()
            });
            self.write(lease);
        }
    }

    /// One replica's view of a shared [`Memory`].
    #[derive(Clone)]
    struct Replica {
        memory: Arc<Memory>,
        /// Calls fail at once (connection refused).
        fail: Arc<AtomicBool>,
        /// Calls hang until cleared (a network black hole, or SIGSTOP).
        hang: Arc<AtomicBool>,
    }

    impl Replica {
        fn new(memory: &Arc<Memory>) -> Replica {
            Replica {
                memory: memory.clone(),
                fail: Default::default(),
                hang: Default::default(),
            }
        }

        async fn gate(&self) -> Result<(), kube::Error> {
            while self.hang.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if self.fail.load(Ordering::SeqCst) {
                return Err(status(503, "ServiceUnavailable"));
            }
            Ok(())
        }
    }

    impl LeaseStore for Replica {
        async fn get(&self) -> Result<Option<Lease>, kube::Error> {
            self.gate().await?;
            Ok(self.memory.stored())
        }

        async fn create(&self, lease: &Lease) -> Result<Lease, kube::Error> {
            self.gate().await?;
            if self.memory.stored().is_some() {
                return Err(status(409, "AlreadyExists"));
            }
            Ok(self.memory.write(lease.clone()))
        }

        async fn replace(&self, lease: &Lease) -> Result<Lease, kube::Error> {
            self.gate().await?;
            let current = self
                .memory
                .stored()
                .and_then(|l| l.metadata.resource_version);
            if current != lease.metadata.resource_version {
                return Err(status(409, "Conflict"));
            }
            Ok(self.memory.write(lease.clone()))
        }
    }

    fn cfg(identity: &str) -> LeaseConfig {
        LeaseConfig::new("kftenant".into(), "kubeflow".into(), identity.into())
    }

    /// Advances the paused clock by `d` in small steps, letting tasks run.
    async fn advance(d: Duration) {
        let step = Duration::from_millis(100);
        let mut left = d;
        while !left.is_zero() {
            let s = step.min(left);
            tokio::time::advance(s).await;
            left -= s;
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_follower_judges_expiry_by_its_own_clock_not_the_renew_time() {
        let memory = Arc::new(Memory::default());
        let b = cfg("b");
        let lb = Leadership::new(&b);
        let store = Replica::new(&memory);
        // The holder's clock is 25 years behind: renewTime says "long
        // expired", yet the record is new to this replica.
        memory.renew_as("a", "2000-01-01T00:00:00Z");
        assert!(!try_acquire(&store, &b, &lb).await.unwrap());
        advance(Duration::from_millis(14_900)).await;
        assert!(
            !try_acquire(&store, &b, &lb).await.unwrap(),
            "not before 15 s"
        );
        // The holder renews (with a renewTime 25 years in the future this
        // time): the record changed, the wait starts again when b sees it.
        memory.renew_as("a", "2050-01-01T00:00:00Z");
        assert!(!try_acquire(&store, &b, &lb).await.unwrap());
        advance(Duration::from_secs(10)).await;
        assert!(!try_acquire(&store, &b, &lb).await.unwrap());
        assert!(lb.check().is_err());
        advance(Duration::from_secs(5)).await;
        assert!(
            try_acquire(&store, &b, &lb).await.unwrap(),
            "15 s unchanged"
        );
        assert!(lb.leading() && lb.check().is_ok());
        let spec = memory.stored().unwrap().spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
        assert_eq!(spec.lease_transitions, Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_leader_stops_writing_at_the_renew_deadline_without_a_renewal() {
        let memory = Arc::new(Memory::default());
        let a = cfg("a");
        let la = Leadership::new(&a);
        assert_eq!(la.check().unwrap_err().code, LOST_LEADERSHIP);
        assert!(try_acquire(&Replica::new(&memory), &a, &la).await.unwrap());
        assert!(la.check().is_ok());
        // The process is stopped (no renewal runs): by its own clock it
        // stops at 10 s, though the lease lasts 15 s.
        advance(Duration::from_millis(9_900)).await;
        assert!(la.check().is_ok());
        advance(Duration::from_millis(100)).await;
        let refused = la.check().unwrap_err();
        assert_eq!(refused.code, LOST_LEADERSHIP);
        assert!(
            refused.reason.contains("renew deadline"),
            "{}",
            refused.reason
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_renewal_stops_writing_at_once_and_a_good_one_resumes_it() {
        let memory = Arc::new(Memory::default());
        let a = cfg("a");
        let la = Arc::new(Leadership::new(&a));
        let store = Replica::new(&memory);
        let task = tokio::spawn({
            let (store, la, a) = (store.clone(), la.clone(), a.clone());
            async move { keep(store, a, &la).await }
        });
        advance(Duration::from_millis(100)).await;
        assert!(la.leading());
        // The API server refuses: the next renewal (at most 2 s away) fails,
        // and writing stops then, not at the deadline.
        store.fail.store(true, Ordering::SeqCst);
        advance(Duration::from_millis(2_100)).await;
        let refused = la.check().unwrap_err();
        assert!(
            refused.reason.contains("renewal failed"),
            "{}",
            refused.reason
        );
        store.fail.store(false, Ordering::SeqCst);
        advance(Duration::from_secs(2)).await;
        assert!(la.check().is_ok(), "still the holder: renewed again");
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_renewal_stops_writing_at_the_renew_deadline() {
        let memory = Arc::new(Memory::default());
        let a = cfg("a");
        let la = Arc::new(Leadership::new(&a));
        let store = Replica::new(&memory);
        let task = tokio::spawn({
            let (store, la, a) = (store.clone(), la.clone(), a.clone());
            async move { keep(store, a, &la).await }
        });
        advance(Duration::from_millis(100)).await;
        let renewed = Instant::now();
        assert!(la.leading());
        store.hang.store(true, Ordering::SeqCst);
        // At most one more renewal went out before the black hole (2 s).
        advance(Duration::from_secs(12)).await;
        assert!(la.check().is_err());
        assert!(renewed.elapsed() >= Duration::from_secs(10));
        task.abort();
    }

    /// Two replicas on one lease; the leader's calls hang (its process is
    /// stopped, or cut off) for a while, then resume. At every 100 ms step,
    /// at most one replica may write, and the old leader's last permitted
    /// write comes at least 5 s before the new leader's first.
    #[tokio::test(start_paused = true)]
    async fn never_two_writers_across_a_pause_and_a_takeover() {
        let memory = Arc::new(Memory::default());
        let (a, b) = (cfg("a"), cfg("b"));
        let (la, lb) = (Arc::new(Leadership::new(&a)), Arc::new(Leadership::new(&b)));
        let (sa, sb) = (Replica::new(&memory), Replica::new(&memory));
        let ta = tokio::spawn({
            let (s, l, c) = (sa.clone(), la.clone(), a.clone());
            async move { keep(s, c, &l).await }
        });
        advance(Duration::from_millis(100)).await;
        let tb = tokio::spawn({
            let (s, l, c) = (sb.clone(), lb.clone(), b.clone());
            async move { keep(s, c, &l).await }
        });
        let start = Instant::now();
        let (mut a_last, mut b_first) = (None, None);
        for step in 0..600 {
            if step == 50 {
                sa.hang.store(true, Ordering::SeqCst);
            }
            if step == 400 {
                sa.hang.store(false, Ordering::SeqCst);
            }
            let (wa, wb) = (la.check().is_ok(), lb.check().is_ok());
            assert!(!(wa && wb), "two writers at {:?}", start.elapsed());
            if wa {
                a_last = Some(start.elapsed());
            }
            if wb && b_first.is_none() {
                b_first = Some(start.elapsed());
            }
            advance(Duration::from_millis(100)).await;
        }
        let (a_last, b_first) = (a_last.unwrap(), b_first.unwrap());
        eprintln!("a paused at 5 s; a wrote until {a_last:?}, b from {b_first:?}");
        assert!(
            b_first >= a_last + Duration::from_secs(5),
            "a wrote until {a_last:?}, b from {b_first:?}"
        );
        assert!(!la.leading() && lb.leading(), "a resumed as a follower");
        let spec = memory.stored().unwrap().spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
        ta.abort();
        tb.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_good_commit_rides_on_renewals_and_survives_release() {
        let memory = Arc::new(Memory::default());
        let a = cfg("a");
        let la = Leadership::new(&a);
        let store = Replica::new(&memory);
        let commit = "0123456789abcdef0123456789abcdef01234567";
        assert!(try_acquire(&store, &a, &la).await.unwrap());
        assert_eq!(read_last_good(&store).await.unwrap(), None);
        la.set_last_good(commit);
        assert!(try_acquire(&store, &a, &la).await.unwrap());
        assert_eq!(
            read_last_good(&store).await.unwrap().as_deref(),
            Some(commit)
        );
        release(&store, &a, &la).await;
        assert!(la.check().is_err());
        let lease = memory.stored().unwrap();
        assert_eq!(lease.spec.unwrap().holder_identity, None);
        // A new replica that knows no good commit takes the free lease at
        // once and leaves the annotation as it is.
        let b = cfg("b");
        let lb = Leadership::new(&b);
        assert!(try_acquire(&store, &b, &lb).await.unwrap());
        assert_eq!(
            read_last_good(&store).await.unwrap().as_deref(),
            Some(commit)
        );
    }
}
