//! S3 Volumes (SPEC §11): a `type: s3` Volume is a bucket on the Repository's S3 endpoint
//! (`s3.endpoint`), addressed by path (`ENDPOINT/BUCKET`), each request signed with SigV4 by
//! the AWS SDK's signer (`aws-sigv4`). The bucket is named by `bucket`, else `TENANT-NAME`.
//!
//! S3 has no quota in its API (quotas are each server's own admin API), so `size` is
//! recorded on the bucket as the tag `dev.nimbus.size`, beside `dev.nimbus.managed-by` and
//! `dev.nimbus.address`, which mark what nimbus created: only such a bucket is ever deleted,
//! and one holding objects only with `--allow-deletes` (the planner's rule, from what is
//! observed here: `empty`, `used`). Other tags on the bucket are kept.
//!
//! The keys never leave this process: they sign requests and appear in no error, log or
//! state. An endpoint that refuses them fails the S3 Volumes only, with the server's reason.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use nimbus_planner::plan::{Action, Change, KindSchema, Observed, ProviderSchema};
use nimbus_schemas::{Bytes, Kind};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{Applied, BoxFuture, Cancel, ObserveRequest, Provider, ProviderError};

/// The provider's id, recorded in state with each bucket.
pub const PROVIDER: &str = nimbus_planner::rules::S3;

/// The tags nimbus puts on a bucket it creates.
const MANAGED_BY: &str = "dev.nimbus.managed-by";
const ADDRESS: &str = "dev.nimbus.address";
const SIZE: &str = "dev.nimbus.size";

/// How to reach the endpoint: resolved by `configure` from the Repository, its secrets and
/// the environment.
#[derive(Clone)]
pub struct S3Config {
    /// `http(s)://HOST[:PORT]`, without a trailing slash.
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"(sensitive)")
            .finish()
    }
}

/// Buckets on one S3 endpoint.
#[derive(Debug)]
pub struct S3Provider {
    config: S3Config,
    client: reqwest::Client,
}

/// What a response said: its status and body.
struct Response {
    status: u16,
    body: String,
}

impl Response {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The S3 error's code and message, as a sentence.
    fn reason(&self) -> String {
        let code = first(&self.body, "Code").unwrap_or_default();
        let message = first(&self.body, "Message").unwrap_or_default();
        match (code.is_empty(), message.is_empty()) {
            (true, true) => format!("HTTP {}", self.status),
            (false, true) => format!("{code} (HTTP {})", self.status),
            _ => format!("{code}: {message} (HTTP {})", self.status),
        }
    }

    /// The failure this response is: a refusal of the keys, a server in trouble (worth
    /// retrying), or a request the server turned down.
    fn error(&self, what: &str) -> ProviderError {
        let reason = self.reason();
        if self.status == 403 {
            ProviderError::Failed(format!(
                "the S3 endpoint refused the request to {what}: {reason}; check s3.accessKeyId \
                 and s3.secretAccessKey in the Repository (or AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY) and what they may do"
            ))
        } else if self.status >= 500 {
            ProviderError::Transient(format!("the S3 endpoint could not {what}: {reason}"))
        } else {
            ProviderError::Failed(format!("the S3 endpoint would not {what}: {reason}"))
        }
    }
}

/// What is observed of one bucket.
struct Bucket {
    tags: Vec<(String, String)>,
    empty: bool,
    used: u64,
}

