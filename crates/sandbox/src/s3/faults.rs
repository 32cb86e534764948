//! Fault rules: what is broken, where, and the handle that switches them at run time.
//!
//! One [`Faults`] handle is shared by every region server, the S3 access hook and the
//! test or benchmark driving the sandbox. Rules live in one mutex-guarded list that is
//! only ever held for a quick scan, never across an await, so the request path stays
//! cheap. Connection faults change sockets, which only the region's accept loop owns, so
//! every change bumps a generation that the accept loops watch; [`Faults::set`] and
//! [`Faults::clear`] then wait until each region acknowledged that generation. That wait
//! is what lets a caller set `Refuse` and be sure the very next connect fails, instead of
//! racing the accept loop.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use super::Error;

/// What goes wrong when a [`Rule`] matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Connection fault: the region's endpoint refuses connections. The listener is
    /// closed (so new connects get `ECONNREFUSED`) and open keep-alive connections are
    /// closed; the same port is bound again when the rule is cleared.
    Refuse,
    /// Connection fault: the region's endpoint accepts connections and reads requests but
    /// never answers. Requests held this way are dropped, without an answer, when the
    /// rule is cleared.
    Hang,
    /// Request fault: the request is delayed by this long and then handled normally.
    Latency(Duration),
    /// Request fault: 503 `SlowDown`, S3's throttling answer.
    SlowDown,
    /// Request fault: 503 `ServiceUnavailable`.
    ServiceUnavailable,
    /// Request fault: 500 `InternalError`.
    InternalError,
    /// Request fault: 403 `AccessDenied`, as for a missing IAM or bucket-policy grant.
    AccessDenied,
    /// Request fault: 404 `NoSuchBucket`, as if the bucket had been deleted.
    NoSuchBucket,
    /// Request fault: the request's credentials are rejected as AWS rejects an unknown or
    /// deactivated access key: 403 `InvalidAccessKeyId`.
    InvalidCredentials,
}

impl Fault {
    /// Whether the fault acts on sockets (a whole region) rather than on single requests.
    pub(crate) fn is_connection_fault(self) -> bool {
        matches!(self, Self::Refuse | Self::Hang)
    }
}

/// Where a [`Fault`] applies: every `None` field matches anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The region whose endpoint misbehaves; `None` for every region.
    pub region: Option<String>,
    /// The bucket whose requests fail; `None` for every bucket (and bucket-less requests).
    /// Must be `None` for connection faults.
    pub bucket: Option<String>,
    /// The s3s operation name whose requests fail, such as `"PutObject"`, `"HeadBucket"`
    /// or `"ListObjectsV2"`; `None` for every operation. Must be `None` for connection
    /// faults.
    pub operation: Option<String>,
    /// What goes wrong.
    pub fault: Fault,
}

impl Rule {
    /// A rule applying `fault` to every region, bucket and operation.
    #[must_use]
    pub fn new(fault: Fault) -> Self {
        Self {
            region: None,
            bucket: None,
            operation: None,
            fault,
        }
    }

    /// Narrows the rule to one region.
    #[must_use]
    pub fn in_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Narrows the rule to one bucket.
    #[must_use]
    pub fn on_bucket(mut self, bucket: impl Into<String>) -> Self {
        self.bucket = Some(bucket.into());
        self
    }

    /// Narrows the rule to one operation (an s3s operation name such as `"PutObject"`).
    #[must_use]
    pub fn on_operation(mut self, operation: impl Into<String>) -> Self {
        self.operation = Some(operation.into());
        self
    }

    fn matches_region(&self, region: &str) -> bool {
        self.region.as_deref().is_none_or(|r| r == region)
    }

    fn matches_request(&self, region: &str, bucket: Option<&str>, operation: &str) -> bool {
        self.matches_region(region)
            && self.bucket.as_deref().is_none_or(|b| Some(b) == bucket)
            && self.operation.as_deref().is_none_or(|o| o == operation)
    }
}

/// Identifies a rule that was set, to clear it later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleId(u64);

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule-{}", self.0)
    }
}

/// A rule currently in force, as [`Faults::list`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveRule {
    /// The id [`Faults::set`] returned.
    pub id: RuleId,
    /// The rule itself.
    pub rule: Rule,
    /// How many requests the rule acted on: delayed, answered with an error or held by
    /// `Hang`. `Refuse` acts before any request exists, so its count stays 0.
    pub hits: u64,
}

/// What the request path must do to one request, as decided by the rules in force.
#[derive(Debug, Default)]
pub(crate) struct RequestVerdict {
    /// The sum of every matching `Latency` rule.
    pub(crate) latency: Duration,
    /// The first matching error rule, in the order the rules were set.
    pub(crate) error: Option<Fault>,
}

