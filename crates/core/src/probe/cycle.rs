//! One probe cycle of one target: the S3 calls a backup Job depends on, each timed and
//! classified on its own.
//!
//! A cycle is `HeadBucket` (can the bucket be reached?), then the canary (can a backup be
//! written, read back byte for byte, and cleaned up?), then the listing (what is the newest
//! backup object?). Each is one [`OperationResult`], so a dashboard shows *which* step of a
//! backup would fail and why, rather than one opaque "down". The client does the timing
//! out: [`crate::s3::client`] builds it with a per-operation timeout and no retries, so each
//! call here is bounded and each failure is seen once. Streaming the canary's body back is
//! bounded by the same timeout, because the SDK's operation timeout ends when the response
//! headers arrive.
//!
//! Design choices:
//! - The listing is incremental. Buckets of long-lived clusters hold many thousands of
//!   objects, and listing them all every 30 seconds would cost more than the backups.
//!   [`TargetState`] remembers the newest object seen and the key the last page ended at;
//!   each cycle resumes after that key with `StartAfter` and reads at most `max_pages`
//!   pages. The resume key is kept apart from the newest object's key, because "newest"
//!   is by `LastModified` and need not be the last key in key order (a backup's files are
//!   uploaded in parallel); resuming after the newest key would re-read everything behind
//!   it every cycle. The price of resuming is that a key created *before* the resume key
//!   in key order is not seen. Backups of one cluster are named
//!   `<cluster>-<YYYY-MM-DD-HH:MM:SS>-full`, so their keys only grow.
//! - The canary runs about every `probe.canary.interval` (default 2 minutes, every
//!   fourth cycle at the default 30 s interval) while the target is healthy, and in every
//!   cycle otherwise: the first cycle, any cycle after one that was not `up`, and every
//!   cycle after a failed canary until one succeeds. Its three signed requests cost more
//!   CPU than the rest of the cycle together (docs/performance.md), and a write path that
//!   breaks while `HeadBucket` and the listing keep working is the rarest failure; once
//!   anything fails, the canary is back every cycle, so `up` never flaps on it. The
//!   interval is matched with half a probe interval of slack, so a cycle a little early
//!   does not push the canary back by a whole cycle: in effect the interval is rounded to
//!   the nearest whole number of probe intervals (under 1.5 probe intervals: every cycle).
//! - The canary is deleted whenever it was written, even when reading it back failed, so
//!   canaries are not left behind. A delete that fails (or a write whose outcome is
//!   unknown because it timed out) leaves the key in [`TargetState`], and later cycles
//!   delete it quietly once the bucket answers again.
//! - When `HeadBucket` fails at the transport level (timeout, connect, DNS, TLS), the
//!   other operations are not attempted: they would fail the same way, each after a full
//!   timeout, and a cycle must stay well inside the probe interval. Any other failure
//!   (denied, no bucket, throttled) still runs them, because their answers carry error
//!   codes a bodyless HEAD answer does not (see [`mod@super::classify`]). Likewise, a later
//!   call that times out or loses its connection ends the cycle's S3 calls (a canary it
//!   leaves is deleted by a later cycle), so a store that hangs after a good `HeadBucket`
//!   costs one timeout, not one per remaining call; STS then gets only what is left of the
//!   cycle's budget (`probe::once`).
//! - Credential validity: [`CycleResult::credentials_valid`] is false iff some operation
//!   failed with [`ErrorClass::InvalidCredentials`], STS `GetCallerIdentity` included (it is
//!   appended to the cycle by the scheduler, which holds the credentials). STS does not
//!   change `up`: S3 can work while STS is unreachable.

use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;

use super::classify::{ErrorClass, chain_text, classify, classify_transport};
use super::target::Target;
use crate::config::{CanaryConfig, ListConfig, ProbeConfig};

mod canary;
mod listing;
use canary::{canary, delete_leftovers};
use listing::list;

/// Canary keys that failed to be deleted and are retried in later cycles, at most. Beyond
/// this the oldest are forgotten: a bucket that refuses deletes for that long needs a
/// human, and the state must stay small.
pub const MAX_LEFTOVER_CANARIES: usize = 16;

