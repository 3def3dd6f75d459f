//! The TOML file of `taskwire serve`: what it may contain, and errors that name the file, line
//! and column of what is wrong. The format is documented in the crate root.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use taskwire_engine::{Callback, Rate, RetryPolicy, ToolLimits};
use taskwire_server::TaskSupport;
use toml::Spanned;

use crate::template::Template;

/// What a config file declares, checked and ready to serve.
#[derive(Debug)]
pub struct Config {
    /// The `[server]` section.
    pub server: ServerSection,
    /// The tools, in file order.
    pub tools: Vec<Arc<CommandSpec>>,
}

/// The `[server]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// The name the server introduces itself with (default "taskwire").
    pub name: Option<String>,
    /// Instructions for the model, sent in `initialize`.
    pub instructions: Option<String>,
    /// How many executions may run at once across all tools.
    pub max_running: Option<usize>,
    /// Offer the job-control tools (`task_status`, `task_result`, …) to clients without tasks.
    #[serde(default)]
    pub job_tools: bool,
}

/// One checked tool: how to run it and how it is bounded.
#[derive(Debug)]
pub struct CommandSpec {
    /// The tool's name.
    pub name: String,
    /// The description models read.
    pub description: String,
    /// The argv templates; the first gives the program.
    pub argv: Vec<Template>,
    /// The working directory template (relative paths are relative to the config file).
    pub cwd: Option<Template>,
    /// The directory of the config file, against which a relative `cwd` resolves.
    pub base_dir: PathBuf,
    /// Variables passed through from the server's environment.
    pub env_pass: Vec<String>,
    /// Variables set for the program.
    pub env_set: BTreeMap<String, String>,
    /// The JSON Schema of the arguments, as listed.
    pub input_schema: Value,
    /// The compiled schema that checks every call.
    pub validator: jsonschema::Validator,
    /// Maps an output line to progress: one group (percent) or two (current and total).
    pub progress: Option<regex::Regex>,
    /// How many bytes of each stream's end the result keeps.
    pub tail_bytes: usize,
    /// Per-attempt timeout.
    pub timeout: Option<Duration>,
    /// Sync-first deadline.
    pub inline_deadline: Option<Duration>,
    /// Concurrency and rate limits.
    pub limits: ToolLimits,
    /// Retries of transient failures (exit codes in `retry_exit_codes`).
    pub retry: Option<RetryPolicy>,
    /// Exit codes that mean "try again".
    pub retry_exit_codes: Vec<i32>,
    /// Re-run after a crash.
    pub retryable: bool,
    /// Whether calls run as tasks.
    pub task: TaskSupport,
    /// Where every task of this tool reports its end (or every status change); a caller's own
    /// `_meta` subscription wins.
    pub webhook: Option<Callback>,
}

/// The environment variables passed through when a tool names none.
pub const DEFAULT_ENV: &[&str] = &["PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR", "TERM"];

/// The default of `tail_bytes`.
pub const DEFAULT_TAIL_BYTES: usize = 16 * 1024;

