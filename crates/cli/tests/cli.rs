//! The `taskwire` binary end to end: `serve` with examples/devtools.toml, `call`, `tasks`, exit
//! codes, configuration errors, and `tasks watch` in a real terminal (tmux).

mod support;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_taskwire");

fn devtools() -> String {
    format!("{}/../../examples/devtools.toml", env!("CARGO_MANIFEST_DIR"))
}

/// `taskwire ARGS… --stdio -- taskwire serve --config devtools.toml --store memory`.
fn call_stdio(args: &[&str]) -> Output {
    let cfg = devtools();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--stdio", "--", BIN, "serve", "--config", &cfg, "--store", "memory"]);
    Command::new(BIN).args(&all).output().expect("run taskwire")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn shell_metacharacters_reach_the_program_verbatim() {
    let nasty = ["a;b", "$(touch /tmp/taskwire-pwned)", "`id`", "it's \"quoted\"", "*", "x|y&&z>w", "", "  spaced  "];
    let json = serde_json::to_string(&nasty).unwrap();
    let out = call_stdio(&["call", "echo_args", &format!("args:={json}")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let expected: String = nasty.iter().map(|a| format!("{a}\n")).collect();
    assert_eq!(stdout(&out), expected);
    assert!(!std::path::Path::new("/tmp/taskwire-pwned").exists(), "a shell ran the argument");
    // The same through a task, as the JSON result.
    let out = call_stdio(&["call", "progress_demo", "steps:=2", "seconds:=0", "--task", "--wait", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("counted to 2"), "{}", stdout(&out));
}

#[test]
fn exit_codes_tell_tool_errors_protocol_errors_and_connection_failures_apart() {
    // Invalid arguments: a tool error (the schema says steps >= 1).
    let out = call_stdio(&["call", "progress_demo", "steps:=0"]);
    assert_eq!(out.status.code(), Some(1), "{} {}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("invalid arguments"), "{}", stdout(&out));
    // A non-zero exit of the program: a tool error with its output.
    let out = call_stdio(&["call", "disk_usage", "path=/definitely/not/here"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("du exited with code"), "{}", stdout(&out));
    // An unknown tool: a protocol error.
    let out = call_stdio(&["call", "no_such_tool"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // An unknown task id: a protocol error.
    let out = call_stdio(&["tasks", "get", "0123456789abcdef0123456789abcdef"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // Nothing listens: a connection failure.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = Command::new(BIN)
        .args(["tasks", "list", "--server", &format!("http://127.0.0.1:{port}/mcp")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    // Bad usage.
    let out = Command::new(BIN).args(["call", "x", "novalue", "--server", "http://127.0.0.1:1/mcp"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn configuration_errors_name_file_line_and_column() {
    let dir = std::env::temp_dir().join(format!("taskwire-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[[tool]]\nname = \"t\"\ndescription = \"d\"\ncommand = [\"echo\"]\ntimeout = \"soon\"\n")
        .unwrap();
    let out =
        Command::new(BIN).args(["serve", "--config", path.to_str().unwrap(), "--store", "memory"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains(&format!("{}:5:11: \"soon\" is not a duration", path.display())), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A server on HTTP for the duration of a test.
struct HttpServer {
    child: std::process::Child,
    url: String,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_http() -> HttpServer {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(BIN)
        .args(["serve", "--config", &devtools(), "--http", "127.0.0.1:0", "--store", "memory"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if let Some(at) = line.find("listening on ") {
            let url = line[at + "listening on ".len()..].trim().to_owned();
            std::thread::spawn(move || for _ in reader.lines() {});
            return HttpServer { child, url };
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("taskwire serve did not print its address; last line: {line}");
}

#[test]
fn tasks_commands_over_http_with_json_output() {
    let server = serve_http();
    let out = Command::new(BIN)
        .args(["call", "progress_demo", "steps:=3", "seconds:=0.05", "--task", "--server", &server.url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    assert_eq!(id.len(), 44, "a task id: {id:?}");
    let out = Command::new(BIN).args(["tasks", "result", &id, "--server", &server.url]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("counted to 3"), "{}", stdout(&out));
    let out = Command::new(BIN).args(["tasks", "get", &id, "--json", "--server", &server.url]).output().unwrap();
    let task: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(task["status"], "completed", "{task}");
    // Cancel: the task ends cancelled, and `tasks result` then exits as a protocol error.
    let out =
        Command::new(BIN).args(["call", "wait", "seconds:=4", "--task", "--server", &server.url]).output().unwrap();
    let id = stdout(&out).trim().to_owned();
    let out = Command::new(BIN).args(["tasks", "cancel", &id, "--server", &server.url]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("cancelled"), "{}", stdout(&out));
    let out = Command::new(BIN).args(["tasks", "watch", &id, "--json", "--server", &server.url]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "a cancelled task is a failure for watch: {}", stdout(&out));
}

#[test]
fn tasks_watch_draws_moving_bars_in_a_terminal() {
    if Command::new("tmux").arg("-V").output().is_err() {
        panic!("this test needs tmux (apt-get install tmux)");
    }
    let server = serve_http();
    let out = Command::new(BIN)
        .args(["call", "progress_demo", "steps:=12", "seconds:=0.25", "--task", "--server", &server.url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    let session = format!("taskwire-watch-{}", std::process::id());
    let script = format!("{BIN} tasks watch {id} --server {}; echo \"watch exited $?\"; sleep 30", server.url);
    let started = Command::new("tmux")
        .args(["new-session", "-d", "-x", "120", "-y", "10", "-s", &session, "sh", "-c", &script])
        .status()
        .unwrap();
    assert!(started.success());
    struct Kill(String);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("tmux").args(["kill-session", "-t", &self.0]).status();
        }
    }
    let _kill = Kill(session.clone());
    let positions = regex_positions();
    let mut seen = std::collections::BTreeSet::new();
    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let pane = Command::new("tmux").args(["capture-pane", "-p", "-t", &session]).output().unwrap();
        last = String::from_utf8_lossy(&pane.stdout).into_owned();
        for cap in positions.captures_iter(&last) {
            seen.insert(cap[1].parse::<u32>().unwrap());
        }
        if last.contains("watch exited") {
            break;
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(last.contains("watch exited 0"), "watch did not finish successfully:\n{last}");
    assert!(last.contains("completed"), "the final status is shown:\n{last}");
    assert!(last.contains("12/12"), "the bar ends full:\n{last}");
    assert!(seen.len() >= 3, "the bar moved through several positions, saw {seen:?}; last screen:\n{last}");
}

/// `pos/12` as the bar prints it.
fn regex_positions() -> regex::Regex {
    regex::Regex::new(r"\] (\d+)/12 ").unwrap()
}

#[test]
fn exit_codes_named_in_retry_are_retried_with_backoff() {
    let dir = std::env::temp_dir().join(format!("taskwire-retry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("tools.toml");
    // Fails with 75 (EX_TEMPFAIL) until its third start; the count lives in a file beside the config.
    std::fs::write(
        &config,
        r#"[[tool]]
name = "flaky"
description = "Fails twice, then succeeds."
command = ["sh", "-c", 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ $n -ge 3 ] || exit 75; echo "succeeded on start $n"']
retry = { attempts = 3, on_exit = [75], backoff = "10ms", max_backoff = "50ms" }

[[tool]]
name = "flaky_once"
description = "Fails with 75, no retry declared."
command = ["sh", "-c", "exit 75"]
"#,
    )
    .unwrap();
    let serve = ["--stdio", "--", BIN, "serve", "--config", config.to_str().unwrap(), "--store", "memory"];
    let out = Command::new(BIN).args(["call", "flaky"]).args(serve).output().unwrap();
    assert!(out.status.success(), "{} {}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out), "succeeded on start 3\n");
    let out = Command::new(BIN).args(["call", "flaky_once"]).args(serve).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "without retry, exit 75 is a plain tool error: {}", stdout(&out));
    assert!(stdout(&out).contains("exited with code 75"), "{}", stdout(&out));
    let _ = std::fs::remove_dir_all(&dir);
}
