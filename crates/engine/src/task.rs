//! Task records and the state machine.
//!
//! ```text
//!   working ◄──► input_required
//!      │  ╲          │
//!      ▼   ╲         ▼
//!  completed  failed  cancelled      (terminal: never change again)
//! ```

use std::fmt;

/// A task id: 44 lowercase hex digits, the creation time in milliseconds (12 digits) followed by
/// a UUIDv4 (32 digits, 122 random bits).
///
/// The random part lets the id serve as a capability when there is no authentication. The time
/// prefix makes ids grow with time, so a store's index of ids takes new ones at its end instead
/// of at random places: on SQLite that halves the pages each commit writes and more than
/// doubles durable creations per second (BENCHMARKS.md, "Tasks"). It tells nothing the task's
/// `createdAt` does not.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(String);

/// A unique value that sorts by the time it was made: 12 hex digits of the time in milliseconds,
/// then a UUIDv4 (122 random bits). Task ids are made of it, and so are the scopes of
/// sessionless requests: values a store indexes, whose new entries belong at the index's end.
///
/// ```
/// let (a, b) = (taskwire_engine::time_ordered_unique(), taskwire_engine::time_ordered_unique());
/// assert_eq!(a.len(), 44);
/// assert_ne!(a, b);
/// assert!(a[..12] <= b[..12]);
/// ```
pub fn time_ordered_unique() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Written digit by digit: `format!` cost two of these a creation (a task id and a
    // sessionless scope) ~1.2k instructions each. Twelve digits hold the time until the year
    // 10889.
    let time = now_ms();
    let mut unique = String::with_capacity(44);
    unique.extend((0..12).rev().map(|digit| char::from(HEX[(time >> (4 * digit)) as usize & 0xf])));
    unique.push_str(uuid::Uuid::new_v4().simple().encode_lower(&mut uuid::Uuid::encode_buffer()));
    unique
}

impl TaskId {
    /// A fresh random id ([`time_ordered_unique`]).
    pub fn random() -> Self {
        Self(time_ordered_unique())
    }

    /// Wraps an id received from a client (any string; unknown ids simply are not found).
    pub fn from_wire(s: &str) -> Self {
        Self(s.to_owned())
    }

    /// The id as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A shortened form for logs: ids are capabilities and are never logged in full.
    pub fn redacted(&self) -> String {
        // Eight digits of the random part (the time prefix would tell ids apart poorly); ids
        // from the wire may be anything, so count characters, not bytes.
        let random = if self.0.len() == 44 && self.0.is_ascii() { &self.0[12..] } else { &self.0 };
        format!("{}…", random.chars().take(8).collect::<String>())
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// The status of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    /// Running (or waiting to run).
    Working,
    /// Waiting for the client to answer input requests.
    InputRequired,
    /// Finished with a result (which may be a tool error).
    Completed,
    /// Finished with a protocol-level error.
    Failed,
    /// Cancelled by the client.
    Cancelled,
}

impl TaskStatus {
    /// The wire spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Working => "working",
            Self::InputRequired => "input_required",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "working" => Self::Working,
            "input_required" => Self::InputRequired,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }

    /// Whether the task has ended (`completed`, `failed`, `cancelled`).
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// Whether `self → next` is a legal transition. Terminal states are final; a task moves
    /// between `working` and `input_required` freely and may end from either.
    ///
    /// ```
    /// use taskwire_engine::TaskStatus::*;
    /// assert!(Working.can_become(InputRequired));
    /// assert!(InputRequired.can_become(Cancelled));
    /// assert!(!Completed.can_become(Working));
    /// assert!(!Cancelled.can_become(Completed));
    /// ```
    pub const fn can_become(self, next: TaskStatus) -> bool {
        !self.is_terminal()
            && !matches!((self, next), (Self::Working, Self::Working) | (Self::InputRequired, Self::InputRequired))
    }
}

/// Who owns a task, and so who may see it.
///
/// With authentication, a task belongs to its principal: another principal gets "not found".
/// Without, the id is the capability (anyone holding it may get, cancel or answer the task), and
/// listings show only what the caller's session or connection (`scope`) created.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Owner {
    /// The authenticated principal, if any.
    pub principal: Option<String>,
    /// The session or connection that created the task (for unauthenticated listings).
    pub scope: String,
}

