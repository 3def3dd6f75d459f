//! Argument templates: `{name}` placeholders in a program's argv, filled from the call's JSON
//! arguments. Each template becomes zero, one or several argv items, never a shell string.
//!
//! * An item that is exactly one placeholder is left out when the argument is absent or null,
//!   and becomes one item per element when the argument is an array.
//! * An item mixing text and placeholders (`--filter={filter}`) is left out when any of its
//!   arguments is absent; an array there is an error.
//! * `{{` and `}}` stand for literal braces.

use serde_json::Value;

/// One parsed argv template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Arg(String),
}

/// Why a template could not be parsed: the byte offset in the template and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    /// Byte offset of the problem within the template text.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl Template {
    /// Parses `text`.
    ///
    /// ```
    /// use taskwire_command::template::Template;
    /// let t = Template::parse("--filter={filter}").unwrap();
    /// assert_eq!(t.arguments().collect::<Vec<_>>(), ["filter"]);
    /// ```
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|&(_, c)| c) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|&(_, c)| c) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let rest = &text[i + 1..];
                    let end = rest.find('}').ok_or_else(|| TemplateError {
                        offset: i,
                        message: "`{` opens a placeholder that is never closed (write `{{` for a literal brace)".into(),
                    })?;
                    let name = &rest[..end];
                    if !is_name(name) {
                        return Err(TemplateError {
                            offset: i,
                            message: format!(
                                "{{{name}}} is not a placeholder: names are letters, digits, `_` and `-` (write `{{{{` for a literal brace)"
                            ),
                        });
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Arg(name.to_owned()));
                    for _ in 0..=name.chars().count() {
                        chars.next();
                    }
                }
                '}' => {
                    return Err(TemplateError {
                        offset: i,
                        message: "`}` without a `{` (write `}}` for a literal brace)".into(),
                    });
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() || parts.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// The names of the arguments this template uses.
    pub fn arguments(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Arg(name) => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    /// Appends what this template becomes for `args` to `out`.
    pub fn render_into(&self, args: &serde_json::Map<String, Value>, out: &mut Vec<String>) -> Result<(), String> {
        if let [Part::Arg(name)] = self.parts.as_slice() {
            match args.get(name) {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    for item in items {
                        out.push(scalar(name, item)?);
                    }
                }
                Some(v) => out.push(scalar(name, v)?),
            }
            return Ok(());
        }
        let mut item = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => item.push_str(t),
                Part::Arg(name) => match args.get(name) {
                    None | Some(Value::Null) => return Ok(()),
                    Some(Value::Array(_)) => {
                        return Err(format!(
                            "argument {name:?} is a list; a list can only fill an argv item that is exactly {{{name}}}"
                        ));
                    }
                    Some(v) => item.push_str(&scalar(name, v)?),
                },
            }
        }
        out.push(item);
        Ok(())
    }

    /// Renders a template that must give exactly one value (a working directory).
    pub fn render_one(&self, args: &serde_json::Map<String, Value>) -> Result<Option<String>, String> {
        let mut out = Vec::new();
        self.render_into(args, &mut out)?;
        match out.len() {
            0 => Ok(None),
            1 => Ok(out.pop()),
            _ => Err("a list cannot fill a single value".into()),
        }
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A scalar as program text: strings verbatim, numbers and booleans as JSON spells them, objects
/// as JSON. A NUL byte cannot reach a program's argv, so it is refused.
fn scalar(name: &str, v: &Value) -> Result<String, String> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Array(_) => return Err(format!("argument {name:?} nests a list in a list")),
        other => other.to_string(),
    };
    if s.contains('\0') {
        return Err(format!("argument {name:?} contains a NUL byte, which no program argument can hold"));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(t: &str, args: Value) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        Template::parse(t).unwrap().render_into(args.as_object().unwrap(), &mut out)?;
        Ok(out)
    }

    #[test]
    fn whole_item_placeholders_expand_lists_and_vanish_when_absent() {
        assert_eq!(render("{files}", json!({"files": ["a b", "$(rm -rf /)"]})).unwrap(), ["a b", "$(rm -rf /)"]);
        assert!(render("{files}", json!({})).unwrap().is_empty());
        assert!(render("{files}", json!({"files": null})).unwrap().is_empty());
        assert_eq!(render("{n}", json!({"n": 3})).unwrap(), ["3"]);
        assert_eq!(render("{b}", json!({"b": true})).unwrap(), ["true"]);
    }

    #[test]
    fn mixed_items_need_every_argument() {
        assert_eq!(render("--filter={f}", json!({"f": "x;y"})).unwrap(), ["--filter=x;y"]);
        assert!(render("--filter={f}", json!({})).unwrap().is_empty());
        assert!(render("--filter={f}", json!({"f": [1]})).unwrap_err().contains("list"));
        assert_eq!(render("{a}-{b}", json!({"a": 1, "b": "z"})).unwrap(), ["1-z"]);
    }

    #[test]
    fn braces_escape_and_errors_point_at_the_problem() {
        assert_eq!(render("{{x}}", json!({})).unwrap(), ["{x}"]);
        assert_eq!(render("", json!({})).unwrap(), [""]);
        assert_eq!(Template::parse("ab{x").unwrap_err().offset, 2);
        assert_eq!(Template::parse("a}").unwrap_err().offset, 1);
        assert_eq!(Template::parse("a{b c}").unwrap_err().offset, 1);
    }

    #[test]
    fn nul_bytes_are_refused() {
        assert!(render("{s}", json!({"s": "a\u{0}b"})).unwrap_err().contains("NUL"));
    }
}
