//! The `aws-kms://` backend: AWS KMS through the official SDK.
//!
//! Data keys come from `GenerateDataKey` (AES_256) and are unwrapped with `Decrypt`; a second primary
//! KEK wraps with `Encrypt`. Every call carries the EncryptionContext `{"codec":"tce-v1","namespace":…}`,
//! so a key policy can condition on `kms:EncryptionContext:namespace` and CloudTrail shows which
//! namespace each call served.
//!
//! What must stay true: `Decrypt` always names the key (`KeyId`), so a payload cannot make us decrypt
//! under a key of its choosing, and the `KeyId` every response returns must be the configured key (an
//! alias ARN is resolved once with `DescribeKey`); anything else is rejected and its plaintext dropped.
//! Credentials come from the default chain (environment, profile, web identity / EKS IRSA, container
//! and instance metadata); the region of each call is the region of the key's ARN. The SDK's own
//! retries are off: `Resilient` owns deadlines and retries, so the bounds of DESIGN §5 hold.
//! Key bytes we own are zeroized; the copies inside the SDK's request and response buffers are not
//! ours to wipe.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::config::retry::RetryConfig;
use aws_sdk_kms::config::timeout::TimeoutConfig;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use zeroize::Zeroizing;

use super::settings::AwsKmsConfig;
use super::{DataKey, KekUri, KmsBackend, KmsContext, KmsError, Provider, WrappedKey};

/// What a KMS key ARN names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyResource {
    /// `key/<key-id>`.
    Key(String),
    /// `alias/<name>`.
    Alias(String),
}

/// A parsed KMS key or alias ARN: `arn:<partition>:kms:<region>:<account>:key/<id>` or `…:alias/<name>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyArn {
    pub partition: String,
    pub region: String,
    pub account: String,
    pub resource: KeyResource,
}

impl KeyArn {
    /// Parses an ARN; the error says what is wrong with it.
    pub fn parse(arn: &str) -> Result<KeyArn, &'static str> {
        let parts: Vec<&str> = arn.split(':').collect();
        let [prefix, partition, service, region, account, resource] = parts.as_slice() else {
            return Err("not a KMS key ARN (arn:<partition>:kms:<region>:<account>:key/<id>)");
        };
        if *prefix != "arn" || *service != "kms" || !partition.starts_with("aws") {
            return Err("not a KMS key ARN (arn:<partition>:kms:<region>:<account>:key/<id>)");
        }
        if region.is_empty() || !region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err("the ARN has no valid region");
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err("the ARN's account must be 12 digits");
        }
        let resource = if let Some(id) = resource.strip_prefix("key/") {
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err("the key id may hold only letters, digits and '-'");
            }
            KeyResource::Key(id.to_owned())
        } else if let Some(name) = resource.strip_prefix("alias/") {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b)) {
                return Err("the alias name may hold only letters, digits, '/', '_' and '-'");
            }
            KeyResource::Alias(name.to_owned())
        } else {
            return Err("the ARN must name key/<id> or alias/<name>");
        };
        Ok(KeyArn {
            partition: (*partition).to_owned(),
            region: (*region).to_owned(),
            account: (*account).to_owned(),
            resource,
        })
    }
}

/// AWS KMS keys, one SDK client per region.
pub struct AwsBackend {
    keys: HashMap<String, (KeyArn, Client)>,
    /// Configured key ARN → the key ARN that responses must name (aliases resolved once).
    resolved: RwLock<HashMap<String, Arc<str>>>,
}

