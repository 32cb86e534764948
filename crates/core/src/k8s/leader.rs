//! Leader election through a coordination.k8s.io/v1 Lease, as client-go does it: the holder
//! renews the Lease every `renew_interval`; another replica takes it over only after it has
//! seen the same record unchanged for a whole `lease_duration` (measured on its own monotonic
//! clock, so clock skew between nodes does not matter). Every write carries the
//! resourceVersion it read, so two candidates can never both win.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Settings of one election.
#[derive(Debug, Clone)]
pub struct Election {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a holder keeps the Lease without renewing.
    pub lease_duration: Duration,
    /// How often the holder renews, and candidates retry.
    pub renew_interval: Duration,
}

/// The identity of this process ([`crate::k8s::identity::instance`]): the same one its Events
/// carry as `reportingInstance`.
pub fn default_identity() -> String {
    crate::k8s::identity::instance().to_owned()
}

struct Observed {
    holder: Option<String>,
    renew: Option<MicroTime>,
    at: Instant,
}

/// Runs the election until `shutdown`; the returned receiver says whether this replica leads.
/// On shutdown a leader gives the Lease up so another replica takes over at once.
pub fn spawn(
    client: kube::Client,
    election: Election,
    shutdown: CancellationToken,
) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, &election.namespace);
        let mut observed: Option<Observed> = None;
        loop {
            let leading = match try_acquire_or_renew(&api, &election, &mut observed).await {
                Ok(leading) => leading,
                Err(e) => {
                    tracing::warn!(error = %e, lease = %election.name, "leader election request failed");
                    // A leader that cannot renew must assume it lost the Lease once the
                    // duration has passed since its last successful renewal.
                    *tx.borrow()
                        && observed
                            .as_ref()
                            .is_some_and(|o| o.at.elapsed() < election.lease_duration)
                }
            };
            if *tx.borrow() != leading {
                tracing::info!(identity = %election.identity, leading, "leadership changed");
                let _ = tx.send(leading);
            }
            tokio::select! {
                () = tokio::time::sleep(election.renew_interval) => {}
                () = shutdown.cancelled() => break,
            }
        }
        if *tx.borrow() {
            let _ = tx.send(false);
            if let Err(e) = release(&api, &election).await {
                tracing::warn!(error = %e, "could not release the leader Lease");
            }
        }
    });
    (rx, task)
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

async fn try_acquire_or_renew(
    api: &Api<Lease>,
    election: &Election,
    observed: &mut Option<Observed>,
) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(&election.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(election.name.clone()),
                namespace: Some(election.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(election.identity.clone()),
                lease_duration_seconds: Some(seconds(election.lease_duration)),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => {
                *observed = Some(Observed {
                    holder: Some(election.identity.clone()),
                    renew: None,
                    at: Instant::now(),
                });
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let changed = observed
        .as_ref()
        .is_none_or(|o| o.holder != holder || o.renew != spec.renew_time);
    if changed {
        *observed = Some(Observed {
            holder: holder.clone(),
            renew: spec.renew_time.clone(),
            at: Instant::now(),
        });
    }
    let mine = holder.as_deref() == Some(election.identity.as_str());
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(election.lease_duration, Duration::from_secs);
    let expired = holder.is_none()
        || observed
            .as_ref()
            .is_some_and(|o| o.at.elapsed() >= duration);
    if !mine && !expired {
        return Ok(false);
    }
    let mut new_spec = spec.clone();
    new_spec.holder_identity = Some(election.identity.clone());
    new_spec.lease_duration_seconds = Some(seconds(election.lease_duration));
    new_spec.renew_time = Some(now());
    if !mine {
        new_spec.acquire_time = Some(now());
        new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    lease.spec = Some(new_spec);
    match api
        .replace(&election.name, &PostParams::default(), &lease)
        .await
    {
        Ok(written) => {
            let spec = written.spec.unwrap_or_default();
            *observed = Some(Observed {
                holder: spec.holder_identity,
                renew: spec.renew_time,
                at: Instant::now(),
            });
            Ok(true)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

async fn release(api: &Api<Lease>, election: &Election) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&election.name).await? else {
        return Ok(());
    };
    let mut spec = lease.spec.clone().unwrap_or_default();
    if spec.holder_identity.as_deref() != Some(election.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.renew_time = Some(now());
    lease.spec = Some(spec);
    match api
        .replace(&election.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}
