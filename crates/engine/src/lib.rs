//! The taskwire task engine.
//!
//! Long-running tool calls become tasks: records with a state machine ([`TaskStatus`]), kept
//! in a [`TaskStore`] (in memory here; SQLite and PostgreSQL in their own crates), driven by an
//! [`Engine`] that creates them durably, carries cancellation and client input to the running
//! work ([`TaskHandle`]), coalesces status messages and expires them after their TTL. The engine
//! knows nothing of MCP wires, HTTP or stdio: the server maps both task wires onto it.

pub mod contract;
mod engine;
mod limits;
mod memory;
pub mod outbox;
mod scheduler;
pub mod store;
mod task;

pub use engine::{Creation, Engine, EngineConfig, EngineError, NewTask, RESTART_ERROR, Resumer, TaskHandle};
pub use limits::{GlobalLimits, Rate, RetryPolicy, ToolLimits, WhenRateLimited};
pub use memory::MemoryStore;
pub use outbox::{Delivery, DeliveryState, Settlement};
pub use scheduler::{Admission, Permit, QueuePosition, Refusal, Scheduler, Snapshot, ToolState};
pub use store::{Created, Page, StoreError, TaskStore, Update};
pub use task::{
    Callback, Owner, TaskId, TaskRecord, TaskStatus, TaskWire, now_ms, rfc3339, time_ordered_unique, write_rfc3339,
};
