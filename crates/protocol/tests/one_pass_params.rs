//! A server reads a request's params in the envelope's pass (`Message::<ServerParams>::read`).
//! Whatever the input, it must answer exactly as the two passes it replaced: the envelope with
//! raw params (`Message::parse`), then the params on their own (`RequestParams::parse`).

use proptest::prelude::*;
use taskwire_protocol::jsonrpc::{Message, ParseError};
use taskwire_protocol::meta::{RequestParams, ServerParams};

/// What a reading decided, in a form two readings can be compared by.
#[derive(Debug, PartialEq)]
enum Outcome {
    Failed(ParseError),
    /// A request: id, method, and its params (`Debug` of the parsed form or of the error).
    Request(String, String, Option<String>),
    Other(String),
}

fn one_pass(bytes: &[u8]) -> Outcome {
    match Message::<ServerParams>::read(bytes) {
        Err(e) => Outcome::Failed(e),
        Ok(Message::Request(r)) => Outcome::Request(r.id.to_string(), r.method, r.params.map(|p| format!("{p:?}"))),
        Ok(other) => Outcome::Other(format!("{other:?}")),
    }
}

fn two_passes(bytes: &[u8]) -> Outcome {
    match Message::parse(bytes) {
        Err(e) => Outcome::Failed(e),
        Ok(Message::Request(r)) => Outcome::Request(
            r.id.to_string(),
            r.method,
            r.params.map(|p| format!("{:?}", RequestParams::parse(p.get()))),
        ),
        Ok(other) => Outcome::Other(format!("{other:?}")),
    }
}

fn assert_same(text: &str) {
    assert_eq!(one_pass(text.as_bytes()), two_passes(text.as_bytes()), "{text}");
}

#[test]
fn the_usual_request_is_parsed_in_place() {
    let text = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"},
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","progressToken":3}}}"#;
    let Ok(Message::Request(r)) = Message::<ServerParams>::read(text.as_bytes()) else { panic!("a request") };
    let params = r.params.expect("params").expect("valid params");
    assert_eq!(params.object["arguments"]["text"], "hi");
    assert_eq!(params.protocol_version, Some(serde_json::json!("2026-07-28")));
    assert_eq!(params.object["_meta"], serde_json::json!({"progressToken": 3}));
    assert_same(text);
}

#[test]
fn invalid_params_keep_the_request_and_its_id() {
    // A lone surrogate is invalid JSON that a raw value lets through: the request stands, and
    // its params carry the error (-32602 with the id), as with two passes.
    let text = r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"\ud800"}}"#;
    let Ok(Message::Request(r)) = Message::<ServerParams>::read(text.as_bytes()) else { panic!("a request") };
    assert!(matches!(r.params, Some(Err(taskwire_protocol::meta::ParamsError::Invalid(_)))));
    assert_same(text);
}

#[test]
fn every_edge_answers_as_the_two_passes_did() {
    let cases = [
        // params before the id: kept raw, parsed after.
        r#"{"jsonrpc":"2.0","params":{"a":1},"id":1,"method":"m"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":[1,2]}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":null}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":"text"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":7}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{}}"#,
        // duplicates, in either reading
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{},"params":{}}"#,
        r#"{"jsonrpc":"2.0","params":{},"id":1,"params":{},"method":"m"}"#,
        r#"{"jsonrpc":"2.0","id":1,"params":{},"id":2,"method":"m"}"#,
        // not requests
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{},"params":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":null,"method":"m","params":{}}"#,
        r#"{"jsonrpc":"2.0","id":1.5,"method":"m","params":{}}"#,
        r#"{"jsonrpc":"1.0","id":1,"method":"m","params":{}}"#,
        r#"{"id":1,"method":"m","params":{"a":"\ud800"}}"#,
        // broken JSON after, inside and around the params
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":1}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":1}} trailing"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":[1,{"x":"\udc00"}]}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":"\ud800"}}"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"m","params":{}}]"#,
    ];
    for text in cases {
        assert_same(text);
    }
    // Nesting at the envelope's bound and one past it.
    for levels in [126, 127, 128, 129] {
        let text = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"m","params":{}1{}}}"#,
            r#"{"a":"#.repeat(levels),
            "}".repeat(levels)
        );
        assert_same(&text);
    }
}

/// A params value that may be valid, invalid or not an object.
fn params_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("1".to_string()),
        Just("1.50".to_string()),
        Just("null".to_string()),
        Just(r#""s""#.to_string()),
        Just(r#""\ud800""#.to_string()),
        Just(r#""\u00e9""#.to_string()),
        Just("[]".to_string()),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("name"),
                        Just("_meta"),
                        Just("arguments"),
                        Just("io.modelcontextprotocol/protocolVersion")
                    ],
                    inner
                ),
                0..4
            )
            .prop_map(|kv| format!(
                "{{{}}}",
                kv.iter().map(|(k, v)| format!("{k:?}:{v}")).collect::<Vec<_>>().join(",")
            )),
        ]
    })
}

proptest! {
    /// Envelopes with their members in any order, some missing or doubled, params of any shape.
    #[test]
    fn one_pass_equals_two_passes(
        members in prop::collection::vec(
            prop_oneof![
                Just(r#""jsonrpc":"2.0""#.to_string()),
                Just(r#""id":1"#.to_string()),
                Just(r#""id":"x""#.to_string()),
                Just(r#""method":"tools/call""#.to_string()),
                Just(r#""result":{}"#.to_string()),
                params_value().prop_map(|p| format!(r#""params":{p}"#)),
            ],
            0..6,
        ),
        truncate in prop::option::of(0usize..200),
    ) {
        let mut text = format!("{{{}}}", members.join(","));
        if let Some(at) = truncate {
            text.truncate(at.min(text.len()));
        }
        prop_assert_eq!(one_pass(text.as_bytes()), two_passes(text.as_bytes()), "{}", text);
    }
}
