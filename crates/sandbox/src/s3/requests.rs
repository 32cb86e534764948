//! Request accounting: how many requests of each operation reached each region and bucket.
//!
//! Tests and benchmarks ask questions like "how many `ListObjectsV2` calls hit bucket X",
//! so the counter is keyed by exactly that triple. Requests are counted at the point
//! where s3s has authenticated them and resolved their operation (the access hook), which
//! is the first point where the operation name is known; requests that never get there
//! (bad signatures, requests held by `Hang`, connections refused) are not counted.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// What one counter counts: requests of one operation to one bucket of one region.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestKey {
    /// The region whose endpoint received the requests.
    pub region: String,
    /// The bucket the requests addressed; `None` for bucket-less ones such as `ListBuckets`.
    pub bucket: Option<String>,
    /// The s3s operation name, such as `"ListObjectsV2"`.
    pub operation: String,
}

/// The cheap, cloneable request counters of the sandbox.
#[derive(Debug, Clone, Default)]
pub struct Requests {
    counts: Arc<Mutex<BTreeMap<RequestKey, u64>>>,
}

impl Requests {
    /// How many `operation` requests addressed `bucket` in `region` since the last reset.
    #[must_use]
    pub fn count(&self, region: &str, bucket: &str, operation: &str) -> u64 {
        let key = RequestKey {
            region: region.to_owned(),
            bucket: Some(bucket.to_owned()),
            operation: operation.to_owned(),
        };
        self.lock().get(&key).copied().unwrap_or(0)
    }

    /// Every non-zero counter since the last reset.
    #[must_use]
    pub fn snapshot(&self) -> BTreeMap<RequestKey, u64> {
        self.lock().clone()
    }

    /// Sets every counter back to zero.
    pub fn reset(&self) {
        self.lock().clear();
    }

    /// Counts one request.
    pub(crate) fn record(&self, region: &str, bucket: Option<&str>, operation: &str) {
        let key = RequestKey {
            region: region.to_owned(),
            bucket: bucket.map(str::to_owned),
            operation: operation.to_owned(),
        };
        *self.lock().entry(key).or_insert(0) += 1;
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<RequestKey, u64>> {
        // Every mutation is a single increment or clear, so a poisoned map is still sound.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_region_bucket_and_operation_until_reset() {
        let requests = Requests::default();
        requests.record("r1", Some("a"), "ListObjectsV2");
        requests.record("r1", Some("a"), "ListObjectsV2");
        requests.record("r1", Some("b"), "ListObjectsV2");
        requests.record("r2", Some("a"), "ListObjectsV2");
        requests.record("r1", None, "ListBuckets");
        assert_eq!(requests.count("r1", "a", "ListObjectsV2"), 2);
        assert_eq!(requests.count("r1", "b", "ListObjectsV2"), 1);
        assert_eq!(requests.count("r2", "a", "ListObjectsV2"), 1);
        assert_eq!(requests.count("r1", "a", "PutObject"), 0);
        assert_eq!(requests.snapshot().len(), 4);
        requests.reset();
        assert_eq!(requests.count("r1", "a", "ListObjectsV2"), 0);
        assert!(requests.snapshot().is_empty());
    }
}
