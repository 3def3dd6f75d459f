//! Property: whatever members a message carries, a parse → serialize round trip keeps them.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use taskwire_protocol::jsonrpc::Message;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e9f64..1e9).prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn unknown_members() -> impl Strategy<Value = Vec<(String, Value)>> {
    prop::collection::btree_map("x-[a-z]{1,8}", json_value(), 0..4).prop_map(|m| m.into_iter().collect())
}

fn envelope() -> impl Strategy<Value = Value> {
    let id = prop_oneof![any::<i64>().prop_map(|n| json!(n)), "[a-z0-9-]{0,10}".prop_map(Value::String)];
    let params = || {
        prop::collection::btree_map("[a-z_]{1,6}", json_value(), 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    };
    prop_oneof![
        (id.clone(), "[a-z/]{1,12}", params())
            .prop_map(|(id, m, p)| json!({"jsonrpc":"2.0","id":id,"method":m,"params":p})),
        ("[a-z/]{1,12}", params()).prop_map(|(m, p)| json!({"jsonrpc":"2.0","method":m,"params":p})),
        (id.clone(), json_value()).prop_map(|(id, r)| json!({"jsonrpc":"2.0","id":id,"result":r})),
        (id, any::<i32>(), ".{0,10}", json_value(), unknown_members()).prop_map(|(id, c, m, d, extra)| {
            let mut error = json!({"code":c,"message":m,"data":d});
            for (k, v) in extra {
                error[k] = v;
            }
            json!({"jsonrpc":"2.0","id":id,"error":error})
        }),
    ]
}

proptest! {
    #[test]
    fn unknown_members_survive_a_round_trip(mut msg in envelope(), extra in unknown_members()) {
        for (k, v) in extra {
            msg.as_object_mut().unwrap().insert(k, v);
        }
        let text = msg.to_string();
        let parsed = Message::parse(text.as_bytes()).expect("a valid message parses");
        // Compare both sides through the same float parser (serde_json without float_roundtrip).
        let before: Value = serde_json::from_str(&text).unwrap();
        let after: Value = serde_json::from_str(&parsed.to_json()).unwrap();
        prop_assert_eq!(after, before);
    }
}
