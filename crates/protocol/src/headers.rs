//! Validation of the 2026-07-28 Streamable HTTP request headers (protocol digest §6.3).
//!
//! A server that reads the body MUST check that `MCP-Protocol-Version`, `Mcp-Method`,
//! `Mcp-Name` and every `Mcp-Param-*` header agree with it; a disagreement is HTTP 400 with
//! JSON-RPC `-32020` (HeaderMismatch).

use std::borrow::Cow;

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

use crate::codes;
use crate::jsonrpc::ErrorObject;

// Header names as `HeaderName`s, not strings: a lookup by `&str` parses and validates the name
// on every call (~800 instructions each, several per 2026-07-28 request).

/// `MCP-Protocol-Version`.
pub const PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
/// `Mcp-Method`.
pub const METHOD: HeaderName = HeaderName::from_static("mcp-method");
/// `Mcp-Name`.
pub const NAME: HeaderName = HeaderName::from_static("mcp-name");
/// Prefix of `Mcp-Param-{Name}` headers.
pub const PARAM_PREFIX: &str = "mcp-param-";
/// `Mcp-Session-Id` (handshake era only).
pub const SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

/// Decodes a header value: plain visible ASCII as is (borrowed), or the `=?base64?…?=`
/// sentinel form.
///
/// ```
/// use taskwire_protocol::headers::decode_value;
/// assert_eq!(decode_value(b"plain").as_deref(), Some("plain"));
/// assert_eq!(decode_value(b"=?base64?w6k=?=").as_deref(), Some("é"));
/// assert_eq!(decode_value(b"=?base64?!!!?="), None);
/// assert_eq!(decode_value(b"  padded  ").as_deref(), Some("padded"));
/// ```
pub fn decode_value(raw: &[u8]) -> Option<Cow<'_, str>> {
    // Optional whitespace around a field value is not part of it (RFC 9110 §5.5); the only ASCII
    // whitespace a header value can hold is space and tab, so `trim_ascii` trims exactly those.
    let raw = raw.trim_ascii();
    if let Some(inner) = raw.strip_prefix(b"=?base64?").and_then(|t| t.strip_suffix(b"?=")) {
        let bytes = base64::engine::general_purpose::STANDARD.decode(inner).ok()?;
        return String::from_utf8(bytes).ok().map(Cow::Owned);
    }
    // Visible ASCII is UTF-8 already: checked byte by byte, it needs no separate validation.
    if raw.iter().all(|b| (0x20..0x7f).contains(b)) { std::str::from_utf8(raw).ok().map(Cow::Borrowed) } else { None }
}

/// The value of a header that must appear at most once, decoded.
///
/// `Ok(None)` when absent; `Err` when repeated or undecodable.
pub fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<Cow<'h, str>>, ErrorObject> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Found::Absent,
        (Some(v), None) => Found::Once(v),
        (Some(first), Some(_)) => Found::Repeated(first),
    }
    .decode(name)
}

/// How often a header appeared, and its value when once.
#[derive(Clone, Copy, Debug, Default)]
pub enum Found<'h> {
    /// Not sent.
    #[default]
    Absent,
    /// Sent once.
    Once(&'h HeaderValue),
    /// Sent more than once (a mismatch for the headers MCP defines); the first value.
    Repeated(&'h HeaderValue),
}

impl<'h> Found<'h> {
    fn add(&mut self, value: &'h HeaderValue) {
        *self = match *self {
            Found::Absent => Found::Once(value),
            Found::Once(first) | Found::Repeated(first) => Found::Repeated(first),
        };
    }

    /// The first value sent, as `HeaderMap::get` gives it.
    pub fn first(self) -> Option<&'h HeaderValue> {
        match self {
            Found::Absent => None,
            Found::Once(v) | Found::Repeated(v) => Some(v),
        }
    }

    /// The decoded value: `Ok(None)` when absent; `Err` when repeated or undecodable.
    pub fn decode(self, name: &HeaderName) -> Result<Option<Cow<'h, str>>, ErrorObject> {
        match self {
            Found::Absent => Ok(None),
            Found::Repeated(_) => Err(mismatch(format!("header {name} appears more than once"))),
            Found::Once(value) => decode_value(value.as_bytes()).map(Some).ok_or_else(|| {
                mismatch(format!("header {name} has a value that is neither visible ASCII nor valid =?base64?…?= form"))
            }),
        }
    }
}

