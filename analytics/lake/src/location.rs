//! Where a lake lives: a local folder, or a prefix of an S3 bucket, reached
//! through one `object_store` either way.
//!
//! `--lake` takes a path (`./lake`), a `file://` URL or `s3://bucket/prefix`.
//! S3 settings follow the AWS conventions and are read from the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_REGION`, `AWS_ENDPOINT_URL`); requests use path-style addressing
//! (`ENDPOINT/bucket/key`), which S3-compatible servers expect, unless
//! `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true`. Credentials stay inside the
//! store: nothing here formats them, and errors name the bucket and the
//! endpoint only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use url::Url;

use crate::tail_cache::TailCache;
use crate::{LakeError, LakeResult};

/// A parsed `--lake`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A folder on this machine (absolute).
    Local(PathBuf),
    /// `s3://bucket/prefix`: `prefix` without leading or trailing `/`.
    S3 { bucket: String, prefix: String },
}

impl Location {
    /// Parses a path, a `file://` URL or an `s3://bucket/prefix` URL. A
    /// relative path is taken from the current directory.
    pub fn parse(spec: &str) -> LakeResult<Location> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(LakeError::Location("the lake location is empty".into()));
        }
        match spec.split_once("://") {
            None => Ok(Location::Local(absolute(Path::new(spec))?)),
            Some((scheme, _)) => {
                let url = Url::parse(spec).map_err(|e| {
                    LakeError::Location(format!("{spec:?} is not a valid URL: {e}"))
                })?;
                match scheme.to_ascii_lowercase().as_str() {
                    "file" => {
                        let path = url.to_file_path().map_err(|()| {
                            LakeError::Location(format!("{spec:?} is not a local file URL"))
                        })?;
                        Ok(Location::Local(path))
                    }
                    "s3" | "s3a" => {
                        let bucket = url.host_str().unwrap_or_default().to_owned();
                        if bucket.is_empty() {
                            return Err(LakeError::Location(format!(
                                "{spec:?} names no bucket: use s3://BUCKET/PREFIX"
                            )));
                        }
                        let prefix = url.path().trim_matches('/').to_owned();
                        Ok(Location::S3 { bucket, prefix })
                    }
                    other => Err(LakeError::Location(format!(
                        "{spec:?}: unknown scheme {other:?}; the lake is a path, a file:// URL \
                         or an s3://bucket/prefix URL"
                    ))),
                }
            }
        }
    }

    /// The lake's root as a URL, ending in `/`.
    pub fn url(&self) -> Url {
        match self {
            Location::Local(p) => {
                Url::from_directory_path(p).expect("an absolute path is a file URL")
            }
            Location::S3 { bucket, prefix } => {
                let mut s = format!("s3://{bucket}/");
                if !prefix.is_empty() {
                    s.push_str(prefix);
                    s.push('/');
                }
                Url::parse(&s).expect("a bucket and a prefix make a URL")
            }
        }
    }

    /// The object store of the whole file system or bucket (the root of
    /// `url()`'s scheme and host), built from the environment for S3.
    pub fn root_store(&self) -> LakeResult<Arc<dyn ObjectStore>> {
        self.root_store_with(&[])
    }

    /// [`Location::root_store`] with S3 settings (`AWS_*` names) over those
    /// of the environment.
    pub fn root_store_with(
        &self,
        settings: &[(String, String)],
    ) -> LakeResult<Arc<dyn ObjectStore>> {
        match self {
            Location::Local(_) => Ok(Arc::new(LocalFileSystem::new())),
            Location::S3 { bucket, .. } => {
                // A few quick retries, then the error: a store that stays
                // down is reported by the caller (and retried at its next
                // round), not waited for in silence.
                let retry = object_store::RetryConfig {
                    max_retries: 4,
                    retry_timeout: std::time::Duration::from_secs(20),
                    ..Default::default()
                };
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry);
                let mut endpoint = s3_endpoint();
                for (key, value) in settings {
                    let key = key.to_ascii_lowercase();
                    if key.starts_with("aws_endpoint") {
                        endpoint = Some(value.clone());
                    }
                    if let Ok(k) = key.parse::<object_store::aws::AmazonS3ConfigKey>() {
                        builder = builder.with_config(k, value);
                    }
                }
                if let Some(endpoint) = endpoint {
                    builder = builder.with_allow_http(endpoint.starts_with("http://"));
                }
                // Each read is a request: the ends of files that never
                // change are fetched once (see `TailCache`).
                builder
                    .build()
                    .map(|s| Arc::new(TailCache::new(Arc::new(s))) as Arc<dyn ObjectStore>)
                    .map_err(|e| LakeError::Location(format!("the S3 settings: {e}")))
            }
        }
    }

    /// What to call the lake in messages: the path or URL, never a secret.
    pub fn display(&self) -> String {
        match self {
            Location::Local(p) => p.display().to_string(),
            Location::S3 { .. } => {
                let url = self.url();
                match s3_endpoint() {
                    Some(e) => format!("{url} (endpoint {e})"),
                    None => url.to_string(),
                }
            }
        }
    }
}

/// The S3 endpoint the environment names, if any.
pub fn s3_endpoint() -> Option<String> {
    ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

fn absolute(p: &Path) -> LakeResult<PathBuf> {
    let p = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| LakeError::Location(format!("the current directory: {e}")))?
            .join(p)
    };
    // `a/./b/../c` becomes `a/c` without touching the disk (the lake may not
    // exist yet).
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_files_and_buckets() {
        assert_eq!(
            Location::parse("/srv/lake").unwrap(),
            Location::Local("/srv/lake".into())
        );
        assert_eq!(
            Location::parse("file:///srv/lake/").unwrap(),
            Location::Local("/srv/lake/".into())
        );
        assert_eq!(
            Location::parse("s3://clicks/prod/lake/").unwrap(),
            Location::S3 {
                bucket: "clicks".into(),
                prefix: "prod/lake".into()
            }
        );
        assert_eq!(
            Location::parse("s3://clicks").unwrap().url().as_str(),
            "s3://clicks/"
        );
        assert_eq!(
            Location::parse("/srv/./x/../lake").unwrap().url().as_str(),
            "file:///srv/lake/"
        );
        let err = Location::parse("gs://bucket/lake").unwrap_err().to_string();
        assert!(err.contains("unknown scheme \"gs\""), "{err}");
        assert!(Location::parse("s3:///nobucket").is_err());
    }
}
