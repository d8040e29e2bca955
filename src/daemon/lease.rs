//! Leader election with a `coordination.k8s.io/v1` Lease: only the holder writes.
//!
//! The holder renews every `renew` interval; a replica takes the lease over
//! when its `renewTime` is older than `leaseDurationSeconds`. Updates use the
//! Lease's `resourceVersion`, so two replicas can never both win a takeover.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Where the lease lives and how it is timed.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub duration: Duration,
    /// How often the holder renews.
    pub renew: Duration,
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// One attempt to take or renew the lease; true when this replica holds it afterwards.
pub async fn try_acquire(client: &kube::Client, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    acquire(client, cfg).await.map(|(held, _)| held)
}

/// [`try_acquire`], and who holds the lease afterwards as far as this
/// attempt saw (`None`: nobody).
async fn acquire(
    client: &kube::Client,
    cfg: &LeaseConfig,
) -> Result<(bool, Option<String>), kube::Error> {
    let me = Some(cfg.identity.clone());
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let spec = LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(cfg.duration.as_secs() as i32),
        renew_time: Some(now()),
        acquire_time: Some(now()),
        ..Default::default()
    };
    match api.get_opt(&cfg.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok((true, me)),
                // Another replica created it first; who, the next attempt reads.
                Err(kube::Error::Api(s)) if s.code == 409 => Ok((false, None)),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            let current = lease.spec.clone().unwrap_or_default();
            let mine = current.holder_identity.as_deref() == Some(cfg.identity.as_str());
            let expired = match (&current.renew_time, current.lease_duration_seconds) {
                (Some(t), Some(d)) => {
                    k8s_openapi::jiff::Timestamp::now()
                        .duration_since(t.0)
                        .as_secs_f64()
                        > f64::from(d)
                }
                _ => true,
            };
            let free = current.holder_identity.is_none();
            if !(mine || expired || free) {
                return Ok((false, current.holder_identity));
            }
            let mut next = spec;
            if mine {
                next.acquire_time = current.acquire_time;
            }
            lease.spec = Some(next);
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok((true, me)),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok((false, current.holder_identity)),
                Err(e) => Err(e),
            }
        }
    }
}

/// Keeps trying to hold the lease, publishing the result in `leader` and
/// the holder as last seen in `holder` (for the status page).
pub async fn keep(
    client: kube::Client,
    cfg: LeaseConfig,
    leader: &AtomicBool,
    holder: &Mutex<Option<String>>,
) {
    loop {
        let held = match acquire(&client, &cfg).await {
            Ok((h, who)) => {
                *holder.lock().expect("holder lock") = who;
                h
            }
            Err(e) => {
                tracing::warn!(error = %e, "lease renewal failed");
                false
            }
        };
        if held != leader.swap(held, Ordering::Relaxed) {
            tracing::info!(leader = held, lease = %cfg.name, "leadership changed");
        }
        tokio::time::sleep(cfg.renew).await;
    }
}

/// Gives the lease up (on shutdown) so a follower takes over at once.
pub async fn release(client: kube::Client, cfg: &LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    if let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await {
        if lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(cfg.identity.as_str())
        {
            if let Some(spec) = lease.spec.as_mut() {
                spec.holder_identity = None;
            }
            let _ = api.replace(&cfg.name, &PostParams::default(), &lease).await;
        }
    }
}
