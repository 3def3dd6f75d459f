//! Small builders for the MCP result shapes handlers produce.

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

/// A JSON object, the shape of every MCP result and of tool arguments.
pub type Object = Map<String, Value>;

/// A `CallToolResult` under construction.
///
/// ```
/// use taskwire_server::model::ToolOutput;
/// let out = ToolOutput::text("done").structured(serde_json::json!({"n": 1}));
/// let v = out.into_value();
/// assert_eq!(v["content"][0]["text"], "done");
/// assert_eq!(v["structuredContent"]["n"], 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ToolOutput {
    content: Content,
    structured: Option<Value>,
    is_error: bool,
    meta: Option<Value>,
    /// Members MCP does not define here (a proxied server's vendor fields), kept in order.
    extra: Object,
    /// A result still in the text it arrived as ([`ToolOutput::from_raw_result`]); the parts
    /// above are empty then, and are only built if something asks for them.
    raw: Option<Box<RawValue>>,
}

impl ToolOutput {
    /// A result whose content is one text item.
    pub fn text(text: impl Into<String>) -> Self {
        Self { content: Content::Text(text.into()), ..Self::default() }
    }

    /// A tool execution error (`isError: true`) with one text item, for the model to read.
    pub fn error(text: impl Into<String>) -> Self {
        Self { content: Content::Text(text.into()), is_error: true, ..Self::default() }
    }

    /// A result with the given content items.
    pub fn content(content: Vec<Value>) -> Self {
        Self { content: Content::Items(content), ..Self::default() }
    }

    /// Rebuilds an output from a `CallToolResult` object (a stored task result, or what a
    /// proxied server answered), keeping every member, including ones MCP does not define.
    /// Takes the object so that its members move rather than copy (a proxied call's content
    /// was cloned whole before).
    ///
    /// ```
    /// use taskwire_server::model::ToolOutput;
    /// let raw = serde_json::json!({"content": [], "isError": true, "x-vendor": {"trace": 7}});
    /// let out = ToolOutput::from_result(raw.as_object().unwrap().clone());
    /// assert!(out.is_error());
    /// assert_eq!(out.into_value()["x-vendor"]["trace"], 7);
    /// ```
    pub fn from_result(result: Object) -> Self {
        let mut out = Self::default();
        for (key, value) in result {
            match key.as_str() {
                "content" => {
                    out.content = Content::Items(match value {
                        Value::Array(items) => items,
                        _ => Vec::new(),
                    })
                }
                "structuredContent" => out.structured = Some(value),
                "isError" => out.is_error = value.as_bool().unwrap_or(false),
                "_meta" => out.meta = Some(value),
                _ => {
                    out.extra.insert(key, value);
                }
            }
        }
        out
    }

    /// Takes a `CallToolResult` as JSON text (what a proxied server answered) and keeps it as it
    /// is: answered as it came, the result is never parsed into values and written again, which
    /// was a fifth of a proxied call's instructions. It is read only when asked about
    /// ([`ToolOutput::is_error`], a 2026-07-28 answer's merge) or changed. Text with line breaks
    /// (which would split a line-delimited or SSE frame) is rebuilt as
    /// [`ToolOutput::from_result`] would. `None` when the text is not a JSON object.
    ///
    /// ```
    /// use taskwire_server::model::ToolOutput;
    /// let raw = serde_json::value::RawValue::from_string(r#"{"content":[],"isError":true}"#.into()).unwrap();
    /// let out = ToolOutput::from_raw_result(raw).unwrap();
    /// assert!(out.is_error());
    /// assert_eq!(out.into_value()["content"], serde_json::json!([]));
    /// ```
    pub fn from_raw_result(raw: Box<RawValue>) -> Option<Self> {
        let text = raw.get();
        // A `RawValue` is valid JSON without surrounding whitespace: `{` opens an object.
        if !text.starts_with('{') {
            return None;
        }
        let bytes = text.as_bytes();
        if bytes.contains(&b'\n') || bytes.contains(&b'\r') {
            return serde_json::from_str(text).ok().map(Self::from_result);
        }
        Some(Self { raw: Some(raw), ..Self::default() })
    }

    /// What a raw result's members say, read in one pass without building it.
    fn raw_shape(&self) -> Option<Shape> {
        let raw = self.raw.as_ref()?;
        // The text was checked to be an object when it was kept.
        Some(serde_json::Deserializer::from_str(raw.get()).deserialize_map(ShapeVisitor).unwrap_or_default())
    }

    /// The parts, built from the raw text if that is what the output holds.
    fn into_parts(self) -> Self {
        match &self.raw {
            // The text was read as an object when it was kept.
            Some(raw) => Self::from_result(serde_json::from_str(raw.get()).unwrap_or_default()),
            None => self,
        }
    }

    /// Marks the output as a tool execution error (`isError: true`).
    pub fn as_error(self) -> Self {
        let mut this = self.into_parts();
        this.is_error = true;
        this
    }

