//! `taskwire tasks …` and `taskwire call …`: an MCP client on the command line (2025-11-25 task
//! methods, which every task-capable server answers).

use serde_json::{Map, Value, json};
use taskwire_client::{CallEvent, Client, HttpOptions, Incoming, StdioCommand};

use crate::{ConnectFlags, Failure, TasksAction};

/// Connects and initializes, as the flags say.
pub async fn connect(flags: &ConnectFlags) -> Result<Client, Failure> {
    let (client, _incoming) = match (&flags.server, flags.stdio, flags.command.split_first()) {
        (Some(url), _, _) => {
            Client::connect_http(url, HttpOptions { bearer_token: flags.token.clone(), ..Default::default() })?
        }
        (None, true, Some((program, args))) => Client::spawn(StdioCommand::new(program, args))?,
        (None, true, None) => return Err(Failure::Usage("--stdio needs the server's command after --".into())),
        (None, false, _) => {
            return Err(Failure::Usage(
                "say which server: --server URL (or TASKWIRE_SERVER), or --stdio -- COMMAND ARGS…".into(),
            ));
        }
    };
    client.initialize(json!({})).await?;
    Ok(client)
}

async fn request(client: &Client, method: &str, params: Value) -> Result<Value, Failure> {
    let raw = client.request(method, Some(&params)).await?;
    serde_json::from_str(raw.get()).map_err(|e| Failure::Protocol(format!("{method}: the answer is not JSON: {e}")))
}

pub async fn tasks(action: TasksAction) -> Result<(), Failure> {
    match action {
        TasksAction::List { connect: flags } => {
            let client = connect(&flags).await?;
            let mut tasks = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let params = cursor.as_ref().map_or_else(|| json!({}), |c| json!({"cursor": c}));
                let page = request(&client, "tasks/list", params).await?;
                tasks.extend(page.get("tasks").and_then(Value::as_array).cloned().unwrap_or_default());
                cursor = page.get("nextCursor").and_then(Value::as_str).map(str::to_owned);
                if cursor.is_none() {
                    break;
                }
            }
            if flags.json {
                println!("{}", Value::Array(tasks));
            } else if tasks.is_empty() {
                println!("no tasks (without --token a server lists only the tasks of the same connection)");
            } else {
                println!("{:<34} {:<15} {:<26} MESSAGE", "ID", "STATUS", "CREATED");
                for t in &tasks {
                    println!(
                        "{:<34} {:<15} {:<26} {}",
                        text(t, "taskId"),
                        text(t, "status"),
                        text(t, "createdAt"),
                        text(t, "statusMessage")
                    );
                }
            }
            Ok(())
        }
        TasksAction::Get { id, connect: flags } => {
            let client = connect(&flags).await?;
            let task = request(&client, "tasks/get", json!({"taskId": id})).await?;
            if flags.json {
                println!("{task}");
            } else {
                for key in ["taskId", "status", "statusMessage", "createdAt", "lastUpdatedAt", "ttl", "pollInterval"] {
                    if let Some(v) = task.get(key).filter(|v| !v.is_null()) {
                        println!("{key:<14} {}", v.as_str().map_or_else(|| v.to_string(), str::to_owned));
                    }
                }
            }
            Ok(())
        }
        TasksAction::Result { id, connect: flags } => {
            let client = connect(&flags).await?;
            let result = request(&client, "tasks/result", json!({"taskId": id})).await?;
            print_result(&result, flags.json)
        }
        TasksAction::Cancel { id, connect: flags } => {
            let client = connect(&flags).await?;
            let task = request(&client, "tasks/cancel", json!({"taskId": id})).await?;
            if flags.json {
                println!("{task}");
            } else {
                println!("{} {}", text(&task, "taskId"), text(&task, "status"));
            }
            Ok(())
        }
        TasksAction::Watch { ids, connect: flags } => {
            let client = connect(&flags).await?;
            crate::watch::watch(&client, &ids, flags.json).await
        }
    }
}

