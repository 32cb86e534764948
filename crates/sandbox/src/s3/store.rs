//! The storage behind each region: s3s-fs, with a ListObjectsV2 that reads only what it
//! returns.
//!
//! s3s-fs answers every ListObjectsV2 by walking the whole bucket, asking the filesystem
//! for each file's metadata, then sorting and cutting out the page. On a bucket of 100,000
//! backup objects a single page costs seconds, which makes the benchmark that counts S3
//! requests on such a bucket (`list_cost`) take most of an hour. [`Store`] passes every
//! operation to s3s-fs unchanged except a listing without a delimiter (the only kind
//! Backstop and the simulated operator send): that one descends only into the directory the
//! prefix names, takes names from the directory entries (no metadata), and reads the
//! metadata of the page's objects alone. What it answers is what s3s-fs answers, field for
//! field; the tests below hold the two side by side.

use std::path::{Path, PathBuf};

use s3s::dto::{
    AbortMultipartUploadInput, AbortMultipartUploadOutput, CompleteMultipartUploadInput,
    CompleteMultipartUploadOutput, CopyObjectInput, CopyObjectOutput, CreateBucketInput,
    CreateBucketOutput, CreateMultipartUploadInput, CreateMultipartUploadOutput, DeleteBucketInput,
    DeleteBucketOutput, DeleteObjectInput, DeleteObjectOutput, DeleteObjectsInput,
    DeleteObjectsOutput, GetBucketLocationInput, GetBucketLocationOutput, GetObjectInput,
    GetObjectOutput, HeadBucketInput, HeadBucketOutput, HeadObjectInput, HeadObjectOutput,
    ListBucketsInput, ListBucketsOutput, ListObjectsInput, ListObjectsOutput, ListObjectsV2Input,
    ListObjectsV2Output, ListPartsInput, ListPartsOutput, Object, PutObjectInput, PutObjectOutput,
    Timestamp, UploadPartCopyInput, UploadPartCopyOutput, UploadPartInput, UploadPartOutput,
};
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};

/// s3s-fs over `root`, with the page-sized listing.
pub(crate) struct Store {
    fs: s3s_fs::FileSystem,
    root: PathBuf,
}

impl Store {
    /// The store over `root`, a directory holding one directory per bucket.
    pub(crate) fn new(root: &Path) -> Result<Self, String> {
        let fs = s3s_fs::FileSystem::new(root).map_err(|e| format!("{e:?}"))?;
        // s3s-fs resolves buckets under the canonical path; so must the listing.
        let root = root.canonicalize().map_err(|e| e.to_string())?;
        Ok(Self { fs, root })
    }
}

/// One page of a listing without a delimiter.
struct Page {
    /// Keys in order, with their files.
    objects: Vec<(String, PathBuf)>,
    /// When more keys follow the page: the page's last key, where the next one resumes.
    resume: Option<String>,
}

/// The keys under `bucket_dir` that start with `prefix` and sort after `after`, the first
/// `max_keys` of them in order. Only the directory the prefix names is walked.
fn page(
    bucket_dir: &Path,
    prefix: &str,
    after: Option<&str>,
    max_keys: usize,
) -> std::io::Result<Page> {
    // "prod/cluster1-" names the directory "prod" and the file-name prefix "cluster1-". A
    // directory part that is not a plain path ("..", ".", "//") is never joined to the
    // bucket's path: the walk then starts at the bucket and the prefix only filters, as in
    // s3s-fs, where no key has such a part.
    let plain = |dir: &str| {
        dir.split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
    };
    let mut stack = match prefix.rfind('/') {
        Some(slash) if plain(&prefix[..slash]) => {
            let dir = &prefix[..=slash];
            vec![(bucket_dir.join(dir), dir.to_owned())]
        }
        _ => vec![(bucket_dir.to_owned(), String::new())],
    };
    let mut keys = Vec::new();
    while let Some((dir, key_prefix)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // A prefix whose directory part does not exist, runs into an object ("a/x/"
            // where "a" is a key) or cannot be a file name selects nothing.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound
                        | std::io::ErrorKind::NotADirectory
                        | std::io::ErrorKind::InvalidFilename
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                // s3s-fs cannot name such a file as a key either.
                continue;
            };
            let key = format!("{key_prefix}{name}");
            let kind = entry.file_type()?;
            if kind.is_dir() {
                // Descend only where keys of the prefix can be.
                let dir_key = format!("{key}/");
                if dir_key.starts_with(prefix) || prefix.starts_with(&dir_key) {
                    stack.push((entry.path(), dir_key));
                }
            } else if key.starts_with(prefix) && after.is_none_or(|a| key.as_str() > a) {
                keys.push((key, entry.path()));
            }
        }
    }
    let truncated = max_keys > 0 && keys.len() > max_keys;
    if keys.len() > max_keys {
        keys.select_nth_unstable_by(max_keys, |a, b| a.0.cmp(&b.0));
        keys.truncate(max_keys);
    }
    keys.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let resume = truncated
        .then(|| keys.last().map(|(key, _)| key.clone()))
        .flatten();
    Ok(Page {
        objects: keys,
        resume,
    })
}