impl S3Provider {
    pub fn new(config: S3Config) -> Result<S3Provider, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot make an HTTP client for S3: {e}"))?;
        Ok(S3Provider { config, client })
    }

    /// Sends one signed request: `path` is `/BUCKET` with an optional query.
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        headers: &[(&'static str, String)],
    ) -> Result<Response, ProviderError> {
        let url = format!("{}{path}", self.config.endpoint);
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        let identity = aws_credential_types::Credentials::new(
            &self.config.access_key_id,
            &self.config.secret_access_key,
            None,
            None,
            "nimbus",
        )
        .into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.config.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| ProviderError::Bug(format!("S3 signing parameters: {e}")))?
            .into();
        let signable = SignableRequest::new(
            method,
            url.as_str(),
            headers.iter().map(|(name, value)| (*name, value.as_str())),
            SignableBody::Bytes(&body),
        )
        .map_err(|e| ProviderError::Failed(format!("cannot sign a request to {url}: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| ProviderError::Failed(format!("cannot sign a request to {url}: {e}")))?
            .into_parts();
        let (signed, _) = instructions.into_parts();
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| ProviderError::Bug(format!("HTTP method {method}: {e}")))?;
        let mut request = self.client.request(method, &url).body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        for header in &signed {
            request = request.header(header.name(), header.value());
        }
        let response = request.send().await.map_err(|e| {
            let reason = format!("cannot reach the S3 endpoint {}: {e}", self.config.endpoint);
            if e.is_connect() || e.is_timeout() {
                ProviderError::Transient(reason)
            } else {
                ProviderError::Failed(reason)
            }
        })?;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        Ok(Response { status, body })
    }

    /// The names of the buckets the keys can see (one call, which also checks the keys).
    async fn bucket_names(&self) -> Result<Vec<String>, ProviderError> {
        let response = self.send("GET", "/", Vec::new(), &[]).await?;
        if !response.ok() {
            return Err(response.error("list the buckets"));
        }
        Ok(all(&response.body, "Name"))
    }

    async fn observe_bucket(&self, bucket: &str) -> Result<Bucket, ProviderError> {
        let tags = self.tags(bucket).await?;
        let listed = self
            .send("GET", &format!("/{bucket}?list-type=2"), Vec::new(), &[])
            .await?;
        if !listed.ok() {
            return Err(listed.error(&format!("list the objects of {bucket}")));
        }
        let keys = all(&listed.body, "Key");
        let used = all(&listed.body, "Size")
            .iter()
            .filter_map(|s| s.parse::<u64>().ok())
            .sum();
        Ok(Bucket {
            tags,
            empty: keys.is_empty(),
            used,
        })
    }

    async fn tags(&self, bucket: &str) -> Result<Vec<(String, String)>, ProviderError> {
        let response = self
            .send("GET", &format!("/{bucket}?tagging"), Vec::new(), &[])
            .await?;
        if response.status == 404 && response.body.contains("NoSuchTagSet") {
            return Ok(Vec::new());
        }
        if !response.ok() {
            return Err(response.error(&format!("read the tags of {bucket}")));
        }
        Ok(tag_pairs(&response.body))
    }

    async fn put_tags(&self, bucket: &str, tags: &[(String, String)]) -> Result<(), ProviderError> {
        let mut body =
            String::from(r#"<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet>"#);
        for (key, value) in tags {
            body.push_str(&format!(
                "<Tag><Key>{}</Key><Value>{}</Value></Tag>",
                escape(key),
                escape(value)
            ));
        }
        body.push_str("</TagSet></Tagging>");
        // PutBucketTagging wants a checksum of its body (Content-MD5 or this one).
        let checksum = base64(&Sha256::digest(body.as_bytes()));
        let response = self
            .send(
                "PUT",
                &format!("/{bucket}?tagging"),
                body.into_bytes(),
                &[
                    ("x-amz-checksum-sha256", checksum),
                    ("x-amz-sdk-checksum-algorithm", "SHA256".to_owned()),
                ],
            )
            .await?;
        if !response.ok() {
            return Err(response.error(&format!("tag {bucket}")));
        }
        Ok(())
    }

    /// Creates the bucket (or finds the one an interrupted run created) and tags it.
    async fn create(&self, address: &str, spec: &Value) -> Result<Applied, ProviderError> {
        let bucket = bucket_of(address, spec).map_err(|e| failed(address, e))?;
        if let Some(problem) = nimbus_planner::validate::bucket_name_problem(&bucket) {
            return Err(failed(
                address,
                format!("`{bucket}` is not a bucket name S3 accepts: {problem}"),
            ));
        }
        let size = crate::volume::size_of(address, spec)?;
        let body = if self.config.region == nimbus_schemas::DEFAULT_S3_REGION {
            Vec::new()
        } else {
            format!(
                r#"<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>"#,
                escape(&self.config.region)
            )
            .into_bytes()
        };
        // One that exists already is taken over only if nimbus made it for this Volume (a
        // run cut off after creating it); S3 answers a create of one's own bucket with success
        // in some regions, so this is asked first.
        let names = self.bucket_names().await.map_err(|e| e.naming(address))?;
        let tags = if names.contains(&bucket) {
            self.owned_tags(&bucket, address).await?
        } else {
            let response = self
                .send("PUT", &format!("/{bucket}"), body, &[])
                .await
                .map_err(|e| e.naming(address))?;
            if !response.ok() {
                return Err(response.error(&format!("create {bucket}")).naming(address));
            }
            Vec::new()
        };
        self.tag(&bucket, address, &size, tags)
            .await
            .map_err(|e| e.naming(address))?;
        Ok(Applied {
            observed: observed_spec(spec, &bucket, Some(&size), true, 0, true),
            outputs: json!({"bucket": bucket, "endpoint": self.config.endpoint}),
        })
    }

    /// The tags of a bucket nimbus created for this Volume; a failure naming it otherwise.
    async fn owned_tags(
        &self,
        bucket: &str,
        address: &str,
    ) -> Result<Vec<(String, String)>, ProviderError> {
        let tags = self.tags(bucket).await.map_err(|e| e.naming(address))?;
        if created_for(&tags, address) {
            Ok(tags)
        } else {
            Err(failed(
                address,
                format!(
                    "the bucket {bucket} exists and nimbus did not create it: give the Volume \
                     another `bucket`, or remove that bucket"
                ),
            ))
        }
    }

    /// Sets nimbus's tags on the bucket, keeping every other tag.
    async fn tag(
        &self,
        bucket: &str,
        address: &str,
        size: &Bytes,
        existing: Vec<(String, String)>,
    ) -> Result<(), ProviderError> {
        let mut tags: Vec<(String, String)> = existing
            .into_iter()
            .filter(|(key, _)| ![MANAGED_BY, ADDRESS, SIZE].contains(&key.as_str()))
            .collect();
        tags.push((MANAGED_BY.into(), "nimbus".into()));
        tags.push((ADDRESS.into(), address.into()));
        tags.push((SIZE.into(), size.to_string()));
        self.put_tags(bucket, &tags).await
    }

    /// Deletes the bucket when nimbus created it for this Volume, its objects first (the
    /// planner lets a delete of a bucket with objects through only with `--allow-deletes`).
    async fn delete(&self, address: &str, spec: &Value) -> Result<Applied, ProviderError> {
        let bucket = bucket_of(address, spec).map_err(|e| failed(address, e))?;
        let names = self.bucket_names().await.map_err(|e| e.naming(address))?;
        if !names.contains(&bucket) {
            return Ok(Applied::default());
        }
        let tags = self.tags(&bucket).await.map_err(|e| e.naming(address))?;
        if !created_for(&tags, address) {
            // Not nimbus's: it is forgotten, and left as it is.
            return Ok(Applied::default());
        }
        loop {
            let listed = self
                .send("GET", &format!("/{bucket}?list-type=2"), Vec::new(), &[])
                .await
                .map_err(|e| e.naming(address))?;
            if !listed.ok() {
                return Err(listed
                    .error(&format!("list the objects of {bucket}"))
                    .naming(address));
            }
            let keys = all(&listed.body, "Key");
            if keys.is_empty() {
                break;
            }
            for key in keys {
                let response = self
                    .send(
                        "DELETE",
                        &format!("/{bucket}/{}", encode_key(&key)),
                        Vec::new(),
                        &[],
                    )
                    .await
                    .map_err(|e| e.naming(address))?;
                if !response.ok() {
                    return Err(response
                        .error(&format!("delete {key} from {bucket}"))
                        .naming(address));
                }
            }
        }
        let response = self
            .send("DELETE", &format!("/{bucket}"), Vec::new(), &[])
            .await
            .map_err(|e| e.naming(address))?;
        if !response.ok() && response.status != 404 {
            return Err(response.error(&format!("delete {bucket}")).naming(address));
        }
        Ok(Applied::default())
    }
}

/// The Volume's kind as S3 serves it: a new size is a new tag; another bucket or tenant is
/// another bucket.
pub fn kind_schema() -> KindSchema {
    KindSchema {
        compare_fields: Some(
            ["type", "size", "bucket", "tenant"]
                .map(str::to_owned)
                .to_vec(),
        ),
        replace_fields: ["type", "bucket", "tenant"].map(str::to_owned).to_vec(),
        ..KindSchema::default_for(Kind::Volume)
    }
}

impl Provider for S3Provider {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn describe(&self) -> ProviderSchema {
        ProviderSchema {
            provider: PROVIDER.to_owned(),
            kinds: vec![kind_schema()],
        }
    }

    /// Buckets of the endpoint that carry no tag of nimbus's (`nimbus discover`).
    fn discover<'a>(
        &'a self,
        target: Option<&'a str>,
        _request: &'a nimbus_provider_core::DiscoverRequest,
    ) -> BoxFuture<'a, Result<Vec<nimbus_provider_core::Discovered>, ProviderError>> {
        Box::pin(async move {
            if target.is_some() {
                return Ok(Vec::new());
            }
            let mut found = Vec::new();
            for bucket in self.bucket_names().await? {
                let tags = self.tags(&bucket).await.unwrap_or_default();
                if tags.iter().any(|(key, _)| key == MANAGED_BY) {
                    continue;
                }
                found.push(nimbus_provider_core::Discovered {
                    kind: "Volume".into(),
                    name: nimbus_provider_core::label_of(&bucket),
                    address: None,
                    detail: format!("S3 bucket at {}", self.config.endpoint),
                    identity: bucket,
                    spec: None,
                    secrets: Default::default(),
                });
            }
            Ok(found)
        })
    }

    fn observe<'a>(
        &'a self,
        _target: Option<&'a str>,
        batch: &'a [ObserveRequest],
    ) -> BoxFuture<'a, Result<Vec<(String, Observed)>, ProviderError>> {
        Box::pin(async move {
            let names = self.bucket_names().await?;
            let mut seen = Vec::new();
            for request in batch {
                let desired = request.desired.clone().unwrap_or(Value::Null);
                let Ok(bucket) = bucket_of(&request.address, &desired) else {
                    seen.push((request.address.clone(), Observed::Absent));
                    continue;
                };
                if !names.contains(&bucket) {
                    seen.push((request.address.clone(), Observed::Absent));
                    continue;
                }
                let found = self
                    .observe_bucket(&bucket)
                    .await
                    .map_err(|e| e.naming(&request.address))?;
                let size = found
                    .tags
                    .iter()
                    .find(|(key, _)| key == SIZE)
                    .and_then(|(_, value)| Bytes::parse(value).ok());
                seen.push((
                    request.address.clone(),
                    Observed::Present(observed_spec(
                        &desired,
                        &bucket,
                        size.as_ref(),
                        found.empty,
                        found.used,
                        created_for(&found.tags, &request.address),
                    )),
                ));
            }
            Ok(seen)
        })
    }

    fn apply<'a>(
        &'a self,
        change: &'a Change,
        _cancel: &'a Cancel,
    ) -> BoxFuture<'a, Result<Applied, ProviderError>> {
        Box::pin(async move {
            let address = &change.address;
            match (change.action, &change.before, &change.after) {
                (Action::Delete, Some(before), _) => self.delete(address, before).await,
                (Action::Replace, Some(before), Some(after)) => {
                    self.delete(address, before).await?;
                    self.create(address, after).await
                }
                (Action::Update, _, Some(after)) => {
                    let bucket = bucket_of(address, after).map_err(|e| failed(address, e))?;
                    let size = crate::volume::size_of(address, after)?;
                    let tags = self.owned_tags(&bucket, address).await?;
                    self.tag(&bucket, address, &size, tags)
                        .await
                        .map_err(|e| e.naming(address))?;
                    Ok(Applied {
                        observed: after.clone(),
                        outputs: json!({"bucket": bucket, "endpoint": self.config.endpoint}),
                    })
                }
                (_, _, Some(after)) => self.create(address, after).await,
                _ => Err(ProviderError::Bug(format!(
                    "{address}: a {:?} without the spec it needs",
                    change.action
                ))),
            }
        })
    }
}