/// A region server's acknowledgement of a rule generation.
#[derive(Debug, Clone, Default)]
pub(crate) struct Applied {
    generation: u64,
    bind_error: Option<String>,
}

/// The generation a stopped region server acknowledges, so nobody waits for it forever.
const STOPPED: u64 = u64::MAX;

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    rules: Vec<ActiveRule>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    generation: watch::Sender<u64>,
    applied: BTreeMap<String, watch::Sender<Applied>>,
}

/// The cheap, cloneable switchboard of the sandbox's faults.
///
/// Rules are checked in the order they were set: every matching `Latency` adds its delay,
/// and the first matching error fault answers the request. A region refuses connections
/// while any `Refuse` rule names it (or no region), and hangs while any `Hang` rule does;
/// `Refuse` wins over `Hang`.
#[derive(Debug, Clone)]
pub struct Faults {
    inner: Arc<Inner>,
}

impl Faults {
    /// A switchboard with no rules for the named regions.
    pub(crate) fn new<'a>(regions: impl IntoIterator<Item = &'a str>) -> Self {
        let applied = regions
            .into_iter()
            .map(|r| (r.to_owned(), watch::Sender::new(Applied::default())))
            .collect();
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                generation: watch::Sender::new(0),
                applied,
            }),
        }
    }

    /// Puts `rule` in force and returns its id once every region server applied it.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownRegion`] when the rule names a region the sandbox does not run,
    /// [`Error::ScopedConnectionFault`] when a connection fault names a bucket or an
    /// operation, and [`Error::Rebind`] when a region could not take its port back.
    pub async fn set(&self, rule: Rule) -> Result<RuleId, Error> {
        if let Some(region) = &rule.region
            && !self.inner.applied.contains_key(region)
        {
            return Err(Error::UnknownRegion(region.clone()));
        }
        if rule.fault.is_connection_fault() && (rule.bucket.is_some() || rule.operation.is_some()) {
            return Err(Error::ScopedConnectionFault(rule.fault));
        }
        let id = {
            let mut state = self.lock();
            let id = RuleId(state.next_id);
            state.next_id += 1;
            state.rules.push(ActiveRule { id, rule, hits: 0 });
            id
        };
        self.publish().await?;
        Ok(id)
    }

    /// The rules in force, in the order they were set.
    #[must_use]
    pub fn list(&self) -> Vec<ActiveRule> {
        self.lock().rules.clone()
    }

    /// Lifts one rule, once every region server applied the change; `false` if no rule
    /// had that id.
    ///
    /// # Errors
    ///
    /// [`Error::Rebind`] when a region refused connections and could not take its port
    /// back; it keeps retrying in the background.
    pub async fn clear(&self, id: RuleId) -> Result<bool, Error> {
        let removed = {
            let mut state = self.lock();
            let before = state.rules.len();
            state.rules.retain(|r| r.id != id);
            state.rules.len() != before
        };
        if removed {
            self.publish().await?;
        }
        Ok(removed)
    }

    /// Lifts every rule, restoring normal service everywhere.
    ///
    /// # Errors
    ///
    /// As for [`Faults::clear`].
    pub async fn clear_all(&self) -> Result<(), Error> {
        self.lock().rules.clear();
        self.publish().await
    }

    /// Announces a rule change and waits until every region server applied it.
    async fn publish(&self) -> Result<(), Error> {
        let mut target = 0;
        self.inner.generation.send_modify(|g| {
            *g += 1;
            target = *g;
        });
        for (region, applied) in &self.inner.applied {
            let mut rx = applied.subscribe();
            // The sender lives in `self`, so this cannot fail; a stopped region
            // acknowledges every generation.
            let ack = match rx.wait_for(|a| a.generation >= target).await {
                Ok(ack) => ack.clone(),
                Err(_) => continue,
            };
            if let Some(message) = ack.bind_error {
                return Err(Error::Rebind {
                    region: region.clone(),
                    message,
                });
            }
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the rule list half-written (every
        // mutation is a single push, retain or clear), so a poisoned lock is still sound.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A receiver that sees every rule change.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }

    /// Records that `region` applied `generation`, with the error of a failed rebind.
    pub(crate) fn acknowledge(&self, region: &str, generation: u64, bind_error: Option<String>) {
        if let Some(applied) = self.inner.applied.get(region) {
            applied.send_replace(Applied {
                generation,
                bind_error,
            });
        }
    }

    /// Records that `region`'s server stopped, so no rule change waits for it.
    pub(crate) fn acknowledge_stopped(&self, region: &str) {
        self.acknowledge(region, STOPPED, None);
    }

    /// Whether `region` must refuse connections now.
    pub(crate) fn is_refused(&self, region: &str) -> bool {
        self.lock()
            .rules
            .iter()
            .any(|r| r.rule.fault == Fault::Refuse && r.rule.matches_region(region))
    }

    /// Whether a request to `region` must hang now; counts a hit on the first `Hang`
    /// rule when `count` is set.
    pub(crate) fn is_hung(&self, region: &str, count: bool) -> bool {
        let mut state = self.lock();
        let hang = state
            .rules
            .iter_mut()
            .find(|r| r.rule.fault == Fault::Hang && r.rule.matches_region(region));
        match hang {
            Some(active) => {
                if count {
                    active.hits += 1;
                }
                true
            }
            None => false,
        }
    }

    /// Decides what happens to one request and counts a hit on every rule that acts.
    pub(crate) fn judge(
        &self,
        region: &str,
        bucket: Option<&str>,
        operation: &str,
    ) -> RequestVerdict {
        let mut verdict = RequestVerdict::default();
        let mut state = self.lock();
        for active in &mut state.rules {
            if !active.rule.matches_request(region, bucket, operation) {
                continue;
            }
            match active.rule.fault {
                Fault::Refuse | Fault::Hang => {}
                Fault::Latency(delay) => {
                    verdict.latency = verdict.latency.saturating_add(delay);
                    active.hits += 1;
                }
                fault => {
                    if verdict.error.is_none() {
                        verdict.error = Some(fault);
                        active.hits += 1;
                    }
                }
            }
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_matching_treats_none_as_wildcard() {
        let rule = Rule::new(Fault::SlowDown)
            .on_bucket("a")
            .on_operation("PutObject");
        assert!(rule.matches_request("us-west-2", Some("a"), "PutObject"));
        assert!(!rule.matches_request("us-west-2", Some("b"), "PutObject"));
        assert!(!rule.matches_request("us-west-2", Some("a"), "HeadBucket"));
        assert!(!rule.matches_request("us-west-2", None, "PutObject"));
        let regional = Rule::new(Fault::SlowDown).in_region("us-east-1");
        assert!(regional.matches_request("us-east-1", None, "ListBuckets"));
        assert!(!regional.matches_request("us-west-2", None, "ListBuckets"));
    }

    #[tokio::test]
    async fn judge_sums_latency_and_takes_first_error() {
        let faults = Faults::new(["r"]);
        faults.acknowledge_stopped("r");
        let slow = faults
            .set(Rule::new(Fault::Latency(Duration::from_millis(5))))
            .await
            .unwrap();
        faults
            .set(Rule::new(Fault::Latency(Duration::from_millis(7))))
            .await
            .unwrap();
        let first = faults.set(Rule::new(Fault::AccessDenied)).await.unwrap();
        let second = faults.set(Rule::new(Fault::InternalError)).await.unwrap();
        let verdict = faults.judge("r", Some("b"), "GetObject");
        assert_eq!(verdict.latency, Duration::from_millis(12));
        assert_eq!(verdict.error, Some(Fault::AccessDenied));
        let hits: BTreeMap<RuleId, u64> = faults.list().iter().map(|a| (a.id, a.hits)).collect();
        assert_eq!(hits[&slow], 1);
        assert_eq!(hits[&first], 1);
        assert_eq!(hits[&second], 0);
    }

    #[tokio::test]
    async fn set_rejects_unknown_region_and_scoped_connection_faults() {
        let faults = Faults::new(["r"]);
        faults.acknowledge_stopped("r");
        assert!(matches!(
            faults.set(Rule::new(Fault::Hang).in_region("nowhere")).await,
            Err(Error::UnknownRegion(r)) if r == "nowhere"
        ));
        assert!(matches!(
            faults.set(Rule::new(Fault::Refuse).on_bucket("b")).await,
            Err(Error::ScopedConnectionFault(Fault::Refuse))
        ));
        assert!(faults.list().is_empty());
    }

    #[tokio::test]
    async fn clear_reports_whether_the_rule_existed() {
        let faults = Faults::new(["r"]);
        faults.acknowledge_stopped("r");
        let id = faults.set(Rule::new(Fault::Refuse)).await.unwrap();
        assert!(faults.is_refused("r"));
        assert!(faults.clear(id).await.unwrap());
        assert!(!faults.clear(id).await.unwrap());
        assert!(!faults.is_refused("r"));
    }
}