/// An S3 operation of a cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// `HeadBucket`.
    HeadBucket,
    /// `PutObject` of the canary.
    PutObject,
    /// `GetObject` of the canary, including reading and comparing its body.
    GetObject,
    /// `DeleteObject` of the canary.
    DeleteObject,
    /// `ListObjectsV2` of the storage prefix, all pages of one cycle together.
    ListObjects,
    /// STS `GetCallerIdentity` with the target's credentials.
    GetCallerIdentity,
}

impl Operation {
    /// The S3 operations of [`run_cycle`], in order (STS is appended by the scheduler).
    pub const S3: [Self; 5] = [
        Self::HeadBucket,
        Self::PutObject,
        Self::GetObject,
        Self::DeleteObject,
        Self::ListObjects,
    ];

    /// Every operation, in the order a cycle runs them.
    pub const ALL: [Self; 6] = [
        Self::HeadBucket,
        Self::PutObject,
        Self::GetObject,
        Self::DeleteObject,
        Self::ListObjects,
        Self::GetCallerIdentity,
    ];

    /// The `operation` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HeadBucket => "head_bucket",
            Self::PutObject => "put_object",
            Self::GetObject => "get_object",
            Self::DeleteObject => "delete_object",
            Self::ListObjects => "list_objects",
            Self::GetCallerIdentity => "get_caller_identity",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded.
    Ok,
    /// It failed.
    Err {
        /// Why, as a metric label.
        class: ErrorClass,
        /// What happened, for logs and reports.
        message: String,
    },
}

/// One operation of a cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationResult {
    /// Which operation.
    pub operation: Operation,
    /// How long it took, from sending to the last byte used.
    pub duration: Duration,
    /// How it ended.
    pub outcome: Outcome,
}

impl OperationResult {
    /// Whether it succeeded.
    pub fn is_ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }

    /// Its error class, if it failed.
    pub fn error_class(&self) -> Option<ErrorClass> {
        match &self.outcome {
            Outcome::Ok => None,
            Outcome::Err { class, .. } => Some(*class),
        }
    }
}

/// What one cycle found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleResult {
    /// [`Target::id`] of the target probed.
    pub target_id: String,
    /// The operations attempted, in order. Operations that were not attempted (disabled,
    /// or skipped because an earlier one made them pointless) are absent.
    pub operations: Vec<OperationResult>,
    /// The newest backup object known after this cycle: its key and `LastModified`.
    /// `None` when listing is disabled or no object was ever seen.
    pub newest_object: Option<(String, jiff::Timestamp)>,
    /// `HeadBucket` succeeded, and the canary (unless disabled or not due) and the listing
    /// (unless disabled) succeeded too.
    pub up: bool,
    /// Whether the canary ran, and why not.
    pub canary: CanaryRun,
}

/// Whether a cycle ran the canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanaryRun {
    /// It ran; its operations are in [`CycleResult::operations`].
    Ran,
    /// It was not due: it succeeded less than `probe.canary.interval` ago and every cycle
    /// since was `up`. Its last results still stand.
    NotDue,
    /// It did not run: disabled, or skipped because the bucket was unreachable.
    NotRun,
}

impl CycleResult {
    /// The result of `operation`, if it was attempted.
    pub fn operation(&self, operation: Operation) -> Option<&OperationResult> {
        self.operations.iter().find(|o| o.operation == operation)
    }

    /// Whether the credentials were not rejected: false iff some operation failed with
    /// [`ErrorClass::InvalidCredentials`]. This is derived from S3's and STS's answers (STS is
    /// not consulted), so a cycle in which S3 never answered counts as valid.
    pub fn credentials_valid(&self) -> bool {
        !self
            .operations
            .iter()
            .any(|o| o.error_class() == Some(ErrorClass::InvalidCredentials))
    }
}

/// What a cycle does, from the `probe` section of the configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CycleOptions {
    /// The canary write-read-delete.
    pub canary: CanaryConfig,
    /// The incremental listing.
    pub list: ListConfig,
    /// STS GetCallerIdentity (run by [`crate::probe::once::probe_once`], which has the
    /// credentials).
    pub sts: bool,
    /// The STS endpoint for S3-compatible targets.
    pub sts_endpoint_url: Option<String>,
    /// The probe interval, for the slack in matching the canary's interval. Zero (the
    /// default) matches it exactly.
    pub interval: Duration,
}