impl AwsBackend {
    /// Builds clients for `keks` (all `aws-kms://`). Loads credentials lazily: nothing is called here.
    pub async fn new(config: &AwsKmsConfig, keks: &[KekUri]) -> anyhow::Result<AwsBackend> {
        let mut arns = Vec::new();
        let mut resolved = HashMap::new();
        for kek in keks {
            let arn = KeyArn::parse(kek.key_part()).map_err(|reason| anyhow::anyhow!("{kek}: {reason}"))?;
            // A key ARN names itself; an alias ARN is resolved on first use.
            if matches!(arn.resource, KeyResource::Key(_)) {
                resolved.insert(kek.as_str().to_owned(), Arc::from(kek.key_part()));
            }
            arns.push((kek.as_str().to_owned(), arn));
        }
        // A region is set here so loading never asks the instance metadata service for one.
        let default_region = arns.first().map(|(_, arn)| arn.region.clone()).unwrap_or_else(|| "us-east-1".into());
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(default_region))
            .retry_config(RetryConfig::disabled())
            .timeout_config(TimeoutConfig::builder().connect_timeout(config.call_timeout).build());
        if let Some(url) = &config.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(profile) = &config.profile {
            loader = loader.profile_name(profile);
        }
        if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            loader = loader.credentials_provider(Credentials::new(id, secret.expose(), None, None, "codec-config"));
        }
        let shared = loader.load().await;
        let mut clients: HashMap<String, Client> = HashMap::new();
        let mut keys = HashMap::new();
        for (uri, arn) in arns {
            let client = clients
                .entry(arn.region.clone())
                .or_insert_with(|| {
                    let conf =
                        aws_sdk_kms::config::Builder::from(&shared).region(Region::new(arn.region.clone())).build();
                    Client::from_conf(conf)
                })
                .clone();
            keys.insert(uri, (arn, client));
        }
        Ok(AwsBackend { keys, resolved: RwLock::new(resolved) })
    }

    fn key(&self, kek: &KekUri) -> Result<&Client, KmsError> {
        self.keys
            .get(kek.as_str())
            .map(|(_, client)| client)
            .ok_or_else(|| KmsError::KeyNotFound { kek: kek.to_string() })
    }

    /// The key ARN that names this KEK in requests and must come back in responses.
    async fn key_arn(&self, kek: &KekUri) -> Result<Arc<str>, KmsError> {
        if let Some(arn) = self.resolved.read().unwrap_or_else(|e| e.into_inner()).get(kek.as_str()) {
            return Ok(arn.clone());
        }
        let client = self.key(kek)?;
        let described =
            client.describe_key().key_id(kek.key_part()).send().await.map_err(|e| map_error(kek, "DescribeKey", e))?;
        let arn: Arc<str> = described
            .key_metadata()
            .map(|m| Arc::from(m.arn().unwrap_or_default()))
            .filter(|arn: &Arc<str>| KeyArn::parse(arn).is_ok_and(|a| matches!(a.resource, KeyResource::Key(_))))
            .ok_or(KmsError::UntrustedResponse { kek: kek.to_string(), reason: "DescribeKey returned no key ARN" })?;
        tracing::info!(kek = %kek, key_arn = %arn, "Resolved a KMS alias to its key.");
        self.resolved.write().unwrap_or_else(|e| e.into_inner()).insert(kek.as_str().to_owned(), arn.clone());
        Ok(arn)
    }
}

/// `{"codec":"tce-v1","namespace":"<ns>"}` as an EncryptionContext.
fn encryption_context(ctx: &KmsContext) -> HashMap<String, String> {
    HashMap::from([("codec".to_owned(), "tce-v1".to_owned()), ("namespace".to_owned(), ctx.namespace().to_string())])
}

/// Rejects a response whose `KeyId` is not the key we asked for.
fn check_key_id(kek: &KekUri, expected: &str, returned: Option<&str>) -> Result<(), KmsError> {
    if returned == Some(expected) {
        return Ok(());
    }
    tracing::error!(kek = %kek, expected, returned = returned.unwrap_or("<none>"), "AWS KMS answered for another key; response discarded.");
    Err(KmsError::UntrustedResponse { kek: kek.to_string(), reason: "the response names another KeyId" })
}

/// Takes a data key out of a plaintext blob, zeroizing the SDK's buffer.
fn data_key(kek: &KekUri, plaintext: Option<Blob>) -> Result<DataKey, KmsError> {
    let bytes = Zeroizing::new(plaintext.map(Blob::into_inner).unwrap_or_default());
    DataKey::from_slice(&bytes)
        .ok_or(KmsError::UntrustedResponse { kek: kek.to_string(), reason: "the plaintext is not a 32-byte key" })
}

/// Maps an SDK error to what callers branch on: refusals are final, the rest is `Unavailable`.
fn map_error<E>(kek: &KekUri, op: &'static str, err: SdkError<E>) -> KmsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().unwrap_or_default().to_owned();
    let unavailable = |err: SdkError<E>| KmsError::Unavailable {
        retry_after: std::time::Duration::from_secs(1),
        source: format!("AWS KMS {op}: {}", DisplayErrorContext(&err)).into(),
    };
    if !matches!(err, SdkError::ServiceError(_)) {
        return unavailable(err);
    }
    let kek_s = kek.to_string();
    let refused = match code.as_str() {
        "NotFoundException" => KmsError::KeyNotFound { kek: kek_s },
        "InvalidCiphertextException" | "IncorrectKeyException" => KmsError::InvalidCiphertext,
        "DisabledException" | "KMSInvalidStateException" => KmsError::KeyDisabled { kek: kek_s },
        "ThrottlingException"
        | "LimitExceededException"
        | "KMSInternalException"
        | "DependencyTimeoutException"
        | "KeyUnavailableException"
        | "ExpiredTokenException"
        | "RequestExpired" => return unavailable(err),
        _ if status.is_some_and(|s| s >= 500 || s == 429) => return unavailable(err),
        // AccessDeniedException, InvalidKeyUsageException, UnrecognizedClientException, ValidationException…
        _ => KmsError::AccessDenied { kek: kek_s },
    };
    tracing::warn!(kek = %kek, op, code, status, "AWS KMS refused the request.");
    refused
}

#[async_trait]
impl KmsBackend for AwsBackend {
    fn provider(&self) -> Provider {
        Provider::AwsKms
    }

