//! The sandbox world: an embedded S3 with two regions, the Kubernetes API simulator with the
//! PXC CRDs, a sample cluster with a storage in each region and a schedule running every
//! minute, a few days of backup history, and the simulated operator running the schedule.
//! `backstop sandbox` and the tests start exactly this.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::backend::{ApiServer, Backend, BackendError};
use crate::crds::{CrdError, install_crd_file, install_pxc_crds};
use crate::operator::{OperatorOptions, SimOperator, ancestor};
use crate::s3::{self, RegionConfig, S3Config, S3Server};
use backstop::clock::{Clock, SystemClock};
use backstop::config::{self, Config};
use backstop::pxc::{self, PerconaXtraDBCluster, PerconaXtraDBClusterBackup, labels};
use backstop::s3::client::{self as s3client, Endpoint, StaticCredentials};

/// Namespace of the sample cluster.
pub const NAMESPACE: &str = "percona";
/// Name of the sample cluster.
pub const CLUSTER: &str = "cluster1";
/// The primary storage (region us-west-2).
pub const PRIMARY_STORAGE: &str = "s3-us-west";
/// The secondary storage (region us-east-1).
pub const SECONDARY_STORAGE: &str = "s3-us-east";
/// The primary bucket.
pub const PRIMARY_BUCKET: &str = "pxc-backups";
/// The secondary bucket.
pub const SECONDARY_BUCKET: &str = "pxc-backups-dr";
/// The second secondary's bucket (region eu-west-1), for ordered fallback targets.
pub const TERTIARY_BUCKET: &str = "pxc-backups-eu";
/// The storage name of the second secondary in [`World::ordered_secondaries`].
pub const TERTIARY_STORAGE: &str = "backstop-tertiary";
/// The Secret with the S3 keys, in [`NAMESPACE`].
pub const CREDENTIALS_SECRET: &str = "s3-credentials";
/// The sample schedule's name.
pub const SCHEDULE: &str = "every-minute";

