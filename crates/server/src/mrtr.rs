//! Sealed `requestState` for 2026-07-28 multi-round-trip requests (MRTR).
//!
//! A server may keep no memory between rounds, so everything a later round needs (the answers
//! the client gave in earlier rounds) travels in `requestState`. The client must not be able to
//! forge or alter it, nor replay it against another tool or after it expired: the state is an
//! HMAC-SHA256-sealed JSON document bound to the method, the target name and an expiry.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::model::Object;

/// How long a client has to answer an input request.
pub const STATE_LIFETIME_SECS: u64 = 15 * 60;

/// Seals and opens request states with a per-process key.
#[derive(Clone)]
pub struct StateSealer {
    key: [u8; 32],
}

impl std::fmt::Debug for StateSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateSealer(..)")
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl StateSealer {
    /// A sealer with a random key.
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self { key }
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(payload);
        mac
    }

    /// Seals the answers gathered so far for a call to `target` of `method`.
    pub fn seal(&self, method: &str, target: &str, answers: &Object) -> String {
        let doc = json!({"m": method, "t": target, "x": now_secs() + STATE_LIFETIME_SECS, "a": answers});
        let payload = doc.to_string();
        let tag = self.mac(payload.as_bytes()).finalize().into_bytes();
        format!("{}.{}", B64.encode(payload), B64.encode(tag))
    }

    /// Opens a state sealed for the same method and target; `None` if forged, altered,
    /// expired or meant for another call.
    pub fn open(&self, method: &str, target: &str, state: &str) -> Option<Object> {
        let (payload_b64, tag_b64) = state.split_once('.')?;
        let payload = B64.decode(payload_b64).ok()?;
        let tag = B64.decode(tag_b64).ok()?;
        self.mac(&payload).verify_slice(&tag).ok()?;
        let doc: Value = serde_json::from_slice(&payload).ok()?;
        let fresh = doc.get("x").and_then(Value::as_u64).is_some_and(|x| x >= now_secs());
        let same_call = doc.get("m").and_then(Value::as_str) == Some(method)
            && doc.get("t").and_then(Value::as_str) == Some(target);
        if !(fresh && same_call) {
            return None;
        }
        match doc.get("a") {
            Some(Value::Object(a)) => Some(a.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_opens_only_unaltered_and_for_its_own_call() {
        let s = StateSealer::random();
        let mut answers = Object::new();
        answers.insert("name".into(), json!({"action":"accept"}));
        let state = s.seal("tools/call", "greet", &answers);
        assert_eq!(s.open("tools/call", "greet", &state), Some(answers));
        assert_eq!(s.open("tools/call", "other", &state), None);
        assert_eq!(StateSealer::random().open("tools/call", "greet", &state), None);
        let mut tampered = state.clone().into_bytes();
        tampered[3] ^= 1;
        assert_eq!(s.open("tools/call", "greet", &String::from_utf8_lossy(&tampered)), None);
        assert_eq!(s.open("tools/call", "greet", "garbage"), None);
    }
}
