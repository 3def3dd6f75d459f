//! Reserved `_meta` keys, and a request's params read with the per-request ones set aside.

use std::fmt;

use serde::de::value::SeqAccessDeserializer;
use serde::de::{Deserialize, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use crate::jsonrpc::{Key, Params};

/// Per-request protocol version (2026-07-28, required on every request).
pub const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// Per-request client capabilities (2026-07-28, required on every request).
pub const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// Per-request client identity (2026-07-28, optional).
pub const CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// Per-request opt-in to `notifications/message` (2026-07-28).
pub const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// Server identity attached to 2026-07-28 results.
pub const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// Tag on every notification delivered on a `subscriptions/listen` stream.
pub const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
/// Legacy (2025-11-25) related-task metadata.
pub const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";
/// Progress token (both eras; unprefixed).
pub const PROGRESS_TOKEN: &str = "progressToken";
/// The tasks extension identifier (SEP-2663).
pub const TASKS_EXTENSION: &str = "io.modelcontextprotocol/tasks";

/// A request's `params` object, read in one pass that sets the 2026-07-28 per-request members
/// of its `_meta` aside.
///
/// Every 2026-07-28 request carries its protocol version, capabilities and client identity in
/// `_meta` (~200 bytes). Built into the params `Value` and looked up again, they were a third of
/// what a 2026-07-28 call cost above a 2025 one (callgrind); here the version, capabilities and
/// log level are moved out as they are read, and `clientInfo`, which nothing uses, is skipped
/// unbuilt. The rest of `_meta` stays in [`RequestParams::object`] for handlers
/// (`progressToken`, webhooks, idempotency keys).
///
/// ```
/// use taskwire_protocol::meta::{RequestParams, ParamsError};
/// let p = RequestParams::parse(r#"{"name":"echo","_meta":{
///     "io.modelcontextprotocol/protocolVersion":"2026-07-28",
///     "io.modelcontextprotocol/clientCapabilities":{},
///     "io.modelcontextprotocol/clientInfo":{"name":"c","version":"1"},
///     "progressToken":7}}"#).unwrap();
/// assert_eq!(p.protocol_version, Some(serde_json::json!("2026-07-28")));
/// assert_eq!(p.client_capabilities, Some(serde_json::json!({})));
/// assert_eq!(serde_json::Value::Object(p.object), serde_json::json!({"name":"echo","_meta":{"progressToken":7}}));
/// assert!(matches!(RequestParams::parse("[1]"), Err(ParamsError::NotAnObject)));
/// assert!(matches!(RequestParams::parse(r#"{"a":"\ud800"}"#), Err(ParamsError::Invalid(_))));
/// ```
#[derive(Debug, Default)]
pub struct RequestParams {
    /// The params; its `_meta`, if an object, without the members below.
    pub object: Map<String, Value>,
    /// `_meta[`[`PROTOCOL_VERSION`]`]` as sent (any JSON type: the caller validates it).
    pub protocol_version: Option<Value>,
    /// `_meta[`[`CLIENT_CAPABILITIES`]`]` as sent.
    pub client_capabilities: Option<Value>,
    /// `_meta[`[`LOG_LEVEL`]`]` as sent.
    pub log_level: Option<Value>,
}

/// Why [`RequestParams::parse`] refused its input.
#[derive(Debug)]
pub enum ParamsError {
    /// Valid JSON, but not an object.
    NotAnObject,
    /// Not valid JSON (for instance a lone surrogate escape, which a `RawValue` lets through).
    Invalid(serde_json::Error),
}

impl RequestParams {
    /// Reads a params object from its JSON text.
    pub fn parse(text: &str) -> Result<Self, ParamsError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let parsed = de.deserialize_any(ParamsVisitor).map_err(ParamsError::Invalid)?;
        de.end().map_err(ParamsError::Invalid)?;
        parsed.ok_or(ParamsError::NotAnObject)
    }
}

