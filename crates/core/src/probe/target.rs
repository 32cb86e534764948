//! What is probed: one S3 backup target, and the clusters that back up to it.
//!
//! A target is identified by everything that changes what a probe sees — bucket, prefix,
//! region, endpoint, addressing style, TLS verification and where the credentials come
//! from — and by nothing else. Several clusters (or storages of one cluster) that write to
//! the same place with the same credentials are therefore one target, probed once, with
//! every one of them listed as a [`User`]. The `target` metric label is [`Target::id`], a
//! readable rendering of that identity, so the dedupe and the label can never disagree.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::config::StaticTarget;
use crate::pxc::{S3Storage, Storage};
use crate::s3::client::Endpoint;

/// The region assumed when a storage names none. xbcloud, the operator's uploader, falls
/// back to `us-east-1` as well, so the probe signs exactly as the backup Job would.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Where a target's credentials come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CredentialSource {
    /// A Kubernetes Secret with `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    Secret {
        /// Namespace of the Secret.
        namespace: String,
        /// Name of the Secret.
        name: String,
    },
    /// The ambient AWS credential chain (environment, web identity/IRSA, profile, IMDS).
    Ambient,
}

/// A Secret key holding the PEM CA bundle a target's certificate is checked against.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CaBundleRef {
    /// Namespace of the Secret (the cluster's).
    pub namespace: String,
    /// Name of the Secret.
    pub name: String,
    /// Key inside the Secret.
    pub key: String,
}

/// Something that backs up to a target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum User {
    /// A storage of a PerconaXtraDBCluster's `spec.backup.storages`.
    Storage {
        /// Namespace of the cluster.
        namespace: String,
        /// Name of the cluster.
        cluster: String,
        /// Name of the storage entry.
        storage: String,
    },
    /// A target listed in the configuration's `targets[]`.
    Static {
        /// Its configured name.
        name: String,
    },
}

impl User {
    /// The cluster's namespace; empty for a static target.
    pub fn namespace(&self) -> &str {
        match self {
            Self::Storage { namespace, .. } => namespace,
            Self::Static { .. } => "",
        }
    }

    /// The cluster's name; empty for a static target.
    pub fn cluster(&self) -> &str {
        match self {
            Self::Storage { cluster, .. } => cluster,
            Self::Static { .. } => "",
        }
    }

    /// The storage entry's name; a static target's configured name, so that the
    /// `target_info` series of a static target still says which entry it is.
    pub fn storage(&self) -> &str {
        match self {
            Self::Storage { storage, .. } => storage,
            Self::Static { name } => name,
        }
    }
}

/// Why a storage cannot be probed as an S3 target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The storage is not of type `s3` (filesystem, azure, or no type).
    #[error("storage {storage} of {namespace}/{cluster} is not an S3 storage")]
    NotS3 {
        /// Namespace of the cluster.
        namespace: String,
        /// Name of the cluster.
        cluster: String,
        /// Name of the storage entry.
        storage: String,
    },
    /// The storage names no bucket.
    #[error("S3 storage {storage} of {namespace}/{cluster} has no bucket")]
    NoBucket {
        /// Namespace of the cluster.
        namespace: String,
        /// Name of the cluster.
        cluster: String,
        /// Name of the storage entry.
        storage: String,
    },
    /// A static target names no bucket.
    #[error("static target {name} has no bucket")]
    StaticNoBucket {
        /// The target's configured name.
        name: String,
    },
}

/// Everything that identifies a target: a [`Target`] without its users. Two targets with
/// equal keys are the same target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey {
    /// Bucket name, without prefix.
    pub bucket: String,
    /// Key prefix inside the bucket: `""` or ending in `/`.
    pub prefix: String,
    /// Signing region.
    pub region: String,
    /// S3-compatible endpoint URL without a trailing `/`; `None` for AWS.
    pub endpoint_url: Option<String>,
    /// Path-style addressing.
    pub force_path_style: bool,
    /// Verify the endpoint's TLS certificate.
    pub verify_tls: bool,
    /// Check the certificate against this CA bundle instead of the system roots.
    pub ca_bundle: Option<CaBundleRef>,
    /// Where the credentials come from.
    pub credentials: CredentialSource,
}

/// One S3 backup target and the users that back up to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// What the target is.
    pub key: TargetKey,
    /// Who uses it; never empty for targets built by the constructors here.
    pub users: BTreeSet<User>,
}