/// `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` of one request, found in one pass over
/// its headers. Three look-ups by name hashed each name and walked its chain, and the version
/// was looked up again by every check that needed it: ~1.7k instructions per 2026-07-28 call
/// (callgrind); the pass compares each header's name to three constants.
///
/// ```
/// use http::HeaderMap;
/// use taskwire_protocol::headers::{Found, StandardHeaders};
/// let mut h = HeaderMap::new();
/// h.insert("mcp-method", "tools/call".parse().unwrap());
/// h.append("mcp-name", "a".parse().unwrap());
/// h.append("mcp-name", "b".parse().unwrap());
/// let found = StandardHeaders::read(&h);
/// assert!(matches!(found.protocol_version, Found::Absent));
/// assert!(matches!(found.method, Found::Once(v) if v == "tools/call"));
/// assert!(matches!(found.name, Found::Repeated(v) if v == "a"));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct StandardHeaders<'h> {
    /// `MCP-Protocol-Version`.
    pub protocol_version: Found<'h>,
    /// `Mcp-Method`.
    pub method: Found<'h>,
    /// `Mcp-Name`.
    pub name: Found<'h>,
}

impl<'h> StandardHeaders<'h> {
    /// Finds the three headers in `headers`.
    pub fn read(headers: &'h HeaderMap) -> Self {
        let mut found = Self::default();
        for (name, value) in headers {
            if *name == PROTOCOL_VERSION {
                found.protocol_version.add(value);
            } else if *name == METHOD {
                found.method.add(value);
            } else if *name == NAME {
                found.name.add(value);
            }
        }
        found
    }
}

fn mismatch(message: String) -> ErrorObject {
    ErrorObject::new(codes::HEADER_MISMATCH, format!("Header mismatch: {message}"))
}

/// The body value that `Mcp-Name` must carry for `method`, if the method has one.
pub fn expected_name<'a>(method: &str, params: Option<&'a Map<String, Value>>) -> Option<&'a Value> {
    let key = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" => "uri",
        "tasks/get" | "tasks/update" | "tasks/cancel" => "taskId",
        _ => return None,
    };
    params.and_then(|p| p.get(key))
}

/// Checks `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` against a 2026-07-28 request.
///
/// `version` is the body's `_meta` protocol version.
///
/// ```
/// use http::HeaderMap;
/// use taskwire_protocol::headers::validate_standard;
/// let mut h = HeaderMap::new();
/// h.insert("mcp-protocol-version", "2026-07-28".parse().unwrap());
/// h.insert("mcp-method", "tools/call".parse().unwrap());
/// h.insert("mcp-name", "other".parse().unwrap());
/// let params = serde_json::json!({"name": "echo"});
/// let err = validate_standard(&h, "2026-07-28", "tools/call", params.as_object()).unwrap_err();
/// assert_eq!(err.code, -32020);
/// ```
pub fn validate_standard(
    headers: &HeaderMap,
    version: &str,
    method: &str,
    params: Option<&Map<String, Value>>,
) -> Result<(), ErrorObject> {
    let found = StandardHeaders::read(headers);
    validate_version(&found, version)?;
    validate_method_and_name(&found, method, params)
}

/// Checks that `MCP-Protocol-Version` is present once and equals `version`, the body's.
pub fn validate_version(found: &StandardHeaders<'_>, version: &str) -> Result<(), ErrorObject> {
    match found.protocol_version.decode(&PROTOCOL_VERSION)? {
        Some(v) if v == version => Ok(()),
        Some(v) => Err(mismatch(format!("MCP-Protocol-Version is {v:?} but the body's _meta says {version:?}"))),
        None => Err(mismatch("the MCP-Protocol-Version header is required".into())),
    }
}

/// Checks `Mcp-Method`, and `Mcp-Name` where the method has a name, against the body.
pub fn validate_method_and_name(
    found: &StandardHeaders<'_>,
    method: &str,
    params: Option<&Map<String, Value>>,
) -> Result<(), ErrorObject> {
    match found.method.decode(&METHOD)? {
        Some(m) if m == method => {}
        Some(m) => {
            return Err(mismatch(format!("Mcp-Method is {m:?} but the body's method is {method:?}")));
        }
        None => return Err(mismatch("the Mcp-Method header is required".into())),
    }
    let header_name = found.name.decode(&NAME)?;
    match (expected_name(method, params), header_name) {
        (None, _) => Ok(()),
        (Some(Value::String(want)), Some(got)) if *want == *got => Ok(()),
        (Some(want), Some(got)) => Err(mismatch(format!("Mcp-Name is {got:?} but the body says {want}"))),
        (Some(_), None) => Err(mismatch(format!("the Mcp-Name header is required for {method}"))),
    }
}