/// Forwards each named operation to s3s-fs.
macro_rules! store_forwarding {
    ($($op:ident($input:ty) -> $output:ty;)*) => {
        #[async_trait::async_trait]
        impl S3 for Store {
            $(
                async fn $op(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    self.fs.$op(req).await
                }
            )*

            async fn list_objects_v2(
                &self,
                req: S3Request<ListObjectsV2Input>,
            ) -> S3Result<S3Response<ListObjectsV2Output>> {
                if req.input.delimiter.is_some() {
                    return self.fs.list_objects_v2(req).await;
                }
                self.list_page(req.input).await.map(S3Response::new)
            }
        }
    };
}

store_forwarding! {
    create_bucket(CreateBucketInput) -> CreateBucketOutput;
    copy_object(CopyObjectInput) -> CopyObjectOutput;
    delete_bucket(DeleteBucketInput) -> DeleteBucketOutput;
    delete_object(DeleteObjectInput) -> DeleteObjectOutput;
    delete_objects(DeleteObjectsInput) -> DeleteObjectsOutput;
    get_bucket_location(GetBucketLocationInput) -> GetBucketLocationOutput;
    get_object(GetObjectInput) -> GetObjectOutput;
    head_bucket(HeadBucketInput) -> HeadBucketOutput;
    head_object(HeadObjectInput) -> HeadObjectOutput;
    list_buckets(ListBucketsInput) -> ListBucketsOutput;
    list_objects(ListObjectsInput) -> ListObjectsOutput;
    put_object(PutObjectInput) -> PutObjectOutput;
    create_multipart_upload(CreateMultipartUploadInput) -> CreateMultipartUploadOutput;
    upload_part(UploadPartInput) -> UploadPartOutput;
    upload_part_copy(UploadPartCopyInput) -> UploadPartCopyOutput;
    list_parts(ListPartsInput) -> ListPartsOutput;
    complete_multipart_upload(CompleteMultipartUploadInput) -> CompleteMultipartUploadOutput;
    abort_multipart_upload(AbortMultipartUploadInput) -> AbortMultipartUploadOutput;
}

