//! Kubernetes access beyond plain requests: the shared [`informer`]s every reader of a kind
//! goes through.

pub mod informer;
