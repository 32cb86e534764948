//! The sandbox's embedded S3: one filesystem-backed S3 endpoint per region, with faults
//! that a test or benchmark switches at run time.
//!
//! Each region is its own s3s service over s3s-fs (with a faster listing, in `store`), on
//! its own loopback port and data directory, because Backstop fails over between
//! *endpoints*: a region that refuses or hangs must not take the other one down, exactly
//! as with AWS. Everything in front of
//! storage is the real protocol (SigV4, S3 XML errors), so the unmodified AWS SDK is the
//! client, and faults are injected at the two layers where they happen in production:
//! sockets (`Refuse`, `Hang`, in `server`) and per-request answers (latency and S3
//! errors, in s3s's access hook in `access`). [`Faults`] is the switchboard and
//! [`Requests`] counts what each endpoint was asked.

mod access;
mod aws_error;
mod faults;
mod requests;
mod server;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use s3s::service::S3ServiceBuilder;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use faults::{ActiveRule, Fault, Faults, Rule, RuleId};
pub use requests::{RequestKey, Requests};

/// The region the sandbox's clusters back up to normally.
pub const PRIMARY_REGION: &str = "us-west-2";
/// The region the sandbox fails backups over to.
pub const SECONDARY_REGION: &str = "us-east-1";
/// The region of the sandbox's second secondary, for ordered fallback targets.
pub const TERTIARY_REGION: &str = "eu-west-1";

/// What the embedded S3 serves.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// The directory holding every region's data, one subdirectory per region. It must
    /// exist; the region subdirectories are created.
    pub root: PathBuf,
    /// The only access key the endpoints accept.
    pub access_key: String,
    /// The secret key belonging to `access_key`.
    pub secret_key: String,
    /// The regions, each served on its own endpoint.
    pub regions: Vec<RegionConfig>,
}

/// One region of the embedded S3.
#[derive(Debug, Clone)]
pub struct RegionConfig {
    /// The region's name, such as [`PRIMARY_REGION`]; requests must be signed for it.
    pub name: String,
    /// The buckets that exist from the start.
    pub buckets: Vec<String>,
}

/// Why the embedded S3 could not start or a fault could not be switched.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration names no region, a region twice, or an invalid region or bucket.
    #[error("invalid sandbox S3 configuration: {0}")]
    InvalidConfig(String),
    /// A data directory could not be created.
    #[error("cannot create {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// s3s-fs could not open a region's data directory.
    #[error("cannot open the S3 store at {path}: {message}")]
    Storage {
        /// The region's data directory.
        path: PathBuf,
        /// s3s-fs's description of the failure.
        message: String,
    },
    /// A region's listener could not be bound.
    #[error("cannot listen for region {region}: {source}")]
    Bind {
        /// The region.
        region: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A fault rule names a region the sandbox does not run.
    #[error("the sandbox S3 has no region named {0:?}")]
    UnknownRegion(String),
    /// A connection fault was narrowed to a bucket or an operation, which sockets know
    /// nothing of.
    #[error(
        "{0:?} is a connection fault: it applies to whole regions, not to buckets or operations"
    )]
    ScopedConnectionFault(Fault),
    /// A region that refused connections could not bind its port again; it keeps trying.
    #[error("region {region} cannot take its port back yet: {message}")]
    Rebind {
        /// The region.
        region: String,
        /// The bind error.
        message: String,
    },
}

