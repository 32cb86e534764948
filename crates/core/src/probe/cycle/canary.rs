//! The canary of a cycle: write a small object, read it back byte for byte, delete it; and
//! the quiet clean-up of canaries an earlier cycle could not delete.

use super::*;

/// Write, read back and compare, delete. Returns put, then get when the put succeeded, then
/// delete unless the get ended the cycle ([`ends_cycle`]).
pub(super) async fn canary(
    client: &Client,
    target: &Target,
    config: &CanaryConfig,
    budget: Option<Duration>,
    state: &mut TargetState,
) -> Vec<OperationResult> {
    let bucket = target.bucket();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let key = format!("{}{id}", canary_prefix(target, config));
    // The id in the body makes a read of some other canary (a stale cache, a mixed-up
    // key) a mismatch rather than a success.
    let body = format!("backstop canary {id} written {}\n", jiff::Timestamp::now()).into_bytes();

    let (put, _) = measure(
        Operation::PutObject,
        client
            .put_object()
            .bucket(bucket)
            .key(&key)
            .body(ByteStream::from(body.clone()))
            .send(),
    )
    .await;
    if !put.is_ok() {
        // A write that timed out or lost its connection may still have landed.
        if matches!(
            put.error_class(),
            Some(ErrorClass::Timeout | ErrorClass::Connect)
        ) {
            state.remember_canary(key);
        }
        return vec![put];
    }

    let get = read_back(client, bucket, &key, &body, budget).await;
    if ends_cycle(&get) {
        // The store stopped answering: a delete now would only wait out another timeout.
        // The key is remembered, and a later cycle deletes it once the store answers.
        state.remember_canary(key);
        return vec![put, get];
    }
    let (delete, _) = measure(
        Operation::DeleteObject,
        client.delete_object().bucket(bucket).key(&key).send(),
    )
    .await;
    if !delete.is_ok() {
        state.remember_canary(key);
    }
    vec![put, get, delete]
}

/// `GetObject` of the canary, its body read within what is left of `budget`, compared
/// with `expected`.
async fn read_back(
    client: &Client,
    bucket: &str,
    key: &str,
    expected: &[u8],
    budget: Option<Duration>,
) -> OperationResult {
    let started = Instant::now();
    let (mut result, output) = measure(
        Operation::GetObject,
        client.get_object().bucket(bucket).key(key).send(),
    )
    .await;
    let Some(output) = output else {
        return result;
    };
    let collect = output.body.collect();
    let read = match budget {
        Some(budget) => {
            match tokio::time::timeout(budget.saturating_sub(started.elapsed()), collect).await {
                Ok(read) => read,
                Err(_) => {
                    result.duration = started.elapsed();
                    result.outcome = Outcome::Err {
                        class: ErrorClass::Timeout,
                        message: format!(
                            "reading the canary body took longer than the {budget:?} \
                             operation timeout"
                        ),
                    };
                    return result;
                }
            }
        }
        None => collect.await,
    };
    result.duration = started.elapsed();
    result.outcome = match read {
        Ok(bytes) => {
            let bytes = bytes.into_bytes();
            if bytes.as_ref() == expected {
                Outcome::Ok
            } else {
                Outcome::Err {
                    class: ErrorClass::Other,
                    message: format!(
                        "canary body mismatch: wrote {} bytes, read {} different bytes",
                        expected.len(),
                        bytes.len()
                    ),
                }
            }
        }
        Err(error) => {
            let text = chain_text(&error);
            Outcome::Err {
                class: classify_transport(&text, false),
                message: format!("reading the canary body: {text}"),
            }
        }
    };
    result
}

/// Deletes canaries earlier cycles could not, quietly: they are housekeeping, not probes.
pub(super) async fn delete_leftovers(client: &Client, bucket: &str, state: &mut TargetState) {
    let mut still_there = Vec::new();
    for key in std::mem::take(&mut state.leftover_canaries) {
        match client.delete_object().bucket(bucket).key(&key).send().await {
            Ok(_) => tracing::debug!(%key, "deleted a leftover canary object"),
            Err(error) => {
                let (class, message) = classify(&error);
                tracing::debug!(%key, %class, %message, "leftover canary object not deleted yet");
                still_there.push(key);
            }
        }
    }
    state.leftover_canaries = still_there;
}
