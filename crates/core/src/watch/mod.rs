//! The backup watcher: what the operator's backups say about each cluster. Watches
//! ([`runtime`]) feed a pure index ([`index`]) that a collector ([`collector`]) renders at
//! scrape time; [`completions`] counts finished backups exactly once;
//! [`retention`] and [`cause`] hold the rules.

pub mod cause;
pub mod collector;
pub mod completions;
pub mod index;
pub mod object_id;
pub mod reftable;
pub mod retention;
pub mod runtime;