impl From<&ProbeConfig> for CycleOptions {
    fn from(config: &ProbeConfig) -> Self {
        Self {
            interval: config.interval.get(),
            canary: config.canary.clone(),
            list: config.list.clone(),
            sts: config.sts,
            sts_endpoint_url: config.sts_endpoint_url.clone(),
        }
    }
}

/// Times one call of any AWS SDK client and classifies its failure.
pub async fn measure_call<T, E>(
    operation: Operation,
    call: impl Future<Output = Result<T, SdkError<E, HttpResponse>>>,
) -> OperationResult
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    measure(operation, call).await.0
}

/// The newest backup object seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewestObject {
    /// Its key.
    pub key: String,
    /// Its `LastModified`.
    pub last_modified: jiff::Timestamp,
}

/// What a target's cycles remember from one to the next. One per target; start with
/// [`TargetState::default`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetState {
    newest: Option<NewestObject>,
    resume_after: Option<String>,
    /// Listings since the last full one (see `probe.list.full_every`).
    listings_since_full: u32,
    /// While a full listing is under way, the key it has read up to (`Some(None)`: it starts
    /// at the beginning next).
    rescan: Option<Option<String>>,
    leftover_canaries: Vec<String>,
    /// When the last canary that succeeded started, if every cycle since was `up`.
    canary_verified_at: Option<Instant>,
}

impl TargetState {
    /// The newest backup object seen so far.
    pub fn newest(&self) -> Option<&NewestObject> {
        self.newest.as_ref()
    }

    /// The key the next listing resumes after.
    pub fn resume_after(&self) -> Option<&str> {
        self.resume_after.as_deref()
    }

    /// Canary keys still to be deleted.
    pub fn leftover_canaries(&self) -> &[String] {
        &self.leftover_canaries
    }

    /// Whether a cycle starting at `now` runs the canary (when it is enabled): always,
    /// unless a canary succeeded less than `canary.interval` ago (less half a probe
    /// interval of slack) and every cycle since was `up`.
    pub fn canary_due(&self, now: Instant, options: &CycleOptions) -> bool {
        self.canary_verified_at.is_none_or(|at| {
            now.saturating_duration_since(at) + options.interval / 2
                >= options.canary.interval.get()
        })
    }

    /// Makes the canary due in the next cycle: for a cycle that was not `up` without
    /// reaching [`run_cycle`] (its credentials or CA bundle could not be read).
    pub fn forget_canary_success(&mut self) {
        self.canary_verified_at = None;
    }

    /// Takes the end of a cycle that started at `started` into account.
    fn finish_cycle(&mut self, started: Instant, canary: CanaryRun, up: bool) {
        self.canary_verified_at = match (up, canary) {
            (false, _) | (true, CanaryRun::NotRun) => None,
            (true, CanaryRun::Ran) => Some(started),
            (true, CanaryRun::NotDue) => self.canary_verified_at,
        };
    }

    /// Takes one listed object into account: `key` moves the resume point forward (keys
    /// are listed in ascending order), and becomes the newest object when its
    /// `LastModified` is at least the newest one's. Ties go to the later key, so the
    /// result does not depend on where a cycle's pages happened to end.
    pub(crate) fn observe(
        &mut self,
        key: &str,
        last_modified: Option<jiff::Timestamp>,
        ignored_prefix: &str,
    ) {
        if self.resume_after.as_deref().is_none_or(|r| key > r) {
            self.resume_after = Some(key.to_owned());
        }
        // Canaries are Backstop's own objects, not backups.
        if !ignored_prefix.is_empty() && key.starts_with(ignored_prefix) {
            return;
        }
        let Some(last_modified) = last_modified else {
            return;
        };
        let newer = self.newest.as_ref().is_none_or(|n| {
            last_modified > n.last_modified
                || (last_modified == n.last_modified && key >= n.key.as_str())
        });
        if newer {
            self.newest = Some(NewestObject {
                key: key.to_owned(),
                last_modified,
            });
        }
    }