impl Target {
    /// The target of storage `storage` of cluster `namespace/cluster`.
    ///
    /// The credentials Secret, when named, is looked up in the cluster's namespace, as the
    /// operator mounts it into the backup Job there; no Secret means the ambient chain
    /// (IRSA). A missing region is [`DEFAULT_REGION`].
    ///
    /// # Errors
    ///
    /// [`TargetError::NotS3`] when the storage is not an S3 storage, and
    /// [`TargetError::NoBucket`] when it names no bucket.
    pub fn from_storage(
        namespace: &str,
        cluster: &str,
        storage_name: &str,
        storage: &Storage,
    ) -> Result<Self, TargetError> {
        let user = User::Storage {
            namespace: namespace.to_owned(),
            cluster: cluster.to_owned(),
            storage: storage_name.to_owned(),
        };
        let s3 = match (&storage.s3, storage.is_s3()) {
            (Some(s3), true) => s3,
            _ => {
                return Err(TargetError::NotS3 {
                    namespace: namespace.to_owned(),
                    cluster: cluster.to_owned(),
                    storage: storage_name.to_owned(),
                });
            }
        };
        if s3.bucket_name().trim().is_empty() {
            return Err(TargetError::NoBucket {
                namespace: namespace.to_owned(),
                cluster: cluster.to_owned(),
                storage: storage_name.to_owned(),
            });
        }
        let credentials = match non_empty(s3.credentials_secret.as_deref()) {
            Some(name) => CredentialSource::Secret {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            },
            None => CredentialSource::Ambient,
        };
        Ok(Self {
            key: TargetKey {
                bucket: s3.bucket_name().to_owned(),
                prefix: s3.prefix(),
                region: non_empty(s3.region.as_deref())
                    .unwrap_or(DEFAULT_REGION)
                    .to_owned(),
                endpoint_url: normalize_endpoint(s3.endpoint_url.as_deref()),
                force_path_style: s3.force_path_style.unwrap_or(false),
                verify_tls: storage.verify_tls.unwrap_or(true),
                ca_bundle: s3.ca_bundle.as_ref().and_then(|b| {
                    Some(CaBundleRef {
                        namespace: namespace.to_owned(),
                        name: non_empty(b.name.as_deref())?.to_owned(),
                        key: non_empty(b.key.as_deref())?.to_owned(),
                    })
                }),
                credentials,
            },
            users: BTreeSet::from([user]),
        })
    }

    /// The target of a static entry of the configuration's `targets[]`.
    ///
    /// # Errors
    ///
    /// [`TargetError::StaticNoBucket`] when it names no bucket (validation normally
    /// catches that first).
    pub fn from_static(target: &StaticTarget) -> Result<Self, TargetError> {
        // The same `bucket[/prefix]` syntax as the operator's, so split it the same way.
        let s3 = S3Storage {
            bucket: target.bucket.clone(),
            ..S3Storage::default()
        };
        if s3.bucket_name().trim().is_empty() {
            return Err(TargetError::StaticNoBucket {
                name: target.name.clone(),
            });
        }
        let credentials = match &target.credentials_secret {
            Some(secret) => CredentialSource::Secret {
                namespace: secret.namespace.clone(),
                name: secret.name.clone(),
            },
            None => CredentialSource::Ambient,
        };
        Ok(Self {
            key: TargetKey {
                bucket: s3.bucket_name().to_owned(),
                prefix: s3.prefix(),
                region: non_empty(Some(&target.region))
                    .unwrap_or(DEFAULT_REGION)
                    .to_owned(),
                endpoint_url: normalize_endpoint(target.endpoint_url.as_deref()),
                force_path_style: target.force_path_style,
                verify_tls: target.verify_tls,
                ca_bundle: target.ca_bundle.as_ref().and_then(|b| {
                    Some(CaBundleRef {
                        namespace: b.namespace.clone()?,
                        name: b.name.clone(),
                        key: b.key.clone(),
                    })
                }),
                credentials,
            },
            users: BTreeSet::from([User::Static {
                name: target.name.clone(),
            }]),
        })
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.key.bucket
    }

    /// The key prefix: `""` or ending in `/`.
    pub fn prefix(&self) -> &str {
        &self.key.prefix
    }

    /// The signing region.
    pub fn region(&self) -> &str {
        &self.key.region
    }

    /// The endpoint URL; `None` for AWS.
    pub fn endpoint_url(&self) -> Option<&str> {
        self.key.endpoint_url.as_deref()
    }