pub async fn call(tool: &str, args: &[String], as_task: bool, wait: bool, flags: ConnectFlags) -> Result<(), Failure> {
    let arguments = parse_arguments(args)?;
    let client = connect(&flags).await?;
    let mut params = serde_json::Map::new();
    params.insert("name".into(), json!(tool));
    params.insert("arguments".into(), json!(arguments));
    if as_task {
        params.insert("task".into(), json!({}));
    }
    let mut call = client.start("tools/call", params, true).await?;
    let result = loop {
        match call.next().await {
            CallEvent::Done(outcome) => break outcome?,
            CallEvent::Incoming(Incoming::Notification { method, params }) if !flags.json => {
                if method == "notifications/progress"
                    && let Some(p) = params.and_then(|p| serde_json::from_str::<Value>(p.get()).ok())
                {
                    let number = |k: &str| p.get(k).and_then(Value::as_f64);
                    let total = number("total").map(|t| format!("/{t}")).unwrap_or_default();
                    let message = p.get("message").and_then(Value::as_str).unwrap_or("");
                    eprintln!("progress {}{total} {message}", number("progress").unwrap_or(0.0));
                }
            }
            CallEvent::Incoming(Incoming::Request(r)) => {
                let method = r.method.clone();
                let _ = r
                    .respond(Err(taskwire_protocol::ErrorObject::method_not_found(&format!(
                        "{method} (taskwire call cannot answer the server's questions)"
                    ))))
                    .await;
            }
            CallEvent::Incoming(_) => {}
        }
    };
    let result: Value = serde_json::from_str(result.get()).map_err(|e| Failure::Protocol(e.to_string()))?;
    // A task-augmented call may still be answered inline (the tool runs inline).
    let Some(task_id) = result.get("task").and_then(|t| t.get("taskId")).and_then(Value::as_str) else {
        return print_result(&result, flags.json);
    };
    if !wait {
        if flags.json {
            println!("{result}");
        } else {
            println!("{task_id}");
            eprintln!("follow it with: taskwire tasks watch {task_id}; its result: taskwire tasks result {task_id}");
        }
        return Ok(());
    }
    let watched = crate::watch::watch(&client, &[task_id.to_owned()], flags.json).await;
    let result = request(&client, "tasks/result", json!({"taskId": task_id})).await?;
    print_result(&result, flags.json)?;
    watched
}

/// `key=value` is a string, verbatim; `key:=json` is any JSON value.
pub fn parse_arguments(args: &[String]) -> Result<Map<String, Value>, Failure> {
    let mut out = Map::new();
    for arg in args {
        let (key, value) = if let Some((k, v)) = arg.split_once(":=").filter(|(k, _)| !k.contains('=')) {
            let value = serde_json::from_str(v).map_err(|e| {
                Failure::Usage(format!("{arg}: the value after := must be JSON ({e}); use = for a string"))
            })?;
            (k, value)
        } else if let Some((k, v)) = arg.split_once('=') {
            (k, Value::String(v.to_owned()))
        } else {
            return Err(Failure::Usage(format!("{arg}: write arguments as key=value (a string) or key:=JSON")));
        };
        if key.is_empty() {
            return Err(Failure::Usage(format!("{arg}: the argument has no name")));
        }
        out.insert(key.to_owned(), value);
    }
    Ok(out)
}

/// Prints a `CallToolResult`: text items as text, other items and structured content as JSON.
/// An `isError` result is a tool failure (exit 1).
fn print_result(result: &Value, json_out: bool) -> Result<(), Failure> {
    let is_error = result.get("isError").and_then(Value::as_bool).unwrap_or(false);
    if json_out {
        println!("{result}");
    } else {
        let content = result.get("content").and_then(Value::as_array).cloned().unwrap_or_default();
        for item in &content {
            match item.get("text").and_then(Value::as_str) {
                Some(t) => print!("{t}{}", if t.ends_with('\n') { "" } else { "\n" }),
                None => println!("{item}"),
            }
        }
        if content.is_empty()
            && let Some(s) = result.get("structuredContent")
        {
            println!("{s}");
        }
    }
    if is_error { Err(Failure::Tool("the tool reported an error".into())) } else { Ok(()) }
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_strings_unless_asked_for_json() {
        let args: Vec<String> = ["msg=a;b $(x) 'q'", "n:=3", "list:=[1,\"x\"]", "eq=a=b", "url=http://h/?a:=1"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let m = parse_arguments(&args).unwrap();
        assert_eq!(m["msg"], "a;b $(x) 'q'");
        assert_eq!(m["n"], 3);
        assert_eq!(m["list"], json!([1, "x"]));
        assert_eq!(m["eq"], "a=b");
        assert_eq!(m["url"], "http://h/?a:=1");
        assert!(matches!(parse_arguments(&["n:=x".into()]), Err(Failure::Usage(_))));
        assert!(matches!(parse_arguments(&["novalue".into()]), Err(Failure::Usage(_))));
        assert!(matches!(parse_arguments(&["=v".into()]), Err(Failure::Usage(_))));
    }
}
