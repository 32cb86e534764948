//! S3 access: [`client`]s built from a storage's settings as the operator's backup Job would
//! build them, and how they trust the endpoint ([`tls`]).

pub mod client;
pub mod tls;
