//! The JSON-RPC 2.0 envelope.
//!
//! [`Message::parse`] reads one message in a single pass. `result` and `error.data` are kept as
//! [`RawValue`] (validated, never re-encoded), and members the envelope does not know are kept in
//! order in `extra`, so a proxy can forward what it received unchanged. A request's `params` are
//! what its [`Params`] type makes of them: raw text by default (clients and proxies forward
//! them), or parsed in the same pass for a server ([`crate::meta::ServerParams`]).

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt;

use crate::codes;

/// Members of an envelope that JSON-RPC does not define, in the order they arrived.
pub type Extra = Vec<(String, Box<RawValue>)>;

/// A request id: a string or an integer (never `null`, never fractional).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Id {
    /// An integer id.
    Number(i64),
    /// A string id.
    String(String),
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Number(n) => write!(f, "{n}"),
            Id::String(s) => write!(f, "{s:?}"),
        }
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Id::Number(n) => s.serialize_i64(*n),
            Id::String(v) => s.serialize_str(v),
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or integer id")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                Ok(Id::Number(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                i64::try_from(v).map(Id::Number).map_err(|_| E::custom("id out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                Ok(Id::String(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Id, E> {
                Ok(Id::String(v))
            }
        }
        d.deserialize_any(IdVisitor)
    }
}

/// The `error` member of an error response. Like the envelope, it is lossless: an explicit
/// `"data": null` and members JSON-RPC does not define survive a round trip.
#[derive(Clone, Debug)]
pub struct ErrorObject {
    /// The error code ([`crate::codes`]).
    pub code: i32,
    /// A short description.
    pub message: String,
    /// Additional information, kept raw (`Some("null")` when the peer sent `"data": null`).
    pub data: Option<Box<RawValue>>,
    /// Members JSON-RPC does not define, in the order they arrived.
    pub extra: Extra,
}

impl Serialize for ErrorObject {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("code", &self.code)?;
        map.serialize_entry("message", &self.message)?;
        if let Some(d) = &self.data {
            map.serialize_entry("data", d)?;
        }
        for (k, v) in &self.extra {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for ErrorObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ErrorObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an error object with an integer code and a string message")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ErrorObject, A::Error> {
                let (mut code, mut message, mut data, mut extra) = (None, None, None, Extra::new());
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    match key.as_ref() {
                        "code" => code = Some(map.next_value::<i32>()?),
                        "message" => message = Some(map.next_value::<String>()?),
                        "data" => data = Some(map.next_value::<Box<RawValue>>()?),
                        _ => extra.push((key.into_owned(), map.next_value()?)),
                    }
                }
                Ok(ErrorObject {
                    code: code.ok_or_else(|| de::Error::missing_field("code"))?,
                    message: message.ok_or_else(|| de::Error::missing_field("message"))?,
                    data,
                    extra,
                })
            }
        }
        d.deserialize_map(V)
    }
}

impl ErrorObject {
    /// An error without data.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: None, extra: Extra::new() }
    }

    /// An error with structured data.
    pub fn with_data(code: i32, message: impl Into<String>, data: &serde_json::Value) -> Self {
        Self { code, message: message.into(), data: serde_json::value::to_raw_value(data).ok(), extra: Extra::new() }
    }

    /// `-32602 Invalid params`.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_PARAMS, message)
    }

    /// `-32601 Method not found`, naming the method.
    pub fn method_not_found(method: &str) -> Self {
        Self::new(codes::METHOD_NOT_FOUND, format!("Method not found: {method}"))
    }

    /// `-32603 Internal error`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(codes::INTERNAL_ERROR, message)
    }

    /// `-32021 MissingRequiredClientCapability` (2026-07-28): `required` is a `ClientCapabilities`
    /// object such as `{"sampling":{}}`.
    ///
    /// ```
    /// use taskwire_protocol::ErrorObject;
    /// let e = ErrorObject::missing_client_capability(serde_json::json!({"sampling": {}}));
    /// assert_eq!(e.code, -32021);
    /// assert!(e.data.unwrap().get().contains("requiredCapabilities"));
    /// ```
    pub fn missing_client_capability(required: serde_json::Value) -> Self {
        let message = format!(
            "Missing required client capability: this request needs {required}; declare it in _meta clientCapabilities"
        );
        Self::with_data(
            codes::MISSING_REQUIRED_CLIENT_CAPABILITY,
            message,
            &serde_json::json!({"requiredCapabilities": required}),
        )
    }

    /// `-32600 Invalid Request`.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_REQUEST, message)
    }
}

