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
    ///
    /// ```
    /// use taskwire_server::model::ToolOutput;
    /// let raw = serde_json::json!({"content": [], "isError": true, "x-vendor": {"trace": 7}});
    /// let out = ToolOutput::from_result(raw.as_object().unwrap());
    /// assert!(out.is_error());
    /// assert_eq!(out.into_value()["x-vendor"]["trace"], 7);
    /// ```
    pub fn from_result(result: &Object) -> Self {
        let mut out = Self::default();
        for (key, value) in result {
            match key.as_str() {
                "content" => out.content = value.as_array().cloned().unwrap_or_default(),
                "structuredContent" => out.structured = Some(value.clone()),
                "isError" => out.is_error = value.as_bool().unwrap_or(false),
                "_meta" => out.meta = Some(value.clone()),
                _ => {
                    out.extra.insert(key.clone(), value.clone());
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