    fn remember_canary(&mut self, key: String) {
        if !self.leftover_canaries.contains(&key) {
            self.leftover_canaries.push(key);
        }
        if self.leftover_canaries.len() > MAX_LEFTOVER_CANARIES {
            let excess = self.leftover_canaries.len() - MAX_LEFTOVER_CANARIES;
            for key in self.leftover_canaries.drain(..excess) {
                tracing::warn!(%key, "giving up deleting a canary object; delete it by hand");
            }
        }
    }
}

/// The key prefix of `target`'s canaries: `<storage prefix><canary key_prefix>`.
pub fn canary_prefix(target: &Target, canary: &CanaryConfig) -> String {
    format!("{}{}", target.prefix(), canary.key_prefix)
}

/// Runs one cycle of `target` with `client` (built for the target by
/// [`crate::s3::client::client`]), updating `state`.
pub async fn run_cycle(
    client: &Client,
    target: &Target,
    options: &CycleOptions,
    state: &mut TargetState,
) -> CycleResult {
    let bucket = target.bucket();
    let budget = client
        .config()
        .timeout_config()
        .and_then(|t| t.operation_timeout());
    let mut operations = Vec::with_capacity(Operation::ALL.len());
    let started = Instant::now();

    let (head, _) = measure(
        Operation::HeadBucket,
        client.head_bucket().bucket(bucket).send(),
    )
    .await;
    let head_ok = head.is_ok();
    let unreachable = matches!(
        head.error_class(),
        Some(ErrorClass::Timeout | ErrorClass::Connect | ErrorClass::Dns | ErrorClass::Tls)
    );
    operations.push(head);

    // Disabled or skipped parts do not count against `up`; a skip only happens after
    // `HeadBucket` failed, which already makes the target down.
    let mut canary_ok = true;
    let mut list_ok = true;
    let mut canary_run = CanaryRun::NotRun;
    if !unreachable {
        if head_ok {
            delete_leftovers(client, bucket, state).await;
        }
        if options.canary.enabled {
            // After a failed (but answered) HeadBucket the canary always runs: its answers
            // carry the error codes a bodyless HEAD answer does not.
            if head_ok && !state.canary_due(started, options) {
                canary_run = CanaryRun::NotDue;
            } else {
                let results = canary(client, target, &options.canary, budget, state).await;
                canary_ok = results.len() == 3 && results.iter().all(OperationResult::is_ok);
                operations.extend(results);
                canary_run = CanaryRun::Ran;
            }
        }
        // A call the store stopped answering ends the cycle's S3 calls, like an unreachable
        // HeadBucket: the listing would wait out another timeout for the same answer.
        let stopped = operations.iter().any(ends_cycle);
        if options.list.enabled && !stopped {
            let result = list(client, target, options, state).await;
            list_ok = result.is_ok();
            operations.push(result);
        }
    }
    let up = head_ok && canary_ok && list_ok;
    state.finish_cycle(started, canary_run, up);

    CycleResult {
        target_id: target.id(),
        operations,
        newest_object: options
            .list
            .enabled
            .then(|| {
                state
                    .newest
                    .as_ref()
                    .map(|n| (n.key.clone(), n.last_modified))
            })
            .flatten(),
        up,
        canary: canary_run,
    }
}

/// Whether `result` failed at the transport level (a timeout, a lost connection): the store
/// stopped answering, and the cycle's remaining S3 calls are not attempted. Everything else
/// (denied, throttled, a server error) came with an answer, so the next call may too.
fn ends_cycle(result: &OperationResult) -> bool {
    matches!(
        result.error_class(),
        Some(ErrorClass::Timeout | ErrorClass::Connect)
    )
}

/// Times `call` and classifies its failure.
async fn measure<T, E>(
    operation: Operation,
    call: impl Future<Output = Result<T, SdkError<E, HttpResponse>>>,
) -> (OperationResult, Option<T>)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let started = Instant::now();
    let result = call.await;
    let duration = started.elapsed();
    match result {
        Ok(output) => (
            OperationResult {
                operation,
                duration,
                outcome: Outcome::Ok,
            },
            Some(output),
        ),
        Err(error) => {
            let (class, message) = classify(&error);
            tracing::debug!(%operation, %class, %message, "S3 probe operation failed");
            (
                OperationResult {
                    operation,
                    duration,
                    outcome: Outcome::Err { class, message },
                },
                None,
            )
        }
    }
}

#[cfg(test)]
mod tests;
