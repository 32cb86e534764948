//! Fault injection for the API simulator: the next N requests matching a verb and resource
//! fail the way a struggling API server fails (500, 429 with Retry-After, 409), hang, or are
//! carried out and then fail (the write committed, the answer was lost).

use std::sync::{Arc, Mutex, PoisonError};

use super::status::ApiError;

/// How a matching request fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiFault {
    /// 500 InternalError.
    InternalError,
    /// 429 TooManyRequests with `Retry-After: seconds`.
    TooManyRequests(u32),
    /// 409 Conflict, as if someone else had just written the object.
    Conflict,
    /// Never answer (the client's timeout decides).
    Hang,
    /// 504 Timeout, as the API server's request timeout answers.
    Timeout,
    /// Carry the request out, then fail the answer with the inner fault: a 504 when the API
    /// server's request timeout fires after etcd committed a write, a 500, or a connection
    /// that drops (`Hang`: the client's timeout decides). The client cannot tell this from a
    /// write that never happened, so it is the fault that tests whether retrying a step is
    /// safe.
    AfterCommit(Box<ApiFault>),
}

/// A rule: which requests, how many, and how they fail.
#[derive(Debug, Clone)]
pub struct FaultRule {
    /// RBAC verb to match (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`);
    /// `None` matches every verb.
    pub verb: Option<String>,
    /// Resource plural to match (with `/status` for the status subresource); `None` matches
    /// every resource.
    pub resource: Option<String>,
    /// How many more requests this rule fails.
    pub remaining: u32,
    /// The failure.
    pub fault: ApiFault,
}

/// What the handler should do with a request.
#[derive(Debug)]
pub enum Injected {
    /// Answer with this error.
    Fail(ApiError),
    /// Never answer.
    Hang,
    /// Carry the request out, then answer with this error.
    FailAfter(ApiError),
    /// Carry the request out, then never answer.
    HangAfter,
}

/// The active rules; cheap to clone and share.
#[derive(Debug, Clone, Default)]
pub struct ApiFaults {
    rules: Arc<Mutex<Vec<FaultRule>>>,
}

impl ApiFaults {
    /// Adds a rule.
    pub fn inject(&self, rule: FaultRule) {
        self.lock().push(rule);
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Consumes one use of the first matching rule.
    pub fn check(&self, verb: &str, resource: &str, name: &str) -> Option<Injected> {
        let mut rules = self.lock();
        let index = rules.iter().position(|r| {
            r.remaining > 0
                && r.verb.as_deref().is_none_or(|v| v == verb)
                && r.resource.as_deref().is_none_or(|res| res == resource)
        })?;
        let rule = &mut rules[index];
        rule.remaining -= 1;
        let fault = rule.fault.clone();
        rules.retain(|r| r.remaining > 0);
        Some(match fault {
            ApiFault::AfterCommit(inner) => match failure(&inner, resource, name) {
                Some(error) => Injected::FailAfter(error),
                None => Injected::HangAfter,
            },
            other => failure(&other, resource, name).map_or(Injected::Hang, Injected::Fail),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<FaultRule>> {
        self.rules.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The error a fault answers with; `None` for one that never answers.
fn failure(fault: &ApiFault, resource: &str, name: &str) -> Option<ApiError> {
    match fault {
        ApiFault::InternalError => Some(ApiError::internal("injected fault")),
        ApiFault::TooManyRequests(s) => Some(ApiError::too_many_requests(*s)),
        ApiFault::Conflict => Some(ApiError::conflict("", resource, name)),
        ApiFault::Timeout => Some(ApiError::timeout(
            "Timeout: request did not complete within the allotted timeout",
        )),
        ApiFault::Hang => None,
        // Nested: the outer commit already happened; fail the answer as the inner one would.
        ApiFault::AfterCommit(inner) => failure(inner, resource, name),
    }
}