    async fn wrap(&self, kek: &KekUri, dek: &DataKey, ctx: &KmsContext) -> Result<WrappedKey, KmsError> {
        let arn = self.key_arn(kek).await?;
        let out = self
            .key(kek)?
            .encrypt()
            .key_id(arn.as_ref())
            .plaintext(Blob::new(dek.expose().to_vec()))
            .set_encryption_context(Some(encryption_context(ctx)))
            .send()
            .await
            .map_err(|e| map_error(kek, "Encrypt", e))?;
        check_key_id(kek, &arn, out.key_id())?;
        let wrapped = out.ciphertext_blob.map(Blob::into_inner).unwrap_or_default();
        if wrapped.is_empty() {
            return Err(KmsError::UntrustedResponse { kek: kek.to_string(), reason: "no ciphertext in the response" });
        }
        Ok(WrappedKey(wrapped))
    }

    async fn unwrap(&self, kek: &KekUri, wrapped: &WrappedKey, ctx: &KmsContext) -> Result<DataKey, KmsError> {
        let arn = self.key_arn(kek).await?;
        let out = self
            .key(kek)?
            .decrypt()
            .key_id(arn.as_ref())
            .ciphertext_blob(Blob::new(wrapped.0.clone()))
            .set_encryption_context(ctx.is_bound().then(|| encryption_context(ctx)))
            .send()
            .await
            .map_err(|e| map_error(kek, "Decrypt", e))?;
        let key_id = out.key_id.clone();
        let dek = data_key(kek, out.plaintext)?;
        check_key_id(kek, &arn, key_id.as_deref())?;
        Ok(dek)
    }

    async fn generate_data_key(&self, kek: &KekUri, ctx: &KmsContext) -> Result<(DataKey, WrappedKey), KmsError> {
        let arn = self.key_arn(kek).await?;
        let out = self
            .key(kek)?
            .generate_data_key()
            .key_id(arn.as_ref())
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(encryption_context(ctx)))
            .send()
            .await
            .map_err(|e| map_error(kek, "GenerateDataKey", e))?;
        let key_id = out.key_id.clone();
        let wrapped = out.ciphertext_blob.map(Blob::into_inner).unwrap_or_default();
        let dek = data_key(kek, out.plaintext)?;
        check_key_id(kek, &arn, key_id.as_deref())?;
        if wrapped.is_empty() {
            return Err(KmsError::UntrustedResponse { kek: kek.to_string(), reason: "no ciphertext in the response" });
        }
        Ok((dek, WrappedKey(wrapped)))
    }

    /// Every configured key exists, is enabled and is a symmetric encryption key.
    async fn health_check(&self) -> Result<(), KmsError> {
        for (uri, (_, client)) in &self.keys {
            let kek = KekUri::parse(uri).map_err(|_| KmsError::KeyNotFound { kek: uri.clone() })?;
            let described = client
                .describe_key()
                .key_id(kek.key_part())
                .send()
                .await
                .map_err(|e| map_error(&kek, "DescribeKey", e))?;
            let usable = described
                .key_metadata()
                .is_some_and(|m| m.enabled() && m.key_usage().is_some_and(|u| u.as_str() == "ENCRYPT_DECRYPT"));
            if !usable {
                return Err(KmsError::KeyDisabled { kek: uri.clone() });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_key_and_alias_arns() {
        let key = KeyArn::parse("arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab").unwrap();
        assert_eq!((key.region.as_str(), key.account.as_str()), ("eu-west-1", "111122223333"));
        assert_eq!(key.resource, KeyResource::Key("1234abcd-12ab-34cd-56ef-1234567890ab".into()));
        let alias = KeyArn::parse("arn:aws-us-gov:kms:us-gov-west-1:111122223333:alias/codec/payments").unwrap();
        assert_eq!(alias.resource, KeyResource::Alias("codec/payments".into()));
        assert_eq!(alias.partition, "aws-us-gov");
    }

    #[test]
    fn refuses_what_is_not_a_kms_key_arn() {
        for bad in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "alias/payments",
            "arn:aws:s3:::bucket",
            "arn:aws:kms:eu-west-1:1111:key/k",
            "arn:aws:kms::111122223333:key/k",
            "arn:aws:kms:eu-west-1:111122223333:key/",
            "arn:aws:kms:eu-west-1:111122223333:grant/k",
            "arn:aws:kms:eu-west-1:111122223333:key/k:extra",
        ] {
            assert!(KeyArn::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_context_is_the_namespace_binding_of_design_4() {
        let ctx = KmsContext::for_namespace(&crate::protocol::Namespace::parse("payments").unwrap());
        let map = encryption_context(&ctx);
        assert_eq!(map.len(), 2);
        assert_eq!((map["codec"].as_str(), map["namespace"].as_str()), ("tce-v1", "payments"));
    }

    #[test]
    fn a_response_for_another_key_is_rejected() {
        let kek = KekUri::parse("aws-kms://arn:aws:kms:eu-west-1:111122223333:key/a").unwrap();
        let expected = "arn:aws:kms:eu-west-1:111122223333:key/a";
        assert!(check_key_id(&kek, expected, Some(expected)).is_ok());
        for other in [Some("arn:aws:kms:eu-west-1:111122223333:key/b"), Some("a"), None] {
            assert!(matches!(check_key_id(&kek, expected, other), Err(KmsError::UntrustedResponse { .. })));
        }
    }
}