/// A request's params as a server reads them: parsed, or why they could not be (answered
/// `-32602` with the request's id, where a broken envelope is `-32600` or `-32700`).
///
/// As a [`Params`] form, an object is parsed in the envelope's own pass; anything else (an
/// array, a lone surrogate inside a string) sends the message to the raw reading, which then
/// parses the params here on their own, as before.
///
/// ```
/// use taskwire_protocol::jsonrpc::Message;
/// use taskwire_protocol::meta::{ParamsError, ServerParams};
/// let text = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;
/// let Ok(Message::Request(r)) = Message::<ServerParams>::read(text) else { panic!() };
/// assert_eq!(r.params.unwrap().unwrap().object["name"], "echo");
/// let text = br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"\ud800"}}"#;
/// let Ok(Message::Request(r)) = Message::<ServerParams>::read(text) else { panic!() };
/// assert!(matches!(r.params, Some(Err(ParamsError::Invalid(_)))));
/// ```
pub type ServerParams = Result<RequestParams, ParamsError>;

impl Params for ServerParams {
    const IN_PLACE: bool = true;

    fn read<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Self, A::Error> {
        map.next_value::<ObjectParams>().map(|p| Ok(p.0))
    }

    fn from_raw(raw: Box<RawValue>) -> Self {
        RequestParams::parse(raw.get())
    }
}

/// A params object; anything else fails, so that the envelope is read again with raw params.
struct ObjectParams(RequestParams);

impl<'de> Deserialize<'de> for ObjectParams {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ParamsVisitor)?.map(ObjectParams).ok_or_else(|| D::Error::custom("params are not an object"))
    }
}

/// `Some` for an object; `None` for any other JSON value (consumed whole).
struct ParamsVisitor;