/// A running embedded S3. Dropping it aborts every server task; [`S3Server::shutdown`]
/// stops them and waits until they are gone.
#[derive(Debug)]
pub struct S3Server {
    endpoints: Vec<(String, SocketAddr)>,
    faults: Faults,
    requests: Requests,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts one endpoint per configured region on `127.0.0.1` with an ephemeral port,
/// creating each region's buckets.
///
/// # Errors
///
/// [`Error::InvalidConfig`] for a bad configuration, [`Error::Io`] or [`Error::Storage`]
/// when the data directories cannot be prepared, and [`Error::Bind`] when a listener
/// cannot be bound. Endpoints started before the failure are stopped.
pub async fn start(config: S3Config) -> Result<S3Server, Error> {
    validate(&config)?;
    let faults = Faults::new(config.regions.iter().map(|r| r.name.as_str()));
    // Built up region by region so that a failure half-way drops, and so aborts, the
    // endpoints already running.
    let mut server = S3Server {
        endpoints: Vec::new(),
        faults,
        requests: Requests::default(),
        stop: CancellationToken::new(),
        tasks: Vec::new(),
    };
    for region in &config.regions {
        let dir = config.root.join(&region.name);
        // s3s-fs keeps a bucket as a directory, so creating one creates the bucket.
        for path in std::iter::once(dir.clone()).chain(region.buckets.iter().map(|b| dir.join(b))) {
            tokio::fs::create_dir_all(&path)
                .await
                .map_err(|source| Error::Io { path, source })?;
        }
        let storage = store::Store::new(&dir).map_err(|message| Error::Storage {
            path: dir.clone(),
            message,
        })?;

        let mut builder = S3ServiceBuilder::new(storage);
        builder.set_auth(access::SandboxAuth::new(
            &config.access_key,
            &config.secret_key,
        ));
        builder.set_access(access::RegionAccess {
            region: region.name.clone(),
            faults: server.faults.clone(),
            requests: server.requests.clone(),
        });
        let service = builder.build();

        let bind_error = |source| Error::Bind {
            region: region.name.clone(),
            source,
        };
        let listener = server::bind(SocketAddr::from(([127, 0, 0, 1], 0))).map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let task = tokio::spawn(server::run(
            Arc::from(region.name.as_str()),
            listener,
            service,
            server.faults.clone(),
            server.stop.child_token(),
        ));
        server.endpoints.push((region.name.clone(), addr));
        server.tasks.push(task);
    }
    Ok(server)
}

fn validate(config: &S3Config) -> Result<(), Error> {
    let invalid = |message: String| Err(Error::InvalidConfig(message));
    if config.regions.is_empty() {
        return invalid("no region".to_owned());
    }
    for (i, region) in config.regions.iter().enumerate() {
        // The name becomes a directory name, so only AWS's region alphabet is allowed.
        let well_formed = !region.name.is_empty()
            && region
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !well_formed {
            return invalid(format!("invalid region name {:?}", region.name));
        }
        if config.regions[..i].iter().any(|r| r.name == region.name) {
            return invalid(format!("region {:?} appears twice", region.name));
        }
        if let Some(bucket) = region
            .buckets
            .iter()
            .find(|b| !s3s::path::check_bucket_name(b))
        {
            return invalid(format!("invalid bucket name {bucket:?}"));
        }
    }
    Ok(())
}

impl S3Server {
    /// The endpoint URL of `region`, `http://127.0.0.1:PORT`, for the SDK's
    /// `endpoint_url` with path-style addressing.
    #[must_use]
    pub fn endpoint(&self, region: &str) -> Option<String> {
        self.addr(region).map(|addr| format!("http://{addr}"))
    }

    /// The socket address `region`'s endpoint listens on (the same across `Refuse`).
    #[must_use]
    pub fn addr(&self, region: &str) -> Option<SocketAddr> {
        self.endpoints
            .iter()
            .find(|(name, _)| name == region)
            .map(|(_, addr)| *addr)
    }

    /// The fault switchboard of every endpoint.
    #[must_use]
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The request counters of every endpoint.
    #[must_use]
    pub fn requests(&self) -> &Requests {
        &self.requests
    }

    /// Stops every endpoint, closing listeners and connections, and waits until their
    /// tasks have ended.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        for task in std::mem::take(&mut self.tasks) {
            if let Err(error) = task.await
                && error.is_panic()
            {
                tracing::error!(%error, "sandbox S3 endpoint task panicked");
            }
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop.cancel();
        for task in &self.tasks {
            task.abort();
        }
    }
}
