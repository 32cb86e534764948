//! The listing of a cycle: incremental after the newest key it read, and now and then a full
//! one from the start of the prefix (`probe.list.full_every`), a page per cycle beside it.

use super::*;

/// Reads at most `max_pages` pages of the storage prefix after the resume point; while a
/// full listing is under way (every `probe.list.full_every` caught-up listings), one page of
/// it too, from where it stands, until it reaches the end.
pub(super) async fn list(
    client: &Client,
    target: &Target,
    options: &CycleOptions,
    state: &mut TargetState,
) -> OperationResult {
    let started = Instant::now();
    let pages = options.list.max_pages.max(1);
    let incremental = list_pages(client, target, options, state, Cursor::Resume, pages).await;
    let mut outcome = incremental.outcome;
    if outcome == Outcome::Ok {
        // The incremental listing never looks behind its resume point again, where an
        // object rewritten under an old key would be: now and then, list from the start.
        let full_every = options.list.full_every;
        if incremental.caught_up && state.rescan.is_none() && full_every > 0 {
            state.listings_since_full = state.listings_since_full.saturating_add(1);
            if state.listings_since_full >= full_every {
                state.rescan = Some(None);
            }
        }
        if state.rescan.is_some() {
            let full = list_pages(client, target, options, state, Cursor::Rescan, 1).await;
            outcome = full.outcome;
            if outcome == Outcome::Ok {
                if full.caught_up {
                    state.rescan = None;
                    state.listings_since_full = 0;
                } else if full.last_key.is_some() {
                    state.rescan = Some(full.last_key);
                }
            }
        }
    }
    OperationResult {
        operation: Operation::ListObjects,
        duration: started.elapsed(),
        outcome,
    }
}

/// Where a listing starts.
#[derive(Clone, Copy)]
enum Cursor {
    /// After the newest key the incremental listing read.
    Resume,
    /// Where the full listing stands.
    Rescan,
}

/// What some pages of a listing came to.
struct Pages {
    outcome: Outcome,
    /// The listing reached the end of the prefix.
    caught_up: bool,
    /// The last key read.
    last_key: Option<String>,
}

/// Reads up to `pages` pages from `cursor`, offering every object to `state`.
async fn list_pages(
    client: &Client,
    target: &Target,
    options: &CycleOptions,
    state: &mut TargetState,
    cursor: Cursor,
    pages: u32,
) -> Pages {
    let ignored = if options.canary.key_prefix.is_empty() {
        String::new()
    } else {
        canary_prefix(target, &options.canary)
    };
    let page_size = i32::try_from(options.list.page_size).unwrap_or(1000).max(1);
    let mut token: Option<String> = None;
    let mut done = Pages {
        outcome: Outcome::Ok,
        caught_up: false,
        last_key: None,
    };
    for page in 0..pages {
        let mut request = client
            .list_objects_v2()
            .bucket(target.bucket())
            .max_keys(page_size);
        if !target.prefix().is_empty() {
            request = request.prefix(target.prefix());
        }
        // The first page starts at the cursor; later pages follow the continuation token,
        // which S3 gives precedence anyway.
        request = match (&token, page) {
            (Some(token), _) => request.continuation_token(token),
            (None, 0) => request.set_start_after(match cursor {
                Cursor::Resume => state.resume_after.clone(),
                Cursor::Rescan => state.rescan.clone().flatten(),
            }),
            (None, _) => request,
        };
        let (result, output) = measure(Operation::ListObjects, request.send()).await;
        let Some(output) = output else {
            done.outcome = result.outcome;
            break;
        };
        for object in output.contents() {
            let Some(key) = object.key() else { continue };
            let last_modified = object.last_modified().and_then(|t| {
                let nanos = i32::try_from(t.subsec_nanos()).ok()?;
                jiff::Timestamp::new(t.secs(), nanos).ok()
            });
            state.observe(key, last_modified, &ignored);
            done.last_key = Some(key.to_owned());
        }
        match (output.is_truncated(), output.next_continuation_token()) {
            (Some(true), Some(next)) => token = Some(next.to_owned()),
            // Not truncated: the listing caught up.
            (Some(false) | None, _) => {
                done.caught_up = true;
                break;
            }
            (Some(true), None) => {
                done.outcome = Outcome::Err {
                    class: ErrorClass::Other,
                    message: "ListObjectsV2 said the page was truncated but gave no \
                              continuation token"
                        .to_owned(),
                };
                break;
            }
        }
    }
    done
}
