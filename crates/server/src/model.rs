//! Small builders for the MCP result shapes handlers produce.

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
    content: Vec<Value>,
    structured: Option<Value>,
    is_error: bool,
    meta: Option<Value>,
    /// Members MCP does not define here (a proxied server's vendor fields), kept in order.
    extra: Object,
}

impl ToolOutput {
    /// A result whose content is one text item.
    pub fn text(text: impl Into<String>) -> Self {
        Self { content: vec![text_content(text)], ..Self::default() }
    }

    /// A tool execution error (`isError: true`) with one text item, for the model to read.
    pub fn error(text: impl Into<String>) -> Self {
        Self { content: vec![text_content(text)], is_error: true, ..Self::default() }
    }

    /// A result with the given content items.
    pub fn content(content: Vec<Value>) -> Self {
        Self { content, ..Self::default() }
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
                    out.content = match value {
                        Value::Array(items) => items,
                        _ => Vec::new(),
                    }
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

    /// Marks the output as a tool execution error (`isError: true`).
    pub fn as_error(mut self) -> Self {
        self.is_error = true;
        self
    }

    /// Adds structured content.
    pub fn structured(mut self, value: Value) -> Self {
        self.structured = Some(value);
        self
    }

    /// Adds `_meta`.
    pub fn meta(mut self, meta: Value) -> Self {
        self.meta = Some(meta);
        self
    }

    /// Whether this is a tool execution error.
    pub fn is_error(&self) -> bool {
        self.is_error
    }

    /// The result object.
    pub fn into_object(self) -> Object {
        let mut o = Object::new();
        o.insert("content".into(), Value::Array(self.content));
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
        self.meta.is_none() && self.extra.is_empty()
    }

    /// The result as JSON text: the bytes `into_value` would serialize to (members in key
    /// order), written straight from the parts instead of through an object built for the
    /// purpose (a `tools/call` answer's hot path).
    pub(crate) fn into_json(self) -> String {
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
        let _ = serde_json::to_writer(&mut out, &self.content);
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

    #[test]
    fn only_outputs_without_meta_or_foreign_members_are_plain() {
        assert!(ToolOutput::text("a").structured(json!(1)).as_error().is_plain());
        assert!(!ToolOutput::text("a").meta(json!({})).is_plain());
        let foreign = json!({"content": [], "resultType": "complete"});
        assert!(!ToolOutput::from_result(foreign.as_object().cloned().unwrap_or_default()).is_plain());
    }
}