    /// Where the bucket is reached, for [`crate::s3::client::client`].
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            region: self.key.region.clone(),
            endpoint_url: self.key.endpoint_url.clone(),
            force_path_style: self.key.force_path_style,
        }
    }

    /// The `target` label: `s3://<bucket>/<prefix>@<region>`, then ` via <endpoint host>`
    /// for an S3-compatible endpoint, then only what sets this target apart from the
    /// usual case: ` path-style`, ` no-verify-tls` or ` ca=<namespace>/<name>/<key>`, and
    /// ` secret=<namespace>/<name>`
    /// (ambient credentials add nothing). It is a function of [`TargetKey`] alone, so
    /// every user of a target shares it, and keys that differ get different ids (unless
    /// their endpoint URLs differ only in path, which S3 endpoints do not have): two
    /// namespaces reaching one bucket with their own Secrets are two targets and two
    /// series, not one series overwritten by both.
    pub fn id(&self) -> String {
        let key = &self.key;
        let mut id = format!("s3://{}/{}@{}", key.bucket, key.prefix, key.region);
        // Writing to a String cannot fail, so the results are ignored.
        if let Some(url) = &key.endpoint_url {
            let _ = write!(id, " via {}", endpoint_host(url));
        }
        if key.force_path_style {
            id.push_str(" path-style");
        }
        if !key.verify_tls {
            id.push_str(" no-verify-tls");
        } else if let Some(ca) = &key.ca_bundle {
            let _ = write!(id, " ca={}/{}/{}", ca.namespace, ca.name, ca.key);
        }
        if let CredentialSource::Secret { namespace, name } = &key.credentials {
            let _ = write!(id, " secret={namespace}/{name}");
        }
        id
    }

    /// Adds `other`'s users when it is the same target; returns whether it was.
    pub fn merge(&mut self, other: &Self) -> bool {
        if self.key != other.key {
            return false;
        }
        self.users.extend(other.users.iter().cloned());
        true
    }
}