impl fmt::Display for ErrorObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

/// What a request's `params` become when its envelope is read.
///
/// `Box<RawValue>` keeps them as text, unparsed (clients and proxies forward them); a server
/// reads them into its own form ([`crate::meta::ServerParams`]) in the envelope's pass, so the
/// text is scanned once rather than skipped over and then parsed again.
pub trait Params: Sized {
    /// Whether [`Params::read`] parses the params in the envelope's pass. When that pass fails,
    /// the message is read again with its params raw, so every error a peer gets is the one the
    /// raw reading gives (a lone surrogate inside params stays `-32602` with the request's id).
    const IN_PLACE: bool;

    /// Reads the params of a request (its id came before them) in the envelope's pass.
    fn read<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Self, A::Error>;

    /// Makes params kept raw into `Self`: a request whose params came before its id, or the
    /// second reading after [`Params::read`] failed.
    fn from_raw(raw: Box<RawValue>) -> Self;
}

impl Params for Box<RawValue> {
    const IN_PLACE: bool = false;

    fn read<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Self, A::Error> {
        map.next_value()
    }

    fn from_raw(raw: Box<RawValue>) -> Self {
        raw
    }
}

/// A request: has an `id` and a `method`.
#[derive(Debug)]
pub struct Request<P = Box<RawValue>> {
    /// The request id.
    pub id: Id,
    /// The method name.
    pub method: String,
    /// The params, if any (raw, unless the reader asked for another [`Params`] form).
    pub params: Option<P>,
    /// Unknown envelope members.
    pub extra: Extra,
}

/// A notification: a `method` without an `id`.
#[derive(Debug)]
pub struct Notification {
    /// The method name.
    pub method: String,
    /// The raw params, if any.
    pub params: Option<Box<RawValue>>,
    /// Unknown envelope members.
    pub extra: Extra,
}

/// A successful response.
#[derive(Debug)]
pub struct Response {
    /// The id of the request this answers.
    pub id: Id,
    /// The raw result.
    pub result: Box<RawValue>,
    /// Unknown envelope members.
    pub extra: Extra,
}

/// An error response.
#[derive(Debug)]
pub struct ErrorResponse {
    /// The id of the request this answers; absent when the request's id could not be read.
    pub id: Option<Id>,
    /// The error.
    pub error: ErrorObject,
    /// Unknown envelope members.
    pub extra: Extra,
}

/// One JSON-RPC message. `P` is the form of a request's params ([`Params`]); a notification's
/// stay raw, since a server may forward them as they came.
#[derive(Debug)]
pub enum Message<P = Box<RawValue>> {
    /// A request.
    Request(Request<P>),
    /// A notification.
    Notification(Notification),
    /// A successful response.
    Response(Response),
    /// An error response.
    Error(ErrorResponse),
}

/// Why bytes could not be read as a message. Each maps to the JSON-RPC error a peer should get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON (or not UTF-8, or nested deeper than the parser allows): `-32700`.
    NotJson(String),
    /// A JSON array: a batch. Only 2025-03-26 allowed them; we answer `-32600`.
    Batch,
    /// JSON, but not a JSON-RPC message: `-32600`. Carries the id when it could be read.
    Invalid {
        /// The request id, when it was readable.
        id: Option<Id>,
        /// What is wrong.
        reason: String,
    },
}

impl ParseError {
    /// The error object to answer with.
    pub fn to_error(&self) -> ErrorObject {
        match self {
            ParseError::NotJson(why) => ErrorObject::new(codes::PARSE_ERROR, format!("Parse error: {why}")),
            ParseError::Batch => ErrorObject::invalid_request(
                "Invalid Request: JSON-RPC batches are not supported; send one message per request",
            ),
            ParseError::Invalid { reason, .. } => ErrorObject::invalid_request(format!("Invalid Request: {reason}")),
        }
    }