/// A config file that cannot be served: where, and what is wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{path}:{line}:{column}: {message}")]
pub struct ConfigError {
    /// The file.
    pub path: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSections {
    #[serde(default)]
    server: ServerSection,
    #[serde(default, rename = "tool")]
    tools: Vec<Spanned<ToolSection>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolSection {
    name: Spanned<String>,
    description: String,
    command: Spanned<Vec<Spanned<String>>>,
    cwd: Option<Spanned<String>>,
    env: Option<Vec<Spanned<String>>>,
    set_env: Option<BTreeMap<String, String>>,
    input_schema: Option<Spanned<Value>>,
    progress: Option<Spanned<String>>,
    tail_bytes: Option<usize>,
    timeout: Option<Spanned<String>>,
    inline_deadline: Option<Spanned<String>>,
    max_running: Option<usize>,
    max_queued: Option<usize>,
    rate: Option<Spanned<String>>,
    rate_all: Option<Spanned<String>>,
    when_rate_limited: Option<Spanned<String>>,
    retry: Option<RetrySection>,
    retryable: Option<bool>,
    task: Option<Spanned<String>>,
    webhook: Option<Spanned<WebhookSection>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookSection {
    url: String,
    #[serde(default)]
    events: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetrySection {
    attempts: u32,
    #[serde(default = "default_retry_exit_codes")]
    on_exit: Vec<i32>,
    backoff: Option<Spanned<String>>,
    max_backoff: Option<Spanned<String>>,
}

/// EX_TEMPFAIL (sysexits.h): "temporary failure; the user is invited to retry".
fn default_retry_exit_codes() -> Vec<i32> {
    vec![75]
}

/// Reads and checks a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.display().to_string(),
        line: 1,
        column: 1,
        message: format!("cannot read the file: {e}"),
    })?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base_dir = if base_dir.as_os_str().is_empty() { PathBuf::from(".") } else { base_dir };
    parse(&text, &path.display().to_string(), &base_dir)
}

/// Checks config text; `name` is what errors call the file.
pub fn parse(text: &str, name: &str, base_dir: &Path) -> Result<Config, ConfigError> {
    let at = |span: Range<usize>, message: String| locate(text, name, span.start, message);
    let file: FileSections = toml::from_str(text).map_err(|e| {
        let start = e.span().map_or(0, |s| s.start);
        locate(text, name, start, e.message().trim_end().to_owned())
    })?;
    let mut seen = HashSet::new();
    let mut tools = Vec::with_capacity(file.tools.len());
    for spanned in file.tools {
        let tool_span = spanned.span();
        let t = spanned.into_inner();
        let tool_name = t.name.get_ref().clone();
        if !valid_tool_name(&tool_name) {
            return Err(at(
                t.name.span(),
                format!("tool name {tool_name:?} is not allowed: use 1 to 128 letters, digits, `_`, `-` or `.`"),
            ));
        }
        if !seen.insert(tool_name.clone()) {
            return Err(at(t.name.span(), format!("a tool named {tool_name:?} is declared twice")));
        }
        if t.command.get_ref().is_empty() {
            return Err(at(t.command.span(), "command is empty: give the program and its arguments".into()));
        }
        let mut argv = Vec::new();
        for item in t.command.get_ref() {
            let template = Template::parse(item.get_ref())
                .map_err(|e| at(item.span().start + 1 + e.offset..item.span().end, e.message))?;
            argv.push((template, item.span()));
        }
        if argv[0].0.arguments().next().is_some() {
            return Err(at(
                argv[0].1.clone(),
                "the program (the first item of command) cannot be a placeholder: a call must not choose what runs"
                    .into(),
            ));
        }
        let cwd = match &t.cwd {
            Some(c) => Some(
                Template::parse(c.get_ref()).map_err(|e| at(c.span().start + 1 + e.offset..c.span().end, e.message))?,
            ),
            None => None,
        };
        let placeholders: Vec<(String, Range<usize>)> = argv
            .iter()
            .flat_map(|(tpl, span)| tpl.arguments().map(move |a| (a.to_owned(), span.clone())))
            .chain(cwd.iter().flat_map(|tpl| {
                let span = t.cwd.as_ref().map(Spanned::span).unwrap_or_default();
                tpl.arguments().map(move |a| (a.to_owned(), span.clone()))
            }))
            .collect();
        let input_schema = match &t.input_schema {
            Some(schema) => {
                let props = schema.get_ref().get("properties").and_then(Value::as_object);
                for (arg, span) in &placeholders {
                    if !props.is_some_and(|p| p.contains_key(arg)) {
                        return Err(at(
                            span.clone(),
                            format!(
                                "{{{arg}}} names no property of input_schema: add it under input_schema.properties"
                            ),
                        ));
                    }
                }
                schema.get_ref().clone()
            }
            None => derived_schema(&placeholders),
        };
        let schema_span = t.input_schema.as_ref().map_or(tool_span.clone(), Spanned::span);
        if input_schema.get("type").and_then(Value::as_str) != Some("object") {
            return Err(at(
                schema_span,
                "input_schema must have \"type\" = \"object\" (MCP tool arguments are objects)".into(),
            ));
        }
        let validator = jsonschema::validator_for(&input_schema)
            .map_err(|e| at(schema_span, format!("input_schema is not a valid JSON Schema: {e}")))?;
        let progress = match &t.progress {
            Some(p) => {
                let re = regex::Regex::new(p.get_ref())
                    .map_err(|e| at(p.span(), format!("progress is not a valid regular expression: {e}")))?;
                if !matches!(re.captures_len(), 2 | 3) {
                    return Err(at(
                        p.span(),
                        "progress needs one group (a percentage) or two (current and total), e.g. '(\\d+)/(\\d+)'"
                            .into(),
                    ));
                }
                Some(re)
            }
            None => None,
        };
        let duration = |d: &Option<Spanned<String>>| -> Result<Option<Duration>, ConfigError> {
            d.as_ref().map(|s| parse_duration(s.get_ref()).map_err(|m| at(s.span(), m))).transpose()
        };
        let rate = |r: &Option<Spanned<String>>| -> Result<Option<Rate>, ConfigError> {
            r.as_ref().map(|s| parse_rate(s.get_ref()).map_err(|m| at(s.span(), m))).transpose()
        };
        let mut limits = ToolLimits {
            max_running: t.max_running.filter(|&n| n > 0),
            max_queued: t.max_queued,
            rate_per_owner: rate(&t.rate)?,
            rate_per_tool: rate(&t.rate_all)?,
            ..ToolLimits::default()
        };
        if let Some(w) = &t.when_rate_limited {
            match w.get_ref().as_str() {
                "refuse" => {}
                "wait" => limits = limits.wait_when_rate_limited(),
                other => {
                    return Err(at(w.span(), format!("when_rate_limited is {other:?}: use \"refuse\" or \"wait\"")));
                }
            }
        }
        let (retry, retry_exit_codes) = match &t.retry {
            Some(r) => {
                if r.attempts == 0 {
                    return Err(at(tool_span, "retry.attempts counts every start, so it is at least 1".into()));
                }
                let defaults = RetryPolicy::default();
                let policy = RetryPolicy {
                    max_attempts: r.attempts,
                    base: duration(&r.backoff)?.unwrap_or(defaults.base),
                    cap: duration(&r.max_backoff)?.unwrap_or(defaults.cap),
                };
                (Some(policy), r.on_exit.clone())
            }
            None => (None, Vec::new()),
        };
        let task = match t.task.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
            None | Some(("optional", _)) => TaskSupport::Optional,
            Some(("required", _)) => TaskSupport::Required,
            Some(("forbidden", _)) => TaskSupport::Forbidden,
            Some((other, span)) => {
                return Err(at(span, format!("task is {other:?}: use \"optional\", \"required\" or \"forbidden\"")));
            }
        };
        let webhook = match &t.webhook {
            Some(w) => {
                let (section, span) = (w.get_ref(), w.span());
                let url = section.url.to_ascii_lowercase();
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(at(span, format!("webhook.url {:?} is not an http:// or https:// URL", section.url)));
                }
                let every_status = match section.events.as_deref() {
                    None | Some("terminal") => false,
                    Some("all") => true,
                    Some(other) => {
                        return Err(at(span, format!("webhook.events is {other:?}: use \"terminal\" or \"all\"")));
                    }
                };
                Some(Callback { url: section.url.clone(), every_status })
            }
            None => None,
        };
        let mut env_pass = Vec::new();
        match &t.env {
            Some(list) => {
                for var in list {
                    if var.get_ref().is_empty() || var.get_ref().contains('=') {
                        return Err(at(var.span(), format!("{:?} is not an environment variable name", var.get_ref())));
                    }
                    env_pass.push(var.get_ref().clone());
                }
            }
            None => env_pass.extend(DEFAULT_ENV.iter().map(|s| (*s).to_owned())),
        }
        tools.push(Arc::new(CommandSpec {
            name: tool_name,
            description: t.description,
            argv: argv.into_iter().map(|(t, _)| t).collect(),
            cwd,
            base_dir: base_dir.to_path_buf(),
            env_pass,
            env_set: t.set_env.unwrap_or_default(),
            input_schema,
            validator,
            progress,
            tail_bytes: t.tail_bytes.unwrap_or(DEFAULT_TAIL_BYTES).max(1),
            timeout: duration(&t.timeout)?,
            inline_deadline: duration(&t.inline_deadline)?,
            limits,
            retry,
            retry_exit_codes,
            retryable: t.retryable.unwrap_or(false),
            task,
            webhook,
        }));
    }
    if tools.is_empty() {
        return Err(locate(
            text,
            name,
            0,
            "no tools: declare at least one [[tool]] with a name, description and command".into(),
        ));
    }
    Ok(Config { server: file.server, tools })
}