impl Owner {
    /// An unauthenticated owner scoped to a session or connection.
    pub fn anonymous(scope: impl Into<String>) -> Self {
        Self { principal: None, scope: scope.into() }
    }

    /// Whether `caller` may read or act on a task owned by `self`.
    pub fn admits(&self, caller: &Owner) -> bool {
        self.principal == caller.principal
    }

    /// The identity listings, idempotency keys and fair queueing go by: the principal when
    /// authenticated, else the session or connection. Two owners with the same key are the same
    /// caller ([`Owner::lists_for`]).
    pub fn key(&self) -> String {
        match &self.principal {
            Some(p) => format!("principal:{p}"),
            None => format!("scope:{}", self.scope),
        }
    }

    /// Whether a task owned by `self` appears in `caller`'s listings.
    pub fn lists_for(&self, caller: &Owner) -> bool {
        match (&self.principal, &caller.principal) {
            (Some(a), Some(b)) => a == b,
            (None, None) => self.scope == caller.scope,
            _ => false,
        }
    }
}

/// Which task wire created a task; it decides how a tool error ends the task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskWire {
    /// 2025-11-25 core tasks: a tool error ends the task `failed`.
    Core,
    /// The 2026-07-28 tasks extension (and job control): a tool error ends it `completed`.
    Extension,
}

impl TaskWire {
    /// The stored spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Core => "core",
            Self::Extension => "extension",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "core" => Some(Self::Core),
            "extension" => Some(Self::Extension),
            _ => None,
        }
    }
}

/// A task as stored. Results and errors are raw JSON text, stored and returned byte for byte.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRecord {
    /// The id.
    pub id: TaskId,
    /// The owner.
    pub owner: Owner,
    /// The tool (or request) the task runs.
    pub tool: String,
    /// The status.
    pub status: TaskStatus,
    /// Human-readable status, the only progress channel of 2026-07-28 tasks.
    pub status_message: Option<String>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Last change, milliseconds since the Unix epoch.
    pub updated_at_ms: u64,
    /// Retention from creation in milliseconds; `None` is unlimited.
    pub ttl_ms: Option<u64>,
    /// Suggested milliseconds between polls.
    pub poll_interval_ms: u64,
    /// The result object (JSON text) once `completed`.
    pub result: Option<String>,
    /// The JSON-RPC error object (JSON text) once `failed`.
    pub error: Option<String>,
    /// Outstanding input requests (a JSON object text `{key: {method, params}}`) while
    /// `input_required`.
    pub input_requests: Option<String>,
    /// How many times the work was started.
    pub attempt: u32,
    /// Whether the client asked to cancel.
    pub cancel_requested: bool,
    /// The tool's arguments (a JSON object text), kept so that retryable work can run again.
    pub arguments: Option<String>,
    /// The wire that created the task.
    pub wire: TaskWire,
    /// The engine instance running the work.
    pub lease_holder: Option<String>,
    /// Until when the holder vouches for the work; a lapsed lease means the work is gone.
    pub lease_until_ms: Option<u64>,
    /// The caller's idempotency key: while this record lives, creating a task with the same
    /// owner, tool and key returns this record instead (see [`crate::TaskStore::create`]).
    pub idempotency_key: Option<String>,
    /// Where to POST a signed event when the task ends (or changes status), if anywhere.
    pub callback: Option<Callback>,
}

/// A completion webhook subscription, stored with its task so that the event is enqueued in the
/// same atomic step as the status change it reports (the outbox, [`crate::outbox`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Callback {
    /// The destination URL (checked against the server's guard when the task is created, and
    /// again before every delivery).
    pub url: String,
    /// `true`: an event on every status change; `false`: only when the task ends.
    pub every_status: bool,
}

impl TaskRecord {
    /// Whether `other` is a request for the same work under the same idempotency key: same
    /// owner, tool and key.
    pub fn same_idempotent_work(&self, other: &TaskRecord) -> bool {
        self.idempotency_key.is_some()
            && self.idempotency_key == other.idempotency_key
            && self.tool == other.tool
            && self.owner.lists_for(&other.owner)
    }