    /// The id to answer with, when it was readable.
    pub fn id(&self) -> Option<&Id> {
        match self {
            ParseError::Invalid { id, .. } => id.as_ref(),
            _ => None,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_error().fmt(f)
    }
}

impl std::error::Error for ParseError {}

/// An object key, borrowed from the input when it holds no escapes. `Cow<str>`'s own
/// `Deserialize` always allocates: four `String`s per message for `jsonrpc`, `id`, `method` and
/// `params` alone.
///
/// ```
/// use taskwire_protocol::jsonrpc::Key;
/// let keys: std::collections::BTreeMap<Key, serde::de::IgnoredAny> = serde_json::from_str(r#"{"a":1}"#).unwrap();
/// assert!(keys.keys().all(|k| matches!(k.0, std::borrow::Cow::Borrowed("a"))));
/// ```
#[derive(PartialEq, Eq, PartialOrd, Ord)]
pub struct Key<'de>(pub std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The members of an envelope, collected in one pass. The short members are read in place:
/// only what outlives the input (params, result, error, unknown members) is copied out of it.
struct Members<'de, P> {
    jsonrpc: Option<&'de RawValue>,
    id: Option<&'de RawValue>,
    method: Option<&'de RawValue>,
    params: Option<Box<RawValue>>,
    /// The params read in the envelope's pass ([`Params::IN_PLACE`]), in place of `params`.
    read_params: Option<P>,
    result: Option<Box<RawValue>>,
    error: Option<Box<RawValue>>,
    extra: Extra,
    duplicate: Option<String>,
}

/// Top level of a message: an object (a message), an array (a batch) or anything else.
enum TopLevel<'de, P> {
    Object(Members<'de, P>),
    Array,
    Other,
}

/// Reads the [`TopLevel`], with a request's params in place when `in_place` (and the id came
/// first, so the message can only be a request).
struct TopLevelSeed<P> {
    in_place: bool,
    params: std::marker::PhantomData<P>,
}

impl<'de, P: Params> DeserializeSeed<'de> for TopLevelSeed<P> {
    type Value = TopLevel<'de, P>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, P: Params> Visitor<'de> for TopLevelSeed<P> {
    type Value = TopLevel<'de, P>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC message")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel<'de, P>, A::Error> {
        fn put<T>(slot: &mut Option<T>, value: T, key: &str, duplicate: &mut Option<String>) {
            if slot.is_some() {
                duplicate.get_or_insert_with(|| key.to_owned());
            }
            *slot = Some(value);
        }
        let mut m = Members {
            jsonrpc: None,
            id: None,
            method: None,
            params: None,
            read_params: None,
            result: None,
            error: None,
            extra: Extra::new(),
            duplicate: None,
        };
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match key.as_ref() {
                "jsonrpc" => put(&mut m.jsonrpc, map.next_value()?, &key, &mut m.duplicate),
                "id" => put(&mut m.id, map.next_value()?, &key, &mut m.duplicate),
                "method" => put(&mut m.method, map.next_value()?, &key, &mut m.duplicate),
                "params" if self.in_place && m.id.is_some() && m.params.is_none() => {
                    put(&mut m.read_params, P::read(&mut map)?, &key, &mut m.duplicate)
                }
                "params" => put(&mut m.params, map.next_value()?, &key, &mut m.duplicate),
                "result" => put(&mut m.result, map.next_value()?, &key, &mut m.duplicate),
                "error" => put(&mut m.error, map.next_value()?, &key, &mut m.duplicate),
                _ => {
                    let value: Box<RawValue> = map.next_value()?;
                    if m.extra.iter().any(|(k, _)| k == key.as_ref()) {
                        m.duplicate.get_or_insert_with(|| key.to_string());
                    }
                    m.extra.push((key.into_owned(), value));
                }
            }
        }
        Ok(TopLevel::Object(m))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<TopLevel<'de, P>, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(TopLevel::Array)
    }
    fn visit_bool<E>(self, _: bool) -> Result<TopLevel<'de, P>, E> {
        Ok(TopLevel::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<TopLevel<'de, P>, E> {
        Ok(TopLevel::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<TopLevel<'de, P>, E> {
        Ok(TopLevel::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<TopLevel<'de, P>, E> {
        Ok(TopLevel::Other)
    }
    fn visit_str<E>(self, _: &str) -> Result<TopLevel<'de, P>, E> {
        Ok(TopLevel::Other)
    }
    fn visit_unit<E>(self) -> Result<TopLevel<'de, P>, E> {
        Ok(TopLevel::Other)
    }
}