    /// Adds structured content.
    pub fn structured(self, value: Value) -> Self {
        let mut this = self.into_parts();
        this.structured = Some(value);
        this
    }

    /// Adds `_meta`.
    pub fn meta(self, meta: Value) -> Self {
        let mut this = self.into_parts();
        this.meta = Some(meta);
        this
    }

    /// Whether this is a tool execution error.
    pub fn is_error(&self) -> bool {
        self.raw_shape().map_or(self.is_error, |shape| shape.is_error)
    }

    /// The result object.
    pub fn into_object(self) -> Object {
        if let Some(raw) = &self.raw {
            // The text was read as an object when it was kept.
            return serde_json::from_str(raw.get()).unwrap_or_default();
        }
        let mut o = Object::new();
        o.insert("content".into(), Value::Array(self.content.into_items()));
        if let Some(s) = self.structured {
            o.insert("structuredContent".into(), s);
        }
        if self.is_error {
            o.insert("isError".into(), Value::Bool(true));
        }
        if let Some(m) = self.meta {
            o.insert("_meta".into(), m);
        }
        o.extend(self.extra);
        o
    }

    /// The result as a JSON value.
    pub fn into_value(self) -> Value {
        Value::Object(self.into_object())
    }

    /// Whether the result is MCP's members only: nothing a 2026-07-28 answer would have to merge
    /// its own `resultType` and `_meta` into.
    pub(crate) fn is_plain(&self) -> bool {
        self.raw_shape().map_or(self.meta.is_none() && self.extra.is_empty(), |shape| shape.plain)
    }