/// Why the world could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// The embedded S3 failed.
    #[error("embedded S3: {0}")]
    S3(#[from] s3::Error),
    /// The API server (simulator or real) failed.
    #[error(transparent)]
    Kube(#[from] BackendError),
    /// A request to the simulator failed.
    #[error("seeding the cluster: {0}")]
    Api(#[from] kube::Error),
    /// The CRDs did not install.
    #[error(transparent)]
    Crd(#[from] CrdError),
    /// Writing the world's files failed.
    #[error("sandbox files: {0}")]
    Io(#[from] std::io::Error),
    /// Seeding S3 failed.
    #[error("seeding S3: {0}")]
    Seed(String),
}

/// How the world runs.
#[derive(Clone)]
pub struct WorldOptions {
    /// The operator's clock.
    pub clock: Arc<dyn Clock>,
    /// How often the operator steps; `None` leaves stepping to the caller.
    pub operator_interval: Option<Duration>,
    /// Backups of history to seed, one every six hours back from now.
    pub history: u32,
    /// `retention.count` of the sample schedule.
    pub retention: i64,
    /// The API server the world runs on.
    pub backend: Backend,
    /// The PXC CRDs to install: the sandbox's own subset (`None`), or a CRD file such as the
    /// operator's real `crd.yaml`, derived for the server's version ([`crds::derive_for`]).
    ///
    /// [`crds::derive_for`]: crate::crds::derive_for
    pub crd_file: Option<PathBuf>,
    /// The simulated operator's settings.
    pub operator: OperatorOptions,
}

impl Default for WorldOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            operator_interval: Some(Duration::from_secs(5)),
            history: 12,
            retention: 30,
            backend: Backend::Simulator,
            crd_file: None,
            operator: OperatorOptions::default(),
        }
    }
}

/// A running world.
pub struct World {
    dir: tempfile::TempDir,
    /// The embedded S3.
    pub s3: S3Server,
    /// The API server: the simulator or a real kube-apiserver.
    pub kube: ApiServer,
    /// The STS endpoint (`GetCallerIdentity`).
    pub sts: super::sts::StsServer,
    /// An administrator's client of the simulator.
    pub client: kube::Client,
    /// The simulated operator.
    pub operator: Arc<SimOperator>,
    /// The S3 keys every bucket accepts.
    pub credentials: StaticCredentials,
    shutdown: CancellationToken,
    operator_task: Option<tokio::task::JoinHandle<()>>,
}

impl World {
    /// Starts everything with random S3 keys and seeds the sample cluster.
    pub async fn start(options: WorldOptions) -> Result<Self, WorldError> {
        let credentials = StaticCredentials {
            access_key_id: format!(
                "SANDBOX{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            )
            .to_uppercase(),
            secret_access_key: uuid::Uuid::new_v4().simple().to_string(),
        };
        Self::start_with_credentials(options, credentials).await
    }

    /// Like [`World::start`], with S3 keys chosen by the caller (a test that must know them,
    /// say to check they never reach a log).
    pub async fn start_with_credentials(
        options: WorldOptions,
        credentials: StaticCredentials,
    ) -> Result<Self, WorldError> {
        let dir = tempfile::Builder::new()
            .prefix("backstop-sandbox-")
            .tempdir()?;
        let s3_root = dir.path().join("s3");
        std::fs::create_dir_all(&s3_root)?;
        let s3 = s3::start(S3Config {
            root: s3_root,
            access_key: credentials.access_key_id.clone(),
            secret_key: credentials.secret_access_key.clone(),
            regions: vec![
                RegionConfig {
                    name: s3::PRIMARY_REGION.into(),
                    buckets: vec![PRIMARY_BUCKET.into()],
                },
                RegionConfig {
                    name: s3::SECONDARY_REGION.into(),
                    buckets: vec![SECONDARY_BUCKET.into()],
                },
                RegionConfig {
                    name: s3::TERTIARY_REGION.into(),
                    buckets: vec![TERTIARY_BUCKET.into()],
                },
            ],
        })
        .await?;
        let sts = super::sts::start(&credentials.access_key_id).await?;
        let kube = ApiServer::start(options.backend).await?;
        let client = kube.admin_client().await?;
        kube.write_kubeconfig(&dir.path().join("kubeconfig"), kube.admin_token())?;

        let world_operator = Arc::new(SimOperator::new(
            client.clone(),
            options.clock.clone(),
            options.operator.clone(),
        ));
        let mut world = Self {
            dir,
            s3,
            kube,
            sts,
            client,
            operator: world_operator,
            credentials,
            shutdown: CancellationToken::new(),
            operator_task: None,
        };
        world.seed(&options).await?;
        if let Some(every) = options.operator_interval {
            let task = tokio::spawn(world.operator.clone().run(every, world.shutdown.clone()));
            world.operator_task = Some(task);
        }
        Ok(world)
    }

    /// The kubeconfig (administrator) for kubectl and kube-rs.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// The directory holding the world's files.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The S3 endpoint of `region`.
    pub fn endpoint(&self, region: &str) -> String {
        self.s3.endpoint(region).unwrap_or_default()
    }

    /// Backstop's configuration for this world: the sample cluster managed, failing over to
    /// the secondary bucket (or a PVC buffer), webhook authenticated with `token_file`.
    pub fn backstop_config(
        &self,
        listen: &str,
        token_file: &std::path::Path,
    ) -> Result<Config, config::ConfigError> {
        let yaml = format!(
            "server: {{listen: '{listen}'}}\n\
             kubernetes: {{leader_election: {{enabled: false}}}}\n\
             probe: {{sts_endpoint_url: '{sts}'}}\n\
             responder:\n  auth: {{bearer_token_file: '{token}'}}\n\
             clusters:\n\
             - namespace: {NAMESPACE}\n  name: {CLUSTER}\n  failover:\n    storage: {PRIMARY_STORAGE}\n\
             \x20   secondary:\n      storage_name: backstop-secondary\n      bucket: {SECONDARY_BUCKET}/{CLUSTER}\n\
             \x20     region: {region}\n      endpoint_url: '{endpoint}'\n      force_path_style: true\n\
             \x20     credentials_secret: {CREDENTIALS_SECRET}\n\
             \x20   buffer: {{size: 10Gi, storage_class_name: standard}}\n",
            token = token_file.display(),
            sts = self.sts.url(),
            region = s3::SECONDARY_REGION,
            endpoint = self.endpoint(s3::SECONDARY_REGION),
        );
        config::load_str(&yaml)
    }

    /// Adds a second secondary to the sample cluster's policy in `config`: bucket
    /// [`TERTIARY_BUCKET`] in its own region, tried after the first.
    pub fn ordered_secondaries(&self, config: &mut Config) {
        let Some(cluster) = config.clusters.first_mut() else {
            return;
        };
        let Some(mut second) = cluster.failover.secondary.clone() else {
            return;
        };
        second.storage_name = TERTIARY_STORAGE.to_owned();
        second.bucket = format!("{TERTIARY_BUCKET}/{CLUSTER}");
        second.region = s3::TERTIARY_REGION.to_owned();
        second.endpoint_url = Some(self.endpoint(s3::TERTIARY_REGION));
        cluster.failover.secondaries = vec![second];
    }

    async fn seed(&self, options: &WorldOptions) -> Result<(), WorldError> {
        match &options.crd_file {
            None => install_pxc_crds(&self.client).await?,
            Some(path) => install_crd_file(&self.client, path).await?,
        }
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))
            .map_err(|e| WorldError::Seed(e.to_string()))?;
        namespaces.create(&PostParams::default(), &ns).await?;
        self.kube
            .wait_namespace_ready(&self.client, NAMESPACE)
            .await?;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), NAMESPACE);
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": CREDENTIALS_SECRET, "namespace": NAMESPACE},
            "stringData": {
                "AWS_ACCESS_KEY_ID": self.credentials.access_key_id,
                "AWS_SECRET_ACCESS_KEY": self.credentials.secret_access_key,
            },
        }))
        .map_err(|e| WorldError::Seed(e.to_string()))?;
        secrets.create(&PostParams::default(), &secret).await?;

        let storage = |region: &str, bucket: &str| {
            json!({"type": "s3", "s3": {
                "bucket": bucket, "region": region, "endpointUrl": self.endpoint(region),
                "forcePathStyle": true, "credentialsSecret": CREDENTIALS_SECRET}})
        };
        let cluster: PerconaXtraDBCluster = serde_json::from_value(json!({
            "apiVersion": "pxc.percona.com/v1", "kind": "PerconaXtraDBCluster",
            "metadata": {"name": CLUSTER, "namespace": NAMESPACE},
            "spec": {
                "crVersion": "1.20.0",
                "secretsName": format!("{CLUSTER}-secrets"),
                "pxc": {"size": 3, "image": "percona/percona-xtradb-cluster:8.4"},
                "haproxy": {"enabled": true, "size": 3},
                "backup": {
                    "image": "percona/percona-xtradb-cluster-operator:1.20.0-pxc8.4-backup",
                    "pitr": {"enabled": true, "storageName": PRIMARY_STORAGE, "timeBetweenUploads": 60},
                    "storages": {
                        PRIMARY_STORAGE: storage(s3::PRIMARY_REGION, &format!("{PRIMARY_BUCKET}/{CLUSTER}")),
                        SECONDARY_STORAGE: storage(s3::SECONDARY_REGION, &format!("{SECONDARY_BUCKET}/{CLUSTER}")),
                    },
                    "schedule": [{"name": SCHEDULE, "schedule": "* * * * *", "storageName": PRIMARY_STORAGE,
                        "retention": {"type": "count", "count": options.retention, "deleteFromStorage": true}}],
                },
            },
        }))
        .map_err(|e| WorldError::Seed(e.to_string()))?;
        let clusters: Api<PerconaXtraDBCluster> = Api::namespaced(self.client.clone(), NAMESPACE);
        clusters.create(&PostParams::default(), &cluster).await?;
        clusters
            .patch_status(
                CLUSTER,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"state": "ready"}})),
            )
            .await?;
        self.seed_history(options).await
    }

    /// Succeeded backups every six hours back from now, with their objects in the primary
    /// bucket, as a cluster that has been backing up for a few days.
    async fn seed_history(&self, options: &WorldOptions) -> Result<(), WorldError> {
        let now = options.clock.now();
        let s3 = s3client::client(
            &Endpoint {
                region: s3::PRIMARY_REGION.into(),
                endpoint_url: Some(self.endpoint(s3::PRIMARY_REGION)),
                force_path_style: true,
            },
            &self.credentials,
            s3client::Timeouts::default(),
        );
        let backups: Api<PerconaXtraDBClusterBackup> =
            Api::namespaced(self.client.clone(), NAMESPACE);
        for i in (1..=options.history).rev() {
            let at = now
                .checked_sub(SignedDuration::from_hours(6 * i64::from(i)))
                .map_err(|e| WorldError::Seed(e.to_string()))?;
            let name = pxc::scheduled_backup_name(CLUSTER, PRIMARY_STORAGE, "* * * * *", at);
            let dir = pxc::backup_dir_name(CLUSTER, at);
            s3.put_object()
                .bucket(PRIMARY_BUCKET)
                .key(format!("{CLUSTER}/{dir}/xtrabackup_checkpoints"))
                .body(aws_sdk_s3::primitives::ByteStream::from_static(
                    b"backup_type = full-backuped\n",
                ))
                .send()
                .await
                .map_err(|e| WorldError::Seed(format!("{e:?}")))?;
            let backup: PerconaXtraDBClusterBackup = serde_json::from_value(json!({
                "apiVersion": "pxc.percona.com/v1", "kind": "PerconaXtraDBClusterBackup",
                "metadata": {"name": name, "namespace": NAMESPACE,
                    "finalizers": [pxc::DELETE_BACKUP_FINALIZER],
                    "labels": {labels::BACKUP_TYPE: "cron", labels::CLUSTER: CLUSTER,
                        labels::BACKUP_ANCESTOR: ancestor(NAMESPACE, CLUSTER, SCHEDULE)}},
                "spec": {"pxcCluster": CLUSTER, "storageName": PRIMARY_STORAGE},
            }))
            .map_err(|e| WorldError::Seed(e.to_string()))?;
            backups.create(&PostParams::default(), &backup).await?;
            let status = json!({"status": {
                "state": pxc::state::SUCCEEDED,
                "completed": at.checked_add(SignedDuration::from_mins(4)).unwrap_or(at).strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "destination": pxc::s3_destination(&format!("{PRIMARY_BUCKET}/{CLUSTER}"), CLUSTER, at),
                "storageName": PRIMARY_STORAGE, "storage_type": "s3",
                "s3": {"bucket": format!("{PRIMARY_BUCKET}/{CLUSTER}"), "region": s3::PRIMARY_REGION,
                    "endpointUrl": self.endpoint(s3::PRIMARY_REGION), "forcePathStyle": true,
                    "credentialsSecret": CREDENTIALS_SECRET},
            }});
            backups
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                .await?;
        }
        Ok(())
    }

    /// Stops the operator, the API simulator and S3.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.operator_task.take() {
            let _ = task.await;
        }
        self.kube.shutdown().await;
        self.s3.shutdown().await;
        self.sts.shutdown().await;
    }
}
