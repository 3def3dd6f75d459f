//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `"{webhook-id}.{webhook-timestamp}.{body}"`, keyed by the bytes of a `whsec_` secret.
//!
//! Several secrets sign at once during a key rotation: the header then carries one `v1,…` per
//! secret, separated by spaces, and a receiver accepts the message if any of them verifies.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The message id, the same on every attempt (receivers deduplicate by it).
pub const WEBHOOK_ID: http::HeaderName = http::HeaderName::from_static("webhook-id");
/// Seconds since the Unix epoch at the attempt.
pub const WEBHOOK_TIMESTAMP: http::HeaderName = http::HeaderName::from_static("webhook-timestamp");
/// `v1,<base64>` per secret, space-separated.
pub const WEBHOOK_SIGNATURE: http::HeaderName = http::HeaderName::from_static("webhook-signature");

/// A signing secret, as Standard Webhooks writes it: `whsec_` and the base64 of the key.
#[derive(Clone)]
pub struct Secret {
    key: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(whsec_…)")
    }
}

/// Why a secret was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SecretError {
    /// Not `whsec_` followed by base64.
    #[error("a webhook secret is `whsec_` followed by base64 (e.g. whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw)")]
    Malformed,
    /// Shorter than 24 bytes (Standard Webhooks asks for 24 to 64).
    #[error("a webhook secret must hold at least 24 bytes of key; this one holds {0}")]
    TooShort(usize),
}

impl Secret {
    /// Parses `whsec_<base64>`.
    ///
    /// ```
    /// use taskwire_webhook::Secret;
    /// assert!(Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
    /// assert!(Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text.trim().strip_prefix("whsec_").ok_or(SecretError::Malformed)?;
        let key = STANDARD.decode(encoded).map_err(|_| SecretError::Malformed)?;
        if key.len() < 24 {
            return Err(SecretError::TooShort(key.len()));
        }
        Ok(Self { key })
    }

    /// A fresh random secret of 32 bytes, in its `whsec_` form.
    pub fn generate() -> String {
        let mut key = uuid::Uuid::new_v4().into_bytes().to_vec();
        key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        format!("whsec_{}", STANDARD.encode(key))
    }
}

/// Signs messages with one or more secrets (the newest first during a rotation).
#[derive(Clone, Debug)]
pub struct Signer {
    secrets: Vec<Secret>,
}

impl Signer {
    /// A signer over `secrets` (at least one).
    pub fn new(secrets: Vec<Secret>) -> Option<Self> {
        (!secrets.is_empty()).then_some(Self { secrets })
    }

    /// The `webhook-signature` value for a message.
    ///
    /// ```
    /// use taskwire_webhook::{Secret, Signer};
    /// // The example of the Standard Webhooks specification.
    /// let signer = Signer::new(vec![Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()]).unwrap();
    /// let signature = signer.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
    /// assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    /// ```
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let mut header = String::with_capacity(48 * self.secrets.len());
        for secret in &self.secrets {
            // Any key length is valid for HMAC; `new_from_slice` cannot fail here.
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&secret.key) else { continue };
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            if !header.is_empty() {
                header.push(' ');
            }
            header.push_str("v1,");
            header.push_str(&STANDARD.encode(mac.finalize().into_bytes()));
        }
        header
    }
}

/// The Standard Webhooks headers of one message: `webhook-id`, `webhook-timestamp` (now, in
/// seconds) and, with a signer, `webhook-signature`.
pub fn standard_headers(id: &str, body: &[u8], signer: Option<&Signer>) -> http::HeaderMap {
    use http::HeaderValue;
    let timestamp = taskwire_engine::now_ms() / 1000;
    let mut headers = http::HeaderMap::with_capacity(3);
    if let Ok(value) = HeaderValue::from_str(id) {
        headers.insert(WEBHOOK_ID, value);
    }
    headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
    if let Some(signer) = signer
        && let Ok(signature) = HeaderValue::from_str(&signer.sign(id, timestamp, body))
    {
        headers.insert(WEBHOOK_SIGNATURE, signature);
    }
    headers
}