    /// The result as JSON text: the bytes `into_value` would serialize to (members in key
    /// order), written straight from the parts instead of through an object built for the
    /// purpose (a `tools/call` answer's hot path).
    /// A raw result ([`ToolOutput::from_raw_result`]) is its own text, members in the order
    /// they came.
    pub(crate) fn into_json(self) -> String {
        if let Some(raw) = self.raw {
            return String::from(Box::<str>::from(raw));
        }
        if !self.extra.is_empty() {
            return taskwire_protocol::jsonrpc::to_json(&self.into_value());
        }
        let mut out = Vec::with_capacity(128);
        out.push(b'{');
        // `Value`s serialize without error; the `Vec` grows as needed.
        if let Some(meta) = &self.meta {
            out.extend_from_slice(br#""_meta":"#);
            let _ = serde_json::to_writer(&mut out, meta);
            out.push(b',');
        }
        out.extend_from_slice(br#""content":"#);
        self.content.write_json(&mut out);
        if self.is_error {
            out.extend_from_slice(br#","isError":true"#);
        }
        if let Some(structured) = &self.structured {
            out.extend_from_slice(br#","structuredContent":"#);
            let _ = serde_json::to_writer(&mut out, structured);
        }
        out.push(b'}');
        String::from_utf8(out).unwrap_or_default()
    }
}

/// A result's content items; one text item (the most common result) is kept as its text and
/// written without building the item's object (two keys and a map) first.
#[derive(Debug, Clone)]
enum Content {
    Items(Vec<Value>),
    Text(String),
}

impl Default for Content {
    fn default() -> Self {
        Content::Items(Vec::new())
    }
}

impl Content {
    fn into_items(self) -> Vec<Value> {
        match self {
            Content::Items(items) => items,
            Content::Text(text) => vec![text_content(text)],
        }
    }

    /// The items as JSON, as `into_items` would serialize (an object's members in key order).
    fn write_json(&self, out: &mut Vec<u8>) {
        // Values and strings serialize without error; the `Vec` grows as needed.
        match self {
            Content::Items(items) => drop(serde_json::to_writer(&mut *out, items)),
            Content::Text(text) => {
                out.extend_from_slice(br#"[{"text":"#);
                let _ = serde_json::to_writer(&mut *out, text);
                out.extend_from_slice(br#","type":"text"}]"#);
            }
        }
    }
}

/// What a result's text holds: `plain` when its members are MCP's own (`content`,
/// `structuredContent`, `isError`), each once, so that others can be appended to the text.
#[derive(Default)]
struct Shape {
    plain: bool,
    is_error: bool,
}

struct ShapeVisitor;

impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = Shape;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a CallToolResult object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let mut seen = [false; 3];
        let mut shape = Shape { plain: true, is_error: false };
        while let Some(key) = map.next_key::<taskwire_protocol::jsonrpc::Key>()? {
            let known = ["content", "structuredContent", "isError"].iter().position(|k| *k == key.0);
            match known {
                Some(2) => shape.is_error = map.next_value::<Value>()?.as_bool().unwrap_or(false),
                _ => map.next_value::<IgnoredAny>().map(drop)?,
            }
            match known {
                Some(i) if !seen[i] => seen[i] = true,
                _ => shape.plain = false,
            }
        }
        Ok(shape)
    }
}

/// A text content item.
pub fn text_content(text: impl Into<String>) -> Value {
    json!({"type": "text", "text": text.into()})
}

/// An image content item (base64 data).
pub fn image_content(data_base64: impl Into<String>, mime_type: &str) -> Value {
    json!({"type": "image", "data": data_base64.into(), "mimeType": mime_type})
}

/// An audio content item (base64 data).
pub fn audio_content(data_base64: impl Into<String>, mime_type: &str) -> Value {
    json!({"type": "audio", "data": data_base64.into(), "mimeType": mime_type})
}

/// An embedded text resource content item.
pub fn embedded_text_resource(uri: &str, mime_type: &str, text: impl Into<String>) -> Value {
    json!({"type": "resource", "resource": {"uri": uri, "mimeType": mime_type, "text": text.into()}})
}

/// Log levels of `notifications/message`, in increasing severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// debug
    Debug,
    /// info
    Info,
    /// notice
    Notice,
    /// warning
    Warning,
    /// error
    Error,
    /// critical
    Critical,
    /// alert
    Alert,
    /// emergency
    Emergency,
}

impl LogLevel {
    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<LogLevel> {
        Some(match s {
            "debug" => Self::Debug,
            "info" => Self::Info,
            "notice" => Self::Notice,
            "warning" => Self::Warning,
            "error" => Self::Error,
            "critical" => Self::Critical,
            "alert" => Self::Alert,
            "emergency" => Self::Emergency,
            _ => return None,
        })
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Notice => "notice",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
            Self::Alert => "alert",
            Self::Emergency => "emergency",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn into_json_writes_what_into_value_serializes_to() {
        let vendor = json!({"content": [], "x-vendor": {"trace": 7}, "resultType": "complete"});
        let outputs = [
            ToolOutput::text("done"),
            ToolOutput::error("broke \"quoted\" \u{1F600}"),
            ToolOutput::text("n").structured(json!({"n": 1, "a": [true, null]})),
            ToolOutput::text("m").meta(json!({"progressToken": 3})).as_error(),
            ToolOutput::content(Vec::new()),
            ToolOutput::from_result(vendor.as_object().cloned().unwrap_or_default()),
        ];
        for out in outputs {
            let expected = taskwire_protocol::jsonrpc::to_json(&out.clone().into_value());
            assert_eq!(out.into_json(), expected);
        }
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).expect("test JSON")
    }

    #[test]
    fn a_raw_result_goes_out_as_it_came_and_is_read_only_when_asked() {
        let text = r#"{"structuredContent":{"b":1,"a":2},"content":[{"type":"text","text":"hi"}],"isError":true}"#;
        let out = ToolOutput::from_raw_result(raw(text)).expect("an object");
        assert!(out.is_error());
        assert!(out.is_plain());
        assert_eq!(out.clone().into_json(), text, "a raw result is answered byte for byte");
        assert_eq!(out.clone().into_value(), serde_json::from_str::<Value>(text).unwrap());
        // Changed, it is rebuilt from its members.
        let changed = out.meta(json!({"k": 1})).into_value();
        assert_eq!(changed["_meta"]["k"], 1);
        assert_eq!(changed["content"][0]["text"], "hi");
    }

    #[test]
    fn raw_results_with_foreign_members_repeats_or_line_breaks_are_not_plain_text() {
        let vendor = ToolOutput::from_raw_result(raw(r#"{"content":[],"x-vendor":7}"#)).unwrap();
        assert!(!vendor.is_plain() && !vendor.is_error());
        let meta = ToolOutput::from_raw_result(raw(r#"{"content":[],"_meta":{}}"#)).unwrap();
        assert!(!meta.is_plain());
        let repeated = ToolOutput::from_raw_result(raw(r#"{"content":[],"content":[]}"#)).unwrap();
        assert!(!repeated.is_plain());
        assert!(!ToolOutput::from_raw_result(raw(r#"{"content":[],"isError":"yes"}"#)).unwrap().is_error());
        // A line break would split a line-delimited or SSE frame: such text is rewritten.
        let spread = ToolOutput::from_raw_result(raw("{\n\"content\": [],\r\n\"isError\": true}")).unwrap();
        assert!(spread.is_error());
        assert_eq!(spread.into_json(), r#"{"content":[],"isError":true}"#);
        for not_an_object in ["[]", "3", "\"text\"", "null"] {
            assert!(ToolOutput::from_raw_result(raw(not_an_object)).is_none(), "{not_an_object}");
        }
    }

    #[test]
    fn only_outputs_without_meta_or_foreign_members_are_plain() {
        assert!(ToolOutput::text("a").structured(json!(1)).as_error().is_plain());
        assert!(!ToolOutput::text("a").meta(json!({})).is_plain());
        let foreign = json!({"content": [], "resultType": "complete"});
        assert!(!ToolOutput::from_result(foreign.as_object().cloned().unwrap_or_default()).is_plain());
    }
}