fn failed(address: &str, message: impl std::fmt::Display) -> ProviderError {
    ProviderError::Failed(format!("{address}: {message}"))
}

/// The bucket of `Volume/TENANT/NAME`: its `bucket`, else `TENANT-NAME`.
pub fn bucket_of(address: &str, spec: &Value) -> Result<String, String> {
    if let Some(bucket) = spec.get("bucket").and_then(Value::as_str) {
        return Ok(bucket.to_owned());
    }
    let (tenant, name) = address
        .strip_prefix("Volume/")
        .and_then(|rest| rest.split_once('/'))
        .ok_or_else(|| format!("{address} is not a Volume's address"))?;
    Ok(format!("{tenant}-{name}"))
}

/// Whether the tags say nimbus created the bucket for this Volume.
fn created_for(tags: &[(String, String)], address: &str) -> bool {
    let tag = |name: &str| {
        tags.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    tag(MANAGED_BY) == Some("nimbus") && tag(ADDRESS) == Some(address)
}

/// The Volume as observed: the desired spec with what the bucket says.
fn observed_spec(
    desired: &Value,
    bucket: &str,
    size: Option<&Bytes>,
    empty: bool,
    used: u64,
    created: bool,
) -> Value {
    let mut observed = desired.clone();
    if let Value::Object(map) = &mut observed {
        map.insert(
            "size".into(),
            size.map_or(json!("no size tag"), |s| json!(s.to_string())),
        );
        if map.contains_key("bucket") {
            map.insert("bucket".into(), json!(bucket));
        }
        map.insert("empty".into(), json!(empty));
        map.insert("used".into(), json!(used));
        map.insert("createdByNimbus".into(), json!(created));
    }
    observed
}

/// The text of every `<TAG>...</TAG>` element, in order (S3's responses are flat enough).
fn all(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        found.push(unescape(&after[..end]));
        rest = &after[end + close.len()..];
    }
    found
}