/// The `x-mcp-header` declarations of a tool's input schema: (header name, argument name, type).
///
/// Only properties directly under the root `properties` count, and only of type string,
/// integer or boolean (protocol digest §6.3).
pub fn param_headers(input_schema: &Value) -> Vec<(String, String)> {
    let Some(props) = input_schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    props
        .iter()
        .filter_map(|(arg, schema)| {
            let header = schema.get("x-mcp-header")?.as_str()?;
            let ty = schema.get("type")?.as_str()?;
            matches!(ty, "string" | "integer" | "boolean").then(|| (header.to_owned(), arg.clone()))
        })
        .collect()
}

/// Checks every `Mcp-Param-*` header of a `tools/call` against its arguments.
pub fn validate_params(
    headers: &HeaderMap,
    declared: &[(String, String)],
    arguments: Option<&Map<String, Value>>,
) -> Result<(), ErrorObject> {
    for (header, arg) in declared {
        let name = format!("{PARAM_PREFIX}{}", header.to_ascii_lowercase());
        // A declared name that is no valid header name can never have been sent.
        let got = match HeaderName::from_bytes(name.as_bytes()) {
            Ok(name) => single(headers, &name)?,
            Err(_) => None,
        };
        let value = arguments.and_then(|a| a.get(arg)).filter(|v| !v.is_null());
        match (value, got) {
            (None, None) => {}
            (None, Some(_)) => {
                return Err(mismatch(format!("Mcp-Param-{header} is set but argument {arg:?} is absent")));
            }
            (Some(_), None) => {
                return Err(mismatch(format!("Mcp-Param-{header} is required because argument {arg:?} is present")));
            }
            (Some(v), Some(got)) => {
                let same = match v {
                    Value::String(s) => *s == got,
                    Value::Bool(b) => got == if *b { "true" } else { "false" },
                    Value::Number(n) => match (n.as_i64(), got.parse::<i64>()) {
                        (Some(a), Ok(b)) => a == b,
                        _ => n.as_f64().zip(got.parse::<f64>().ok()).is_some_and(|(a, b)| a == b),
                    },
                    _ => false,
                };
                if !same {
                    return Err(mismatch(format!("Mcp-Param-{header} is {got:?} but argument {arg:?} is {v}")));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn standard_headers_must_match_the_body() {
        let p = json!({"name":"echo"});
        let ok = headers(&[("MCP-Protocol-Version", "2026-07-28"), ("Mcp-Method", "tools/call"), ("Mcp-Name", "echo")]);
        assert!(validate_standard(&ok, "2026-07-28", "tools/call", p.as_object()).is_ok());
        let missing_name = headers(&[("MCP-Protocol-Version", "2026-07-28"), ("Mcp-Method", "tools/call")]);
        assert!(validate_standard(&missing_name, "2026-07-28", "tools/call", p.as_object()).is_err());
        let dup = headers(&[
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "echo"),
        ]);
        assert!(validate_standard(&dup, "2026-07-28", "tools/call", p.as_object()).is_err());
        let encoded = headers(&[
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "=?base64?ZWNobw==?="),
        ]);
        assert!(validate_standard(&encoded, "2026-07-28", "tools/call", p.as_object()).is_ok());
    }

    #[test]
    fn param_headers_compare_numbers_numerically_and_demand_presence_both_ways() {
        let schema = json!({"type":"object","properties":{
            "region":{"type":"string","x-mcp-header":"Region"},
            "n":{"type":"integer","x-mcp-header":"N"},
            "f":{"type":"number","x-mcp-header":"F"}}});
        let declared = param_headers(&schema);
        assert_eq!(declared.len(), 2, "number properties cannot carry x-mcp-header");
        let args = json!({"region":"eu","n":42});
        let h = headers(&[("Mcp-Param-Region", "eu"), ("Mcp-Param-N", "42")]);
        assert!(validate_params(&h, &declared, args.as_object()).is_ok());
        let h = headers(&[("Mcp-Param-Region", "us"), ("Mcp-Param-N", "42")]);
        assert!(validate_params(&h, &declared, args.as_object()).is_err());
        let h = headers(&[("Mcp-Param-Region", "eu")]);
        assert!(validate_params(&h, &declared, args.as_object()).is_err());
        let h = headers(&[("Mcp-Param-Region", "eu"), ("Mcp-Param-N", "42")]);
        assert!(validate_params(&h, &declared, json!({"region":"eu"}).as_object()).is_err());
    }
}
