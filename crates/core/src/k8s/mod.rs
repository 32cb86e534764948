//! Kubernetes access beyond plain requests: the shared [`informer`]s every reader of a kind
//! goes through, [`events`] about the objects Backstop acts on, the process [`identity`], and
//! [`leader`] election on a Lease.

pub mod events;
pub mod identity;
pub mod informer;
pub mod leader;
