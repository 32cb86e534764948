//! One probe cycle with the credentials the backup Job would use right now: the Secret (or
//! the ambient chain) read fresh, the endpoint's trust, then [`super::cycle::run_cycle`] and
//! STS. Shared by the scheduler, `backstop check` and the playbooks' fresh checks.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::probe::classify::{ErrorClass, classify_ambient};
use crate::probe::cycle::{
    CanaryRun, CycleOptions, CycleResult, Operation, OperationResult, Outcome, TargetState,
    measure_call, run_cycle,
};
use crate::probe::target::{CredentialSource, Target};
use crate::s3::client::{self as s3client, Timeouts};
use crate::s3::tls::{self as s3tls, Trust};

/// One cycle with the credentials the backup Job would use right now. Without a Kubernetes
/// `client`, a target whose credentials or CA bundle live in a Secret is reported
/// unavailable (and why); one on the ambient credential chain is probed as usual.
pub async fn probe_once(
    target: &Target,
    client: Option<&kube::Client>,
    options: &CycleOptions,
    timeouts: Timeouts,
    state: &mut TargetState,
) -> CycleResult {
    let result = probe_with_current_credentials(target, client, options, timeouts, state).await;
    if !result.up {
        // Also when the cycle never reached S3 (no credentials, no CA bundle): whatever
        // broke, the canary must run again as soon as it is mended.
        state.forget_canary_success();
    }
    result
}

async fn probe_with_current_credentials(
    target: &Target,
    client: Option<&kube::Client>,
    options: &CycleOptions,
    timeouts: Timeouts,
    state: &mut TargetState,
) -> CycleResult {
    let endpoint = target.endpoint();
    let credentials = match &target.key.credentials {
        CredentialSource::Secret { namespace, name } => {
            let Some(client) = client else {
                return unavailable(
                    target,
                    ErrorClass::InvalidCredentials,
                    format!(
                        "the credentials are in Secret {namespace}/{name}, and no Kubernetes cluster is reachable to read it"
                    ),
                );
            };
            let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
            match secrets.get_opt(name).await {
                Ok(Some(secret)) => match s3client::credentials_from_secret(&secret) {
                    Some(creds) => creds.to_sdk(),
                    None => {
                        return unavailable(
                            target,
                            ErrorClass::InvalidCredentials,
                            format!(
                                "Secret {namespace}/{name} lacks AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY"
                            ),
                        );
                    }
                },
                Ok(None) => {
                    return unavailable(
                        target,
                        ErrorClass::InvalidCredentials,
                        format!("Secret {namespace}/{name} not found"),
                    );
                }
                Err(e) => {
                    return unavailable(
                        target,
                        ErrorClass::InvalidCredentials,
                        format!("reading Secret {namespace}/{name}: {e}"),
                    );
                }
            }
        }
        // Asked here, once, so the chain's own round trips (STS for IRSA, the Pod Identity
        // agent, IMDS) are never counted in an S3 operation's latency.
        CredentialSource::Ambient => {
            match s3client::resolve_ambient(&endpoint.region, timeouts.operation).await {
                Ok(creds) => creds,
                Err(e) => {
                    let (class, message) = classify_ambient(&e);
                    return unavailable(target, class, message);
                }
            }
        }
    };
    let http = match trust_of(target, client).await {
        Ok(trust) => match s3tls::http_client(&trust, timeouts.connect) {
            Ok(http) => http,
            Err(e) => return unavailable(target, ErrorClass::Tls, e.to_string()),
        },
        Err(message) => return unavailable(target, ErrorClass::Tls, message),
    };
    let s3 = s3client::client_with(&endpoint, credentials.clone(), timeouts, http);
    // One budget for the whole cycle, `probe.timeout`: a hung store must not cost it twice
    // (S3's timeout, then STS's). STS gets what S3 left of it.
    let started = std::time::Instant::now();
    let budget = timeouts.operation;
    let mut result = run_cycle(&s3, target, options, state).await;
    let left = budget.saturating_sub(started.elapsed());
    // STS answers for AWS; an S3-compatible store gets it only with an STS endpoint of its
    // own, since most have none.
    let sts_endpoint = options.sts_endpoint_url.as_deref();
    if options.sts && (target.endpoint_url().is_none() || sts_endpoint.is_some()) {
        // The storage's caBundle and verifyTLS are about its S3 endpoint; STS is checked
        // against the system's roots.
        let call = match s3tls::http_client(&Trust::Default, timeouts.connect) {
            Ok(_) if left.is_zero() => budget_spent(&result, budget),
            Ok(http) => {
                let sts = s3client::sts_client(
                    target.region(),
                    sts_endpoint,
                    credentials,
                    Timeouts {
                        connect: timeouts.connect.min(left),
                        operation: left,
                    },
                    http,
                );
                measure_call(
                    Operation::GetCallerIdentity,
                    sts.get_caller_identity().send(),
                )
                .await
            }
            Err(e) => OperationResult {
                operation: Operation::GetCallerIdentity,
                duration: Duration::ZERO,
                outcome: Outcome::Err {
                    class: ErrorClass::Tls,
                    message: e.to_string(),
                },
            },
        };
        result.operations.push(call);
    }
    result
}

/// The STS call a cycle did not make because S3 used up its budget, naming the call that
/// took longest.
fn budget_spent(result: &CycleResult, budget: Duration) -> OperationResult {
    let spent_by = result
        .operations
        .iter()
        .max_by_key(|o| o.duration)
        .map_or("the S3 calls", |o| o.operation.as_str());
    OperationResult {
        operation: Operation::GetCallerIdentity,
        duration: Duration::ZERO,
        outcome: Outcome::Err {
            class: ErrorClass::Timeout,
            message: format!(
                "not attempted: the cycle's budget (probe.timeout, {budget:?}) was used up, \
                 mostly by {spent_by}"
            ),
        },
    }
}

/// How the target's certificate is checked: its CA bundle read from the Secret now (the
/// bundle may be rotated like credentials are), no check, or the system roots.
async fn trust_of(target: &Target, client: Option<&kube::Client>) -> Result<Trust, String> {
    if !target.key.verify_tls {
        return Ok(Trust::Insecure);
    }
    let Some(ca) = &target.key.ca_bundle else {
        return Ok(Trust::Default);
    };
    let (namespace, name, key) = (&ca.namespace, &ca.name, &ca.key);
    let Some(client) = client else {
        return Err(format!(
            "the CA bundle is in Secret {namespace}/{name}, and no Kubernetes cluster is reachable to read it"
        ));
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ca.namespace);
    match secrets.get_opt(name).await {
        Ok(Some(secret)) => secret
            .data
            .and_then(|mut data| data.remove(key))
            .map(|bytes| Trust::CaBundle(bytes.0))
            .ok_or_else(|| format!("CA bundle Secret {namespace}/{name} has no key {key}")),
        Ok(None) => Err(format!("CA bundle Secret {namespace}/{name} not found")),
        Err(e) => Err(format!("reading CA bundle Secret {namespace}/{name}: {e}")),
    }
}

/// A cycle that could not start because the credentials or the CA bundle are unusable:
/// reported on HeadBucket, the first operation the backup Job would fail.
pub(crate) fn unavailable(target: &Target, class: ErrorClass, message: String) -> CycleResult {
    CycleResult {
        target_id: target.id(),
        operations: vec![OperationResult {
            operation: Operation::HeadBucket,
            duration: Duration::ZERO,
            outcome: Outcome::Err { class, message },
        }],
        newest_object: None,
        up: false,
        canary: CanaryRun::NotRun,
    }
}