/// Reads the top level of `text`, which must hold nothing after it.
fn read_top<P: Params>(text: &str, in_place: bool) -> Result<TopLevel<'_, P>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let top = TopLevelSeed { in_place, params: std::marker::PhantomData }.deserialize(&mut de)?;
    de.end()?;
    Ok(top)
}

/// How deep a message may nest. serde_json stops typed parsing at 128 levels, but raw values
/// are only scanned, so the envelope enforces one bound for every layer above it.
pub const MAX_DEPTH: usize = 128;

/// How many `{` and `[` bytes `json` holds. They are 0x7B and 0x5B, equal once bit 0x20 is set,
/// so one compare per byte finds both; counting in `u8` lanes over chunks of at most 255 bytes
/// (no lane can overflow) lets the compiler count 16 bytes a step. Counted with `filter` and two
/// compares, it cost 3 instructions a byte, a fifth of a 2026-07-28 call's envelope.
fn opening_brackets(json: &[u8]) -> usize {
    json.chunks(255)
        .map(|chunk| usize::from(chunk.iter().fold(0u8, |n, &b| n.wrapping_add(u8::from(b | 0x20 == b'{')))))
        .sum()
}

/// Whether raw JSON nests deeper than `limit` (strings are skipped, escapes respected).
fn nests_deeper_than(json: &[u8], limit: usize) -> bool {
    // Nesting needs an opening bracket per level. Counting them all (strings included, so an
    // over-count) is cheap; only a message with more brackets than the limit pays for the exact
    // scan below (a per-byte state machine, 2k instructions for a small tool call).
    if opening_brackets(json) <= limit {
        return false;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

fn is_null(v: &RawValue) -> bool {
    v.get() == "null"
}

fn invalid(id: Option<Id>, reason: impl Into<String>) -> ParseError {
    ParseError::Invalid { id, reason: reason.into() }
}

impl Message {
    /// Reads one message from bytes, a request's params kept raw.
    ///
    /// ```
    /// use taskwire_protocol::jsonrpc::{Message, ParseError};
    /// assert!(matches!(Message::parse(b"{oops"), Err(ParseError::NotJson(_))));
    /// assert!(matches!(Message::parse(b"[]"), Err(ParseError::Batch)));
    /// assert!(matches!(Message::parse(br#"{"jsonrpc":"2.0","method":"x"}"#), Ok(Message::Notification(_))));
    /// ```
    pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
        Self::read(bytes)
    }
}

impl<P: Params> Message<P> {
    /// Reads one message from bytes, a request's params in the form `P` ([`Params`]); with
    /// `P = Box<RawValue>` it is [`Message::parse`].
    ///
    /// ```
    /// use taskwire_protocol::jsonrpc::{Message, ParseError};
    /// use taskwire_protocol::meta::ServerParams;
    /// let text = br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{}}"#;
    /// assert!(matches!(Message::<ServerParams>::read(text), Ok(Message::Request(r)) if matches!(r.params, Some(Ok(_)))));
    /// assert!(matches!(Message::<ServerParams>::read(b"{oops"), Err(ParseError::NotJson(_))));
    /// ```
    pub fn read(bytes: &[u8]) -> Result<Message<P>, ParseError> {
        if nests_deeper_than(bytes, MAX_DEPTH) {
            return Err(ParseError::NotJson(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        // Checked as UTF-8 once, the text is read without serde checking each string and each
        // raw member again (a sixth of a small message's parse).
        let text = std::str::from_utf8(bytes)
            .map_err(|e| ParseError::NotJson(format!("the message is not UTF-8 (at byte {})", e.valid_up_to())))?;
        let top = match read_top::<P>(text, P::IN_PLACE) {
            Ok(top) => top,
            Err(_) if P::IN_PLACE => read_top::<P>(text, false).map_err(|e| ParseError::NotJson(e.to_string()))?,
            Err(e) => return Err(ParseError::NotJson(e.to_string())),
        };
        let m = match top {
            TopLevel::Object(m) => m,
            TopLevel::Array => return Err(ParseError::Batch),
            TopLevel::Other => return Err(invalid(None, "a message must be a JSON object")),
        };
        // Read the id first so that every later complaint can carry it.
        let id = match &m.id {
            None => None,
            Some(raw) if is_null(raw) => None,
            Some(raw) => match serde_json::from_str::<Id>(raw.get()) {
                Ok(id) => Some(id),
                Err(_) => return Err(invalid(None, "id must be a string or an integer")),
            },
        };
        if let Some(key) = m.duplicate {
            return Err(invalid(id, format!("member {key:?} appears twice")));
        }
        match m.jsonrpc.map(RawValue::get) {
            Some(r#""2.0""#) => {}
            Some(_) => return Err(invalid(id, r#"jsonrpc must be "2.0""#)),
            None => return Err(invalid(id, r#"missing member "jsonrpc":"2.0""#)),
        }
        let params = match m.params {
            Some(p) if !(p.get().starts_with('{') || p.get().starts_with('[')) => {
                if is_null(&p) {
                    None
                } else {
                    return Err(invalid(id, "params must be an object or an array"));
                }
            }
            other => other,
        };
        match (m.method, m.result, m.error) {
            (Some(method), None, None) => {
                let method: String =
                    serde_json::from_str(method.get()).map_err(|_| invalid(id.clone(), "method must be a string"))?;
                match (m.id.is_some(), id) {
                    (false, _) => Ok(Message::Notification(Notification { method, params, extra: m.extra })),
                    (true, Some(id)) => {
                        let params = m.read_params.or_else(|| params.map(P::from_raw));
                        Ok(Message::Request(Request { id, method, params, extra: m.extra }))
                    }
                    (true, None) => Err(invalid(None, "id must not be null")),
                }
            }
            (None, Some(result), None) => match id {
                Some(id) if params.is_none() && m.read_params.is_none() => {
                    Ok(Message::Response(Response { id, result, extra: m.extra }))
                }
                Some(id) => Err(invalid(Some(id), "a response has no params")),
                None => Err(invalid(None, "a response needs the id of its request")),
            },
            (None, None, Some(error)) => {
                let error: ErrorObject = serde_json::from_str(error.get())
                    .map_err(|_| invalid(id.clone(), "error must be an object with an integer code and a message"))?;
                Ok(Message::Error(ErrorResponse { id, error, extra: m.extra }))
            }
            (None, None, None) => Err(invalid(id, "a message needs a method, a result or an error")),
            _ => Err(invalid(id, "method, result and error are mutually exclusive")),
        }
    }

    /// The method, for requests and notifications.
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request(r) => Some(&r.method),
            Message::Notification(n) => Some(&n.method),
            _ => None,
        }
    }
}

impl Message {
    /// Serializes to a JSON string.
    pub fn to_json(&self) -> String {
        // Serializing raw values and plain strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("jsonrpc", "2.0")?;
        let extra = match self {
            Message::Request(r) => {
                map.serialize_entry("id", &r.id)?;
                map.serialize_entry("method", &r.method)?;
                if let Some(p) = &r.params {
                    map.serialize_entry("params", p)?;
                }
                &r.extra
            }
            Message::Notification(n) => {
                map.serialize_entry("method", &n.method)?;
                if let Some(p) = &n.params {
                    map.serialize_entry("params", p)?;
                }
                &n.extra
            }
            Message::Response(r) => {
                map.serialize_entry("id", &r.id)?;
                map.serialize_entry("result", &r.result)?;
                &r.extra
            }
            Message::Error(e) => {
                if let Some(id) = &e.id {
                    map.serialize_entry("id", id)?;
                }
                map.serialize_entry("error", &e.error)?;
                &e.extra
            }
        };
        for (k, v) in extra {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Writes a success response without building a [`Message`]: the hot path of every server.
///
/// ```
/// use taskwire_protocol::jsonrpc::{Id, write_response};
/// let mut out = Vec::new();
/// write_response(&mut out, &Id::Number(7), r#"{"ok":true}"#);
/// assert_eq!(out, br#"{"jsonrpc":"2.0","id":7,"result":{"ok":true}}"#);
/// ```
pub fn write_response(out: &mut Vec<u8>, id: &Id, result_json: &str) {
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    write_id(out, id);
    out.extend_from_slice(br#","result":"#);
    out.extend_from_slice(result_json.as_bytes());
    out.push(b'}');
}

/// Writes an error response; `id` is omitted when unknown (the MCP schemas make it optional).
pub fn write_error(out: &mut Vec<u8>, id: Option<&Id>, error: &ErrorObject) {
    out.extend_from_slice(br#"{"jsonrpc":"2.0","#);
    if let Some(id) = id {
        out.extend_from_slice(br#""id":"#);
        write_id(out, id);
        out.push(b',');
    }
    out.extend_from_slice(br#""error":"#);
    // An ErrorObject holds only integers, strings and raw JSON: serialization cannot fail.
    let _ = serde_json::to_writer(&mut *out, error);
    out.push(b'}');
}

/// Writes a notification with already-serialized params.
pub fn write_notification(out: &mut Vec<u8>, method: &str, params_json: &str) {
    out.extend_from_slice(br#"{"jsonrpc":"2.0","method":"#);
    let _ = serde_json::to_writer(&mut *out, method);
    out.extend_from_slice(br#","params":"#);
    out.extend_from_slice(params_json.as_bytes());
    out.push(b'}');
}

/// A JSON value as text, for the hot paths that serialize results.
///
/// `Value::to_string` goes through `Display`: every piece is written through a `fmt::Write`
/// adapter into a `String` that starts empty and grows by doubling. This writes straight into a
/// buffer that starts at 128 bytes; on a proxied `tools/call` the two ways differed by ~6k
/// instructions per call (callgrind).
///
/// ```
/// let v = serde_json::json!({"content": [{"type": "text", "text": "hi"}]});
/// assert_eq!(taskwire_protocol::jsonrpc::to_json(&v), v.to_string());
/// ```
pub fn to_json(value: &serde_json::Value) -> String {
    let mut out = Vec::with_capacity(128);
    // A Value's keys are strings, so serializing it cannot fail; and serde_json writes UTF-8.
    let _ = serde_json::to_writer(&mut out, value);
    String::from_utf8(out).unwrap_or_default()
}

/// Writes a request with already-serialized params.
pub fn write_request(out: &mut Vec<u8>, id: &Id, method: &str, params_json: &str) {
    write_request_head(out, id, method);
    out.extend_from_slice(params_json.as_bytes());
    out.push(b'}');
}

/// Writes a request up to its params, for a caller that writes them in place and then closes
/// the message with `}`.
///
/// ```
/// use taskwire_protocol::jsonrpc::{write_request_head, Id};
/// let mut out = Vec::new();
/// write_request_head(&mut out, &Id::Number(1), "ping");
/// out.extend_from_slice(b"{}}");
/// assert_eq!(out, br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{}}"#);
/// ```
pub fn write_request_head(out: &mut Vec<u8>, id: &Id, method: &str) {
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    write_id(out, id);
    out.extend_from_slice(br#","method":"#);
    let _ = serde_json::to_writer(&mut *out, method);
    out.extend_from_slice(br#","params":"#);
}

fn write_id(out: &mut Vec<u8>, id: &Id) {
    match id {
        Id::Number(n) => out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
        Id::String(s) => {
            let _ = serde_json::to_writer(&mut *out, s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parse(v: &Value) -> Result<Message, ParseError> {
        Message::parse(v.to_string().as_bytes())
    }

    #[test]
    fn opening_brackets_counts_both_kinds_and_nothing_else() {
        assert_eq!(opening_brackets(b""), 0);
        assert_eq!(opening_brackets(br#"{"a":[1,{"b":"[{"}]}"#), 5);
        // Every other byte, including the brackets' neighbours in the table, counts for nothing.
        let others: Vec<u8> = (0..=255u8).filter(|b| *b != b'{' && *b != b'[').collect();
        assert_eq!(opening_brackets(&others), 0);
        // Past one chunk of 255, and a chunk made only of brackets.
        assert_eq!(opening_brackets(&[b'{'; 255]), 255);
        assert_eq!(opening_brackets(&vec![b'['; 1000]), 1000);
    }

    #[test]
    fn classifies_each_kind() {
        assert!(matches!(parse(&json!({"jsonrpc":"2.0","id":1,"method":"a"})), Ok(Message::Request(_))));
        assert!(matches!(parse(&json!({"jsonrpc":"2.0","method":"a"})), Ok(Message::Notification(_))));
        assert!(matches!(parse(&json!({"jsonrpc":"2.0","id":"x","result":{}})), Ok(Message::Response(_))));
        assert!(matches!(
            parse(&json!({"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"m"}})),
            Ok(Message::Error(_))
        ));
        assert!(matches!(
            parse(&json!({"jsonrpc":"2.0","error":{"code":-1,"message":"m"}})),
            Ok(Message::Error(ErrorResponse { id: None, .. }))
        ));
    }

    #[test]
    fn rejects_what_is_not_json_rpc_and_keeps_the_id_when_readable() {
        let cases = [
            json!({"id":1,"method":"a"}),
            json!({"jsonrpc":"1.0","id":1,"method":"a"}),
            json!({"jsonrpc":"2.0","id":1,"method":3}),
            json!({"jsonrpc":"2.0","id":1,"method":"a","result":{}}),
            json!({"jsonrpc":"2.0","id":1,"method":"a","params":"str"}),
            json!({"jsonrpc":"2.0","id":1}),
        ];
        for case in cases {
            match parse(&case) {
                Err(ParseError::Invalid { id: Some(Id::Number(1)), .. }) => {}
                other => panic!("{case}: {other:?}"),
            }
        }
        assert!(matches!(
            parse(&json!({"jsonrpc":"2.0","id":1.5,"method":"a"})),
            Err(ParseError::Invalid { id: None, .. })
        ));
        assert!(matches!(parse(&json!({"jsonrpc":"2.0","id":null,"method":"a"})), Err(ParseError::Invalid { .. })));
        assert!(matches!(parse(&json!({"jsonrpc":"2.0","id":{},"method":"a"})), Err(ParseError::Invalid { .. })));
        assert!(matches!(parse(&json!("hello")), Err(ParseError::Invalid { .. })));
        assert!(matches!(parse(&json!([1])), Err(ParseError::Batch)));
        assert!(matches!(
            Message::parse(br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"a"}"#),
            Err(ParseError::Invalid { .. })
        ));
    }

    #[test]
    fn bad_bytes_are_parse_errors_not_panics() {
        assert!(matches!(Message::parse(b"\xff\xfe{}"), Err(ParseError::NotJson(_))));
        assert!(matches!(
            Message::parse(b"{\"jsonrpc\":\"2.0\",\"method\":\"\xc3\x28\"}"),
            Err(ParseError::NotJson(_))
        ));
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(Message::parse(deep.as_bytes()).is_err());
        let deep_params = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"a","params":{}{}}}"#,
            "{\"a\":".repeat(100_000),
            "1".to_string() + &"}".repeat(100_000)
        );
        assert!(matches!(Message::parse(deep_params.as_bytes()), Err(ParseError::NotJson(_))));
    }

    #[test]
    fn nesting_is_bounded_exactly_at_the_limit_however_many_brackets() {
        // The envelope is level 1; params of `levels - 1` nested arrays make `levels` in all.
        let nested = |levels: usize| {
            let inner = levels - 1;
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"a","params":{}{}}}"#, "[".repeat(inner), "]".repeat(inner))
        };
        assert!(matches!(Message::parse(nested(MAX_DEPTH).as_bytes()), Ok(Message::Request(_))));
        assert!(matches!(Message::parse(nested(MAX_DEPTH + 1).as_bytes()), Err(ParseError::NotJson(_))));
        // Many brackets, shallow: past the quick count, the exact scan lets it through.
        let wide = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"a","params":[{}{{}}]}}"#, "{},[],".repeat(MAX_DEPTH));
        assert!(matches!(Message::parse(wide.as_bytes()), Ok(Message::Request(_))));
        // Brackets inside strings do not nest.
        let quoted =
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"a","params":{{"s":"{}"}}}}"#, "[".repeat(MAX_DEPTH * 2));
        assert!(matches!(Message::parse(quoted.as_bytes()), Ok(Message::Request(_))));
    }

    #[test]
    fn params_stay_raw_and_byte_identical() {
        let text = r#"{"jsonrpc":"2.0","id":1,"method":"a","params":{"b":1.50,"c":"\u00e9"}}"#;
        let Ok(Message::Request(r)) = Message::parse(text.as_bytes()) else { panic!() };
        assert_eq!(r.params.unwrap().get(), r#"{"b":1.50,"c":"\u00e9"}"#);
    }

    #[test]
    fn writers_match_the_serializer() {
        let mut out = Vec::new();
        write_error(&mut out, None, &ErrorObject::new(-32700, "bad"));
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, json!({"jsonrpc":"2.0","error":{"code":-32700,"message":"bad"}}));
        out.clear();
        write_request(&mut out, &Id::String("s\"1".into()), "ping", "{}");
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, json!({"jsonrpc":"2.0","id":"s\"1","method":"ping","params":{}}));
    }
}