/// Without an `input_schema`, every placeholder is a required string.
fn derived_schema(placeholders: &[(String, Range<usize>)]) -> Value {
    let mut props = serde_json::Map::new();
    let mut required = Vec::new();
    for (name, _) in placeholders {
        if !props.contains_key(name) {
            props.insert(name.clone(), serde_json::json!({"type": "string"}));
            required.push(Value::String(name.clone()));
        }
    }
    serde_json::json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
}

fn valid_tool_name(name: &str) -> bool {
    (1..=128).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn locate(text: &str, name: &str, offset: usize, message: String) -> ConfigError {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    ConfigError { path: name.to_owned(), line, column, message }
}

/// `250ms`, `30s`, `5m`, `2h`, or combinations such as `1m30s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration: write e.g. \"250ms\", \"30s\", \"5m\", \"1h30m\"");
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(unit);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// `5/s`, `30/min`, `100/h`: that many calls per period, the whole count available at once.
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let bad = || format!("{text:?} is not a rate: write e.g. \"5/s\", \"30/min\" or \"100/h\"");
    let (count, period) = text.split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    let seconds = match period.trim() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        _ => return Err(bad()),
    };
    if count == 0 {
        return Err(format!("{text:?} allows nothing; leave the rate out to allow everything"));
    }
    Ok(Rate::per_second(f64::from(count) / seconds).burst(count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Config, ConfigError> {
        parse(text, "tools.toml", Path::new("."))
    }

    #[test]
    fn a_minimal_tool_gets_a_derived_schema_and_defaults() {
        let c = check("[[tool]]\nname = \"t\"\ndescription = \"d\"\ncommand = [\"echo\", \"{msg}\"]\n").unwrap();
        let t = &c.tools[0];
        assert_eq!(t.input_schema["required"][0], "msg");
        assert_eq!(t.task, TaskSupport::Optional);
        assert_eq!(t.tail_bytes, DEFAULT_TAIL_BYTES);
        assert!(t.env_pass.iter().any(|v| v == "PATH"));
    }

    #[test]
    fn a_tool_webhook_is_checked_where_it_is_written() {
        let tool = "[[tool]]\nname = \"t\"\ndescription = \"d\"\ncommand = [\"x\"]\n";
        let c = check(&format!("{tool}webhook = {{ url = \"https://h.example/x\", events = \"all\" }}\n")).unwrap();
        let callback = c.tools[0].webhook.as_ref().expect("a webhook");
        assert_eq!((callback.url.as_str(), callback.every_status), ("https://h.example/x", true));
        let c = check(&format!("{tool}webhook = {{ url = \"http://h.example/x\" }}\n")).unwrap();
        assert!(!c.tools[0].webhook.as_ref().expect("a webhook").every_status, "terminal events by default");
        let e = check(&format!("{tool}webhook = {{ url = \"ftp://h/x\" }}\n")).unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        assert!(e.message.contains("not an http:// or https:// URL"), "{e}");
        let e = check(&format!("{tool}webhook = {{ url = \"http://h/x\", events = \"some\" }}\n")).unwrap_err();
        assert!(e.message.contains("use \"terminal\" or \"all\""), "{e}");
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let e = check("[[tool]]\nname = \"t\"\ndescription = \"d\"\ncommand = [\"echo\", \"{msg\"]\n").unwrap_err();
        assert_eq!((e.line, e.column), (4, 21), "{e}");
        assert!(e.to_string().starts_with("tools.toml:4:21: "), "{e}");
        let e =
            check("[[tool]]\nname = \"t\"\ndescription = \"d\"\ncommand = [\"x\"]\ntimeout = \"soon\"\n").unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        assert!(e.message.contains("not a duration"), "{e}");
        let e = check("[[tool]]\nname = \"t\"\ndescription = \"d\"\ncommand = [\"x\"]\ncolour = 1\n").unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        assert!(e.message.contains("unknown field"), "{e}");
        let e = check("[[tool]]\nname = \"t\"\ndescription = \"d\"\ncommand = [\"{prog}\"]\n").unwrap_err();
        assert!(e.message.contains("cannot be a placeholder"), "{e}");
        let e = check("[[tool]]\nname = \"t\"\ndescription = \"d\"\ncommand = [\"x\", \"{a}\"]\n[tool.input_schema]\ntype = \"object\"\n")
            .unwrap_err();
        assert!(e.message.contains("{a} names no property"), "{e}");
        assert_eq!(e.line, 4, "{e}");
        let e = check("").unwrap_err();
        assert!(e.message.contains("no tools"), "{e}");
        let e = check("[[tool]]\nname = \"t\"\ndescription = \"d\"\ncommand = [\"x\"]\nprogress = \"(\\\\d+)\"\n[[tool]]\nname = \"t\"\ndescription = \"d\"\ncommand = [\"x\"]\n").unwrap_err();
        assert!(e.message.contains("declared twice") && e.line == 7, "{e}");
    }

    #[test]
    fn durations_and_rates() {
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5").is_err() && parse_duration("").is_err() && parse_duration("s").is_err());
        let r = parse_rate("30/min").unwrap();
        assert!((r.per_second - 0.5).abs() < 1e-9 && r.burst == 30);
        assert!(parse_rate("0/s").is_err() && parse_rate("5").is_err());
    }
}
