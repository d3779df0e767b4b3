//! The aws-sdk-s3 adapter: the two object calls the OIDC publisher makes (read what is
//! published, put a document), beside the IAM adapter and with the same settings, errors
//! and write fence.

use futures::future::BoxFuture;

use crate::error::{AwsError, ErrorKind};
use crate::sdk::{AwsSettings, Fence, sdk_config, sorted};

/// Where an object lives.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub bucket: String,
    pub key: String,
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// Anything that stores objects (the SDK adapter).
pub trait ObjectStore: Send + Sync {
    /// The object's bytes; `None` when there is no such object.
    fn get<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<Option<Vec<u8>>, AwsError>>;
    /// Writes the whole object.
    fn put<'a>(
        &'a self,
        key: &'a ObjectKey,
        body: Vec<u8>,
        content_type: &'a str,
    ) -> BoxFuture<'a, Result<(), AwsError>>;
}

pub struct SdkS3 {
    s3: aws_sdk_s3::Client,
}

/// S3's reads are GET and HEAD.
fn is_s3_write(request: &aws_smithy_runtime_api::http::Request) -> bool {
    !matches!(request.method(), "GET" | "HEAD")
}

impl SdkS3 {
    /// The same credentials, region and endpoint as IAM's. With an endpoint override
    /// (an emulator, a private endpoint) buckets are addressed by path, which needs no
    /// wildcard DNS.
    pub async fn connect(settings: &AwsSettings) -> Self {
        Self::from_config(&sdk_config(settings).await, settings)
    }

    /// The adapter on an SDK configuration already loaded (IAM's).
    pub fn from_config(shared: &aws_config::SdkConfig, settings: &AwsSettings) -> Self {
        let mut s3 = aws_sdk_s3::config::Builder::from(shared)
            .force_path_style(settings.endpoint_url.is_some());
        if let Some(gate) = &settings.write_gate {
            s3 = s3.interceptor(Fence {
                gate: gate.clone(),
                is_write: is_s3_write,
            });
        }
        Self {
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
        }
    }

    async fn read(&self, key: &ObjectKey) -> Result<Option<Vec<u8>>, AwsError> {
        let sent = self
            .s3
            .get_object()
            .bucket(&key.bucket)
            .key(&key.key)
            .send()
            .await;
        let out = match sent {
            Ok(out) => out,
            Err(err) => {
                let err = sorted("GetObject", err);
                // A missing object is an answer; a missing bucket is not.
                return match err.code.as_deref() {
                    Some("NoSuchKey") => Ok(None),
                    _ => Err(err),
                };
            }
        };
        let bytes = out.body.collect().await.map_err(|e| {
            AwsError::new(
                ErrorKind::Unavailable,
                "GetObject",
                format!("reading {key}: {e}"),
            )
        })?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }

    async fn write(
        &self,
        key: &ObjectKey,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), AwsError> {
        self.s3
            .put_object()
            .bucket(&key.bucket)
            .key(&key.key)
            .content_type(content_type)
            .body(body.into())
            .send()
            .await
            .map_err(|e| sorted("PutObject", e))?;
        Ok(())
    }
}

impl ObjectStore for SdkS3 {
    fn get<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<Option<Vec<u8>>, AwsError>> {
        Box::pin(self.read(key))
    }
    fn put<'a>(
        &'a self,
        key: &'a ObjectKey,
        body: Vec<u8>,
        content_type: &'a str,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(self.write(key, body, content_type))
    }
}