    /// When the task may be deleted, if ever.
    pub fn expires_at_ms(&self) -> Option<u64> {
        self.ttl_ms.map(|ttl| self.created_at_ms.saturating_add(ttl))
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// RFC 3339 / ISO 8601 rendering of a millisecond timestamp (`2026-11-21T10:00:00.123Z`).
///
/// ```
/// assert_eq!(taskwire_engine::rfc3339(1_795_255_200_123), "2026-11-21T10:00:00.123Z");
/// ```
pub fn rfc3339(ms: u64) -> String {
    let mut out = Vec::with_capacity(24);
    write_rfc3339(&mut out, ms);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends [`rfc3339`]'s rendering of `ms` to `out`, allocating nothing: every task object a
/// client reads carries two timestamps, and formatting them through `chrono`'s `Display`
/// cost a creation's answer more than the rest of its task object (callgrind).
///
/// ```
/// let mut out = b"at ".to_vec();
/// taskwire_engine::write_rfc3339(&mut out, 0);
/// assert_eq!(out, b"at 1970-01-01T00:00:00.000Z");
/// ```
pub fn write_rfc3339(out: &mut Vec<u8>, ms: u64) {
    const MS_PER_DAY: u64 = 86_400_000;
    let (days, in_day) = (ms / MS_PER_DAY, ms % MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    if year > 9999 {
        // Past what four digits hold: chrono's form (a signed, longer year) is the reference.
        let s = chrono::DateTime::from_timestamp_millis(ms as i64)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        out.extend_from_slice(s.as_bytes());
        return;
    }
    let (h, m, s, milli) = (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60, in_day % 1000);
    // Each field zero-padded to its width, then the character that follows it.
    let fields =
        [(year, 4, b'-'), (month, 2, b'-'), (day, 2, b'T'), (h, 2, b':'), (m, 2, b':'), (s, 2, b'.'), (milli, 3, b'Z')];
    for (value, width, after) in fields {
        let mut digits = [b'0'; 4];
        let mut rest = value;
        for slot in digits[4 - width..].iter_mut().rev() {
            *slot = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        out.extend_from_slice(&digits[4 - width..]);
        out.push(after);
    }
}

/// The proleptic Gregorian (year, month, day) of a count of days since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_grow_with_time_and_keep_122_random_bits() {
        let before = now_ms();
        let first = TaskId::random();
        let stamped = u64::from_str_radix(&first.as_str()[..12], 16).expect("12 hex digits of time");
        assert!((before..=now_ms()).contains(&stamped), "the prefix is the creation time in ms: {first:?}");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = TaskId::random();
        for id in [&first, &second] {
            assert_eq!(id.as_str().len(), 44, "{id:?}");
            let random = uuid::Uuid::parse_str(&id.as_str()[12..]).expect("the last 32 digits are a UUID");
            assert_eq!(random.get_version_num(), 4, "{id:?}");
        }
        assert!(first < second, "a later id sorts after an earlier one: {first:?} {second:?}");
        assert_ne!(first.as_str()[12..20], second.as_str()[12..20]);
    }

    proptest::proptest! {
        #[test]
        fn rfc3339_agrees_with_chrono(ms in 0u64..400_000_000_000_000) {
            let reference = chrono::DateTime::from_timestamp_millis(ms as i64)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            proptest::prop_assert_eq!(rfc3339(ms), reference);
        }
    }

    #[test]
    fn rfc3339_agrees_with_chrono_at_the_calendars_edges() {
        // Leap days, century rules, year ends, and the last four-digit millisecond.
        let edges = [
            "1970-01-01T00:00:00.000Z",
            "2000-02-29T23:59:59.999Z",
            "2100-03-01T00:00:00.000Z",
            "2400-02-29T12:00:00.500Z",
            "2026-12-31T23:59:59.999Z",
            "9999-12-31T23:59:59.999Z",
        ];
        for edge in edges {
            let ms = chrono::DateTime::parse_from_rfc3339(edge).expect("a valid timestamp").timestamp_millis() as u64;
            assert_eq!(rfc3339(ms), edge);
        }
        let past_four_digits = 253_402_300_800_000; // 10000-01-01
        let reference = chrono::DateTime::from_timestamp_millis(past_four_digits as i64).unwrap_or_default();
        assert_eq!(rfc3339(past_four_digits), reference.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    }

    #[test]
    fn redaction_shows_part_of_the_random_digits_and_survives_any_wire_string() {
        let id = TaskId::from_wire("0000000000ffabcdef0123456789abcdef0123456789");
        assert_eq!(id.redacted(), "abcdef01…");
        assert_eq!(TaskId::from_wire("aéééééééé").redacted(), "aééééééé…");
        assert_eq!(TaskId::from_wire("ab").redacted(), "ab…");
    }
}
