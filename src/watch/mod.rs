//! The backup watcher: what the operator's backups say about each cluster. Pure parts first
//! ([`retention`], [`cause`]); the watch-driven index and its metrics build on them.

pub mod cause;
pub mod index;
pub mod retention;
