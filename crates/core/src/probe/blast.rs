//! The blast radius of a failing target: the runbook's "check the provider's service health",
//! answered from what Backstop already probes. A status page says whether a service is down
//! somewhere; Backstop knows which of *its* targets fail, in which regions, at which
//! endpoints, with which credentials, and why. Comparing a failing target with every other
//! probed target gives the narrowest scope that explains the failure:
//!
//! 1. the target passes: [`Scope::Healthy`];
//! 2. every probed target fails (two or more): [`Scope::Everywhere`], most likely Backstop's
//!    own network or DNS, or a provider-wide outage;
//! 3. S3 refused the credentials: [`Scope::Credentials`];
//! 4. the target has an S3-compatible endpoint and every target at that endpoint fails (two
//!    or more): [`Scope::Endpoint`];
//! 5. every target in its region fails, at least one other bucket there shares the failure,
//!    and a target elsewhere passes: [`Scope::Region`] (other prefixes of the same bucket are
//!    no evidence about the region);
//! 6. otherwise only this target is known to fail: [`Scope::Target`] (the bucket, its
//!    prefix, its policy). When no other probed target shares its region, the verdict says
//!    that the region cannot be told apart from the bucket.
//!
//! Pure: the prober's latest result per target in, a verdict out.

use std::collections::BTreeMap;

use super::classify::ErrorClass;
use super::target::TargetKey;

/// How far a failure reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// The target passes.
    Healthy,
    /// This target only (its bucket, prefix or policy).
    Target,
    /// Its credentials.
    Credentials,
    /// Every target at its S3-compatible endpoint.
    Endpoint,
    /// Every target in its region.
    Region,
    /// Every target Backstop probes.
    Everywhere,
}

impl Scope {
    /// Every scope, for exporting one-hot gauges.
    pub const ALL: [Self; 6] = [
        Self::Healthy,
        Self::Target,
        Self::Credentials,
        Self::Endpoint,
        Self::Region,
        Self::Everywhere,
    ];

    /// The `scope` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Target => "target",
            Self::Credentials => "credentials",
            Self::Endpoint => "endpoint",
            Self::Region => "region",
            Self::Everywhere => "everywhere",
        }
    }
}

/// The prober's latest result for one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// What the target is.
    pub key: TargetKey,
    /// Whether its last cycle passed.
    pub up: bool,
    /// The error classes of its last cycle's failed operations.
    pub classes: Vec<ErrorClass>,
}

/// The verdict for target `id` among `all`, with a sentence saying why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// How far the failure reaches.
    pub scope: Scope,
    /// Why, for Events and `backstop status`.
    pub reason: String,
}

/// Judges target `id` against every other target in `all` (see the module's rules); `None`
/// when `id` was never probed.
pub fn verdict(id: &str, all: &BTreeMap<String, Seen>) -> Option<Verdict> {
    let me = all.get(id)?;
    let others: Vec<&Seen> = all
        .iter()
        .filter(|(other, _)| other.as_str() != id)
        .map(|(_, seen)| seen)
        .collect();
    let say = |scope: Scope, reason: String| Some(Verdict { scope, reason });
    if me.up {
        return say(Scope::Healthy, "passes its probes".to_owned());
    }
    if !others.is_empty() && others.iter().all(|s| !s.up) {
        return say(
            Scope::Everywhere,
            format!(
                "every one of the {} targets Backstop probes fails: Backstop's own network or \
                 DNS, or a provider-wide outage",
                others.len() + 1
            ),
        );
    }
    if me.classes.contains(&ErrorClass::InvalidCredentials) {
        return say(
            Scope::Credentials,
            "S3 refuses its credentials (invalid or expired keys)".to_owned(),
        );
    }
    if let Some(endpoint) = &me.key.endpoint_url {
        let same: Vec<&&Seen> = others
            .iter()
            .filter(|s| s.key.endpoint_url.as_ref() == Some(endpoint))
            .collect();
        if !same.is_empty() && same.iter().all(|s| !s.up) {
            return say(
                Scope::Endpoint,
                format!(
                    "every one of the {} targets at endpoint {endpoint} fails",
                    same.len() + 1
                ),
            );
        }
    }
    let region = &me.key.region;
    // Another prefix of the same bucket tells nothing about the region.
    let same_region: Vec<&&Seen> = others
        .iter()
        .filter(|s| {
            &s.key.region == region
                && s.key.endpoint_url == me.key.endpoint_url
                && s.key.bucket != me.key.bucket
        })
        .collect();
    if !same_region.is_empty() && same_region.iter().all(|s| !s.up) {
        return say(
            Scope::Region,
            format!(
                "every one of the {} targets in region {region} fails while targets elsewhere pass",
                same_region.len() + 1
            ),
        );
    }
    if same_region.is_empty() {
        return say(
            Scope::Target,
            format!(
                "fails while targets elsewhere pass; no other probed target is in region \
                 {region}, so the region cannot be told apart from the bucket"
            ),
        );
    }
    say(
        Scope::Target,
        format!(
            "fails alone: {} other target(s) in region {region} pass (the bucket, its prefix or \
             its policy)",
            same_region.len()
        ),
    )
}

#[cfg(test)]
mod tests;