/// Collapses targets with equal keys into one, uniting their users. The result is ordered
/// by key, so it is the same whatever order the targets were found in.
pub fn dedupe(targets: impl IntoIterator<Item = Target>) -> Vec<Target> {
    let mut by_key = std::collections::BTreeMap::<TargetKey, BTreeSet<User>>::new();
    for target in targets {
        by_key.entry(target.key).or_default().extend(target.users);
    }
    by_key
        .into_iter()
        .map(|(key, users)| Target { key, users })
        .collect()
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// An endpoint URL as it identifies a target: trimmed, without trailing `/`, empty = AWS.
fn normalize_endpoint(url: Option<&str>) -> Option<String> {
    non_empty(url).map(|u| u.trim_end_matches('/').to_owned())
}

/// `scheme://host[:port]/path` → `host[:port]`, falling back to the whole URL when it has
/// no scheme, so the id never loses the endpoint altogether. Plain `http://` keeps its
/// scheme because it is the one endpoint property a reader most needs to see.
fn endpoint_host(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    // User info never belongs in a label.
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    match scheme {
        Some(s) if s.eq_ignore_ascii_case("http") => format!("http://{host}"),
        _ => host.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretRef;

    fn storage(json: serde_json::Value) -> Storage {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_pxc_storage_becomes_a_target() {
        let s = storage(serde_json::json!({
            "type": "s3", "verifyTLS": false,
            "s3": {"bucket": "pxc-backups/prod/eu", "region": "eu-west-1",
                   "credentialsSecret": "aws-creds", "endpointUrl": "https://minio.local:9000/",
                   "forcePathStyle": true}
        }));
        let t = Target::from_storage("percona", "cluster1", "s3-eu", &s).unwrap();
        assert_eq!(t.bucket(), "pxc-backups");
        assert_eq!(t.prefix(), "prod/eu/");
        assert_eq!(t.region(), "eu-west-1");
        assert_eq!(t.endpoint_url(), Some("https://minio.local:9000"));
        assert!(t.key.force_path_style);
        assert!(!t.key.verify_tls);
        assert_eq!(
            t.key.credentials,
            CredentialSource::Secret {
                namespace: "percona".into(),
                name: "aws-creds".into()
            }
        );
        assert_eq!(
            t.id(),
            "s3://pxc-backups/prod/eu/@eu-west-1 via minio.local:9000 path-style \
             no-verify-tls secret=percona/aws-creds"
        );
        let user = t.users.iter().next().unwrap();
        assert_eq!(
            (user.namespace(), user.cluster(), user.storage()),
            ("percona", "cluster1", "s3-eu")
        );
    }

    #[test]
    fn a_ca_bundle_is_read_from_the_clusters_namespace_and_named_in_the_id() {
        let s = storage(serde_json::json!({
            "type": "s3",
            "s3": {"bucket": "b", "endpointUrl": "https://minio.local:9000",
                   "caBundle": {"name": "minio-ca", "key": "ca.crt"}}
        }));
        let t = Target::from_storage("percona", "cluster1", "s3", &s).unwrap();
        assert_eq!(
            t.key.ca_bundle,
            Some(CaBundleRef {
                namespace: "percona".into(),
                name: "minio-ca".into(),
                key: "ca.crt".into()
            })
        );
        assert_eq!(
            t.id(),
            "s3://b/@us-east-1 via minio.local:9000 ca=percona/minio-ca/ca.crt"
        );
        // A half-filled selector names nothing the Job could mount: the system roots apply.
        let half = storage(serde_json::json!({
            "type": "s3", "s3": {"bucket": "b", "caBundle": {"name": "minio-ca"}}
        }));
        let t = Target::from_storage("percona", "cluster1", "s3", &half).unwrap();
        assert_eq!(t.key.ca_bundle, None);
    }

    #[test]
    fn defaults_give_the_plain_id() {
        let s = storage(serde_json::json!({"type": "s3", "s3": {"bucket": "b"}}));
        let t = Target::from_storage("ns", "c", "s", &s).unwrap();
        assert_eq!(t.id(), "s3://b/@us-east-1");
        assert_eq!(t.key.credentials, CredentialSource::Ambient);
        assert!(t.key.verify_tls);
        assert!(!t.key.force_path_style);
        let endpoint = t.endpoint();
        assert_eq!(endpoint.region, "us-east-1");
        assert_eq!(endpoint.endpoint_url, None);
    }

    #[test]
    fn non_s3_and_bucketless_storages_are_refused() {
        let fs = storage(serde_json::json!({"type": "filesystem"}));
        assert!(matches!(
            Target::from_storage("ns", "c", "fs", &fs),
            Err(TargetError::NotS3 { .. })
        ));
        let no_bucket = storage(serde_json::json!({"type": "s3", "s3": {"bucket": ""}}));
        assert!(matches!(
            Target::from_storage("ns", "c", "s", &no_bucket),
            Err(TargetError::NoBucket { .. })
        ));
    }

    #[test]
    fn identical_targets_of_several_clusters_share_one_id() {
        let s = storage(serde_json::json!({"type": "s3",
            "s3": {"bucket": "shared/backups", "region": "us-west-2", "credentialsSecret": "creds"}}));
        let a = Target::from_storage("percona", "cluster1", "s3", &s).unwrap();
        let b = Target::from_storage("percona", "cluster2", "s3-copy", &s).unwrap();
        assert_eq!(a.id(), b.id());
        // The same bucket with another namespace's Secret is another target.
        let c = Target::from_storage("other", "cluster3", "s3", &s).unwrap();
        assert_ne!(a.id(), c.id());

        let merged = dedupe([a.clone(), c.clone(), b.clone()]);
        assert_eq!(merged.len(), 2);
        let shared = merged.iter().find(|t| t.id() == a.id()).unwrap();
        assert_eq!(shared.users.len(), 2);

        let mut m = a.clone();
        assert!(m.merge(&b));
        assert!(!m.merge(&c));
        assert_eq!(m.users.len(), 2);
    }

    #[test]
    fn static_targets_keep_their_name_as_user() {
        let st = StaticTarget {
            name: "dr".into(),
            bucket: "dr-backups/pxc".into(),
            region: "us-east-1".into(),
            endpoint_url: Some("http://127.0.0.1:9000".into()),
            force_path_style: true,
            verify_tls: true,
            credentials_secret: Some(SecretRef {
                namespace: "backstop".into(),
                name: "dr-creds".into(),
            }),
            ca_bundle: None,
        };
        let t = Target::from_static(&st).unwrap();
        assert_eq!(
            t.id(),
            "s3://dr-backups/pxc/@us-east-1 via http://127.0.0.1:9000 path-style secret=backstop/dr-creds"
        );
        let user = t.users.iter().next().unwrap();
        assert_eq!(
            (user.namespace(), user.cluster(), user.storage()),
            ("", "", "dr")
        );
        let ambient = StaticTarget {
            credentials_secret: None,
            endpoint_url: Some(String::new()),
            ..st
        };
        let t = Target::from_static(&ambient).unwrap();
        assert_eq!(t.key.credentials, CredentialSource::Ambient);

        let private_ca = StaticTarget {
            ca_bundle: Some(crate::config::CaBundleSecret {
                namespace: Some("backstop".into()),
                name: "minio-ca".into(),
                key: "ca.crt".into(),
            }),
            ..ambient.clone()
        };
        let t = Target::from_static(&private_ca).unwrap();
        assert_eq!(
            t.key.ca_bundle,
            Some(CaBundleRef {
                namespace: "backstop".into(),
                name: "minio-ca".into(),
                key: "ca.crt".into(),
            })
        );
        assert_ne!(t.id(), Target::from_static(&ambient).unwrap().id());
        assert_eq!(t.endpoint_url(), None);
    }

    #[test]
    fn endpoint_hosts_drop_paths_and_user_info() {
        assert_eq!(
            endpoint_host("https://u:p@s3.example.com:443/x"),
            "s3.example.com:443"
        );
        assert_eq!(
            endpoint_host("http://10.0.0.1:9000"),
            "http://10.0.0.1:9000"
        );
        assert_eq!(endpoint_host("minio:9000"), "minio:9000");
    }
}