impl<'de> Visitor<'de> for ParamsVisitor {
    type Value = Option<RequestParams>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a params object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = RequestParams::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if key == "_meta" {
                // A repeated `_meta` replaces the earlier one whole, as in a `Value`.
                let meta: Meta = map.next_value()?;
                out.protocol_version = meta.protocol_version;
                out.client_capabilities = meta.client_capabilities;
                out.log_level = meta.log_level;
                out.object.insert(key.into_owned(), meta.rest);
            } else {
                let value: Value = map.next_value()?;
                out.object.insert(key.into_owned(), value);
            }
        }
        Ok(Some(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A `_meta` value: the per-request members apart, the rest as a `Value` (an object, or
/// whatever non-object was sent, which the caller then finds has no version).
struct Meta {
    rest: Value,
    protocol_version: Option<Value>,
    client_capabilities: Option<Value>,
    log_level: Option<Value>,
}

impl Meta {
    fn other(rest: Value) -> Self {
        Meta { rest, protocol_version: None, client_capabilities: None, log_level: None }
    }
}

impl<'de> Deserialize<'de> for Meta {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MetaVisitor)
    }
}

struct MetaVisitor;

impl<'de> Visitor<'de> for MetaVisitor {
    type Value = Meta;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Meta, A::Error> {
        let mut rest = Map::new();
        let mut meta = Meta::other(Value::Null);
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match key.as_ref() {
                PROTOCOL_VERSION => meta.protocol_version = Some(map.next_value()?),
                CLIENT_CAPABILITIES => meta.client_capabilities = Some(map.next_value()?),
                LOG_LEVEL => meta.log_level = Some(map.next_value()?),
                CLIENT_INFO => {
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    let value: Value = map.next_value()?;
                    rest.insert(key.into_owned(), value);
                }
            }
        }
        meta.rest = Value::Object(rest);
        Ok(meta)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Meta, A::Error> {
        Value::deserialize(SeqAccessDeserializer::new(seq)).map(Meta::other)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Meta, E> {
        Ok(Meta::other(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Meta, E> {
        Ok(Meta::other(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Meta, E> {
        Ok(Meta::other(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Meta, E> {
        Ok(Meta::other(Number::from_f64(v).map_or(Value::Null, Value::Number)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Meta, E> {
        Ok(Meta::other(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Meta, E> {
        Ok(Meta::other(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Meta, E> {
        Ok(Meta::other(Value::Null))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: &Value) -> RequestParams {
        RequestParams::parse(&v.to_string()).expect("valid params")
    }

    #[test]
    fn the_per_request_members_are_moved_out_and_the_rest_of_meta_stays() {
        let p = parse(&json!({"name": "echo", "arguments": {"text": "x"}, "_meta": {
            PROTOCOL_VERSION: "2026-07-28",
            CLIENT_CAPABILITIES: {"extensions": {TASKS_EXTENSION: {}}},
            CLIENT_INFO: {"name": "c", "version": "1"},
            LOG_LEVEL: "info",
            PROGRESS_TOKEN: "p",
            "dev.vendor/x": [1, 2],
        }}));
        assert_eq!(p.protocol_version, Some(json!("2026-07-28")));
        assert_eq!(p.client_capabilities, Some(json!({"extensions": {TASKS_EXTENSION: {}}})));
        assert_eq!(p.log_level, Some(json!("info")));
        assert_eq!(
            Value::Object(p.object),
            json!({"name": "echo", "arguments": {"text": "x"}, "_meta": {PROGRESS_TOKEN: "p", "dev.vendor/x": [1, 2]}})
        );
    }

    #[test]
    fn members_of_any_type_are_kept_as_sent_for_the_caller_to_judge() {
        let p = parse(&json!({"_meta": {PROTOCOL_VERSION: 7, CLIENT_CAPABILITIES: "none", LOG_LEVEL: null}}));
        assert_eq!(p.protocol_version, Some(json!(7)));
        assert_eq!(p.client_capabilities, Some(json!("none")));
        assert_eq!(p.log_level, Some(Value::Null));
        for meta in [json!("text"), json!(1.5), json!(-3), json!(true), json!(null), json!([{"a": 1}])] {
            let p = parse(&json!({"_meta": meta.clone()}));
            assert_eq!(p.object["_meta"], meta);
            assert!(p.protocol_version.is_none() && p.client_capabilities.is_none());
        }
        assert!(parse(&json!({})).object.is_empty());
    }

    #[test]
    fn a_repeated_meta_replaces_the_earlier_one_as_a_value_would() {
        let p = RequestParams::parse(&format!(
            r#"{{"_meta":{{"{PROTOCOL_VERSION}":"2026-07-28","a":1}},"_meta":{{"b":2}}}}"#
        ))
        .expect("valid");
        assert!(p.protocol_version.is_none());
        assert_eq!(p.object["_meta"], json!({"b": 2}));
    }

    #[test]
    fn escaped_keys_are_recognised() {
        // `\u002f` is `/`: the key is the reserved one once unescaped.
        let p = RequestParams::parse(r#"{"_meta":{"io.modelcontextprotocol\u002fprotocolVersion":"2026-07-28"}}"#)
            .expect("valid");
        assert_eq!(p.protocol_version, Some(json!("2026-07-28")));
    }

    #[test]
    fn non_objects_and_invalid_json_are_told_apart() {
        assert!(matches!(RequestParams::parse("[1, {\"a\": 2}]"), Err(ParamsError::NotAnObject)));
        assert!(matches!(RequestParams::parse("\"s\""), Err(ParamsError::NotAnObject)));
        assert!(matches!(RequestParams::parse(r#"{"a":"\ud800"}"#), Err(ParamsError::Invalid(_))));
        assert!(matches!(RequestParams::parse(r#"{"a":1} x"#), Err(ParamsError::Invalid(_))));
        assert!(matches!(RequestParams::parse(r#"{"a":}"#), Err(ParamsError::Invalid(_))));
    }
}
