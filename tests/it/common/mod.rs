//! Test harness shared by the integration tests that run Backstop in the sandbox world.

pub mod deploy;
pub mod fixtures;
pub mod monitoring;
pub mod sandbox;

pub use backstop_sandbox::backend::Backend;

pub use fixtures::operator_crd;

/// Declares the tests `NAME::simulator` and `NAME::real`, each calling the async function
/// `NAME(backend: Backend)` with its backend, under `#[tokio::test(ARGS)]`:
/// `on_both_backends!(watches_backups);` or
/// `on_both_backends!(watches_backups, flavor = "multi_thread", worker_threads = 2);`.
/// The real backend is the kube-apiserver `scripts/kube-apiserver.sh` builds; a test that
/// cannot start it fails, it is never skipped.
macro_rules! on_both_backends {
    ($name:ident $(, $($arg:tt)*)?) => {
        mod $name {
            #[tokio::test $( ( $($arg)* ) )?]
            async fn simulator() {
                super::$name(backstop_sandbox::backend::Backend::Simulator).await
            }
            #[tokio::test $( ( $($arg)* ) )?]
            async fn real() {
                super::$name(backstop_sandbox::backend::Backend::Real).await
            }
        }
    };
}
pub(crate) use on_both_backends;

/// World options for a two-backend test: the API server `backend` with the operator's real
/// CRD, every other option at its default (tests override with `..world_on(backend)`).
pub fn world_on(backend: Backend) -> backstop_sandbox::world::WorldOptions {
    backstop_sandbox::world::WorldOptions {
        backend,
        crd_file: Some(operator_crd()),
        ..backstop_sandbox::world::WorldOptions::default()
    }
}