fn first(xml: &str, tag: &str) -> Option<String> {
    all(xml, tag).into_iter().next()
}

/// The `(Key, Value)` pairs of a `<Tagging>` document.
fn tag_pairs(xml: &str) -> Vec<(String, String)> {
    all(xml, "Tag")
        .iter()
        .filter_map(|tag| Some((first(tag, "Key")?, first(tag, "Value")?)))
        .collect()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// An object key in a path: every byte but the unreserved ones and `/` percent-encoded.
fn encode_key(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Standard base64, padded: what S3's checksum headers take.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn tags_and_errors_are_read_from_s3_xml() {
        let tagging = "<Tagging><TagSet><Tag><Key>a&amp;b</Key><Value>1</Value></Tag>\
                       <Tag><Key>dev.nimbus.size</Key><Value>1Gi</Value></Tag></TagSet></Tagging>";
        assert_eq!(
            tag_pairs(tagging),
            vec![
                ("a&b".to_owned(), "1".to_owned()),
                ("dev.nimbus.size".to_owned(), "1Gi".to_owned())
            ]
        );
        let refused = Response {
            status: 403,
            body: "<Error><Code>InvalidAccessKeyId</Code><Message>no such key</Message></Error>"
                .into(),
        };
        let error = refused.error("list the buckets");
        assert!(matches!(&error, ProviderError::Failed(m)
            if m.contains("InvalidAccessKeyId: no such key (HTTP 403)") && m.contains("s3.secretAccessKey")));
    }

    #[test]
    fn buckets_are_named_for_the_volume_unless_named() {
        assert_eq!(
            bucket_of("Volume/acme/data", &json!({})).as_deref(),
            Ok("acme-data")
        );
        assert_eq!(
            bucket_of("Volume/acme/data", &json!({"bucket": "x-y"})).as_deref(),
            Ok("x-y")
        );
    }

    #[test]
    fn keys_are_encoded_in_paths() {
        assert_eq!(encode_key("a b/c+d.txt"), "a%20b/c%2Bd.txt");
    }
}