impl Store {
    /// A listing without a delimiter, answered as s3s-fs answers it.
    async fn list_page(&self, input: ListObjectsV2Input) -> S3Result<ListObjectsV2Output> {
        if !s3s::path::check_bucket_name(&input.bucket) {
            return Err(s3_error!(InvalidBucketName));
        }
        let bucket_dir = self.root.join(&input.bucket);
        let prefix = input
            .prefix
            .as_deref()
            .unwrap_or("")
            .trim_start_matches('/')
            .to_owned();
        // s3s-fs resumes after the later of the two (`None` sorts before any key).
        let after = input
            .continuation_token
            .as_deref()
            .max(input.start_after.as_deref())
            .map(str::to_owned);
        let max_keys = input.max_keys.unwrap_or(1000);
        let limit = usize::try_from(max_keys).unwrap_or(1000);

        let read = tokio::task::spawn_blocking(move || {
            if !bucket_dir.is_dir() {
                return Ok(None);
            }
            let page = page(&bucket_dir, &prefix, after.as_deref(), limit)?;
            // The walk's last key resumes the next page even if objects at the end of this
            // one were deleted before their metadata was read.
            let resume = page.resume;
            let mut objects = Vec::with_capacity(page.objects.len());
            for (key, path) in page.objects {
                let metadata = match std::fs::metadata(&path) {
                    Ok(metadata) => metadata,
                    // Deleted since the walk (a canary, say): no longer listed.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                objects.push(Object {
                    key: Some(key),
                    last_modified: Some(Timestamp::from(metadata.modified()?)),
                    size: i64::try_from(metadata.len()).ok(),
                    ..Default::default()
                });
            }
            Ok::<_, std::io::Error>(Some((objects, resume)))
        })
        .await;
        let (objects, next_continuation_token) = match read {
            Ok(Ok(Some(found))) => found,
            Ok(Ok(None)) => return Err(s3_error!(NoSuchBucket)),
            Ok(Err(e)) => return Err(s3_error!(e, InternalError)),
            Err(e) => return Err(s3_error!(e, InternalError)),
        };
        Ok(ListObjectsV2Output {
            key_count: Some(i32::try_from(objects.len()).unwrap_or(i32::MAX)),
            max_keys: Some(max_keys),
            is_truncated: Some(next_continuation_token.is_some()),
            contents: (!objects.is_empty()).then_some(objects),
            continuation_token: input.continuation_token,
            next_continuation_token,
            encoding_type: input.encoding_type,
            name: Some(input.bucket),
            prefix: input.prefix,
            start_after: input.start_after,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(input: ListObjectsV2Input) -> S3Request<ListObjectsV2Input> {
        S3Request {
            input,
            method: hyper::http::Method::GET,
            uri: hyper::http::Uri::from_static("/"),
            headers: hyper::http::HeaderMap::new(),
            extensions: hyper::http::Extensions::new(),
            credentials: None,
            region: None,
            service: None,
            trailing_headers: None,
        }
    }

    fn input(
        prefix: Option<&str>,
        start_after: Option<&str>,
        token: Option<&str>,
        max_keys: Option<i32>,
    ) -> ListObjectsV2Input {
        let mut b = ListObjectsV2Input::builder();
        b.set_bucket("bkt".to_owned());
        b.set_prefix(prefix.map(str::to_owned));
        b.set_start_after(start_after.map(str::to_owned));
        b.set_continuation_token(token.map(str::to_owned));
        b.set_max_keys(max_keys);
        b.build().unwrap()
    }

    #[tokio::test]
    async fn every_listing_answers_as_s3s_fs_answers_it() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = dir.path().join("bkt");
        let keys = [
            "a",
            "prod/c1-2026-11-01-full/xtrabackup_info",
            "prod/c1-2026-11-01-full/z.xbstream",
            "prod/c1-2026-11-02-full/xtrabackup_info",
            "prod/c2-2026-11-01-full/xtrabackup_info",
            "prod/.backstop-canary/x",
            "prod2/y",
            "production",
            "z/deep/er/key",
        ];
        for key in keys {
            let path = bucket.join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, key.as_bytes()).unwrap();
        }
        let store = Store::new(dir.path()).unwrap();
        let oracle = s3s_fs::FileSystem::new(dir.path()).unwrap();

        // A directory part longer than a file name may be.
        let long_prefix = format!("{}/", "d".repeat(300));
        let prefixes = [
            None,
            Some(""),
            Some("prod"),
            Some("prod/"),
            Some("prod/c1-"),
            Some("prod/c1-2026-11-01-full/"),
            Some("nothing/"),
            Some("/prod/"),
            Some("prod//"),
            Some("../bkt/prod/"),
            Some("production/"),
            Some("a/x/"),
            Some(&long_prefix),
        ];
        let afters = [None, Some("prod/c1-2026-11-01-full/z.xbstream"), Some("zz")];
        let tokens = [None, Some("prod/c1")];
        let sizes = [None, Some(0), Some(1), Some(2), Some(1000)];
        let mut compared = 0;
        for prefix in prefixes {
            for after in afters {
                for token in tokens {
                    for size in sizes {
                        let ours = store
                            .list_objects_v2(list(input(prefix, after, token, size)))
                            .await
                            .unwrap()
                            .output;
                        let theirs = oracle
                            .list_objects_v2(list(input(prefix, after, token, size)))
                            .await
                            .unwrap()
                            .output;
                        assert_eq!(
                            format!("{ours:?}"),
                            format!("{theirs:?}"),
                            "prefix {prefix:?} after {after:?} token {token:?} max {size:?}"
                        );
                        compared += 1;
                    }
                }
            }
        }
        assert_eq!(compared, 13 * 3 * 2 * 5);
    }

    #[tokio::test]
    async fn a_missing_bucket_is_no_such_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path()).unwrap();
        let mut b = ListObjectsV2Input::builder();
        b.set_bucket("missing".to_owned());
        let err = store
            .list_objects_v2(list(b.build().unwrap()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), &s3s::S3ErrorCode::NoSuchBucket);
    }
}
