//! Admission and fair queueing: who may run now, who waits, who is refused.
//!
//! Every execution of a limited tool goes through three steps:
//!
//! 1. [`Scheduler::admit`] (synchronous, before any task record exists): the rate buckets and the
//!    queue bound are checked; a refusal leaves nothing behind. An admitted call either runs at
//!    once or holds a *reservation* in the queue.
//! 2. [`Admission::acquire`] waits (for its rate token, then for a slot) and yields a [`Permit`].
//! 3. Dropping the [`Permit`] frees the slot and hands it to the next waiter.
//!
//! Fairness: waiters queue per owner, and slots go to owners in turn (round robin), each owner's
//! own calls in order. One owner with a thousand calls waiting delays another owner's call by at
//! most one turn per free slot. State is one mutex held for map updates only, never across an
//! `.await`; a tool with no limits never touches it.

use std::collections::{BTreeMap, VecDeque};

use foldhash::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::limits::{GlobalLimits, Rate, ToolLimits, WhenRateLimited};
use crate::task::TaskId;

/// Why a call was refused. Nothing was reserved or created.
#[derive(Clone, Debug, PartialEq)]
pub enum Refusal {
    /// A token bucket is empty; a call after `retry_after` would get a token.
    RateLimited {
        /// When to try again.
        retry_after: Duration,
        /// The bucket that refused.
        rate: Rate,
        /// Whether the bucket is the caller's own (else the tool's, shared by all callers).
        per_owner: bool,
    },
    /// The queue is at its bound.
    QueueFull {
        /// The bound that was reached.
        capacity: usize,
        /// Whether it is the bound across all tools.
        global: bool,
    },
}

impl Refusal {
    /// A sentence for the caller (a model reads it): what happened and what to do.
    pub fn message(&self, tool: &str) -> String {
        match self {
            Refusal::RateLimited { retry_after, rate, per_owner } => format!(
                "rate limit reached for tool {tool}: {} {}; retry after {} ms",
                rate.describe(),
                if *per_owner { "per caller" } else { "for all callers together" },
                retry_after.as_millis().max(1)
            ),
            Refusal::QueueFull { capacity, global } => format!(
                "tool {tool} is busy: {} {capacity} waiting calls are queued already; try again later",
                if *global { "the server's limit of" } else { "its limit of" }
            ),
        }
    }

    /// The retry-after hint, if there is one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Refusal::RateLimited { retry_after, .. } => Some(*retry_after),
            Refusal::QueueFull { .. } => None,
        }
    }
}

/// Where a waiting execution stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuePosition {
    /// 1 for the next of its tool to run (among the tool's waiters, in arrival order; fairness
    /// across owners may let another owner's call go first).
    pub position: usize,
    /// How many of the tool's executions wait.
    pub queued: usize,
    /// How many of the tool's executions run.
    pub running: usize,
}

impl QueuePosition {
    /// The status message of a waiting task.
    pub fn message(&self, tool: &str) -> String {
        format!(
            "queued: position {} of {} waiting for tool {tool} ({} running)",
            self.position, self.queued, self.running
        )
    }
}

/// One tool's state, for introspection.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolState {
    /// The tool.
    pub tool: String,
    /// Its limits.
    pub limits: ToolLimits,
    /// Executions running.
    pub running: usize,
    /// Executions waiting.
    pub queued: usize,
    /// Tokens left in the tool's bucket, if it has one.
    pub tool_tokens: Option<f64>,
    /// Tokens left in the asking owner's bucket, if the tool has per-owner buckets.
    pub owner_tokens: Option<f64>,
}

/// The scheduler's state, for introspection.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The global limits.
    pub global: GlobalLimits,
    /// Executions of limited tools running.
    pub running: usize,
    /// Executions waiting.
    pub queued: usize,
    /// Every limited tool.
    pub tools: Vec<ToolState>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: &Rate, now: Instant) -> Self {
        Self { tokens: rate.burst as f64, at: now }
    }

    fn refill(&mut self, rate: &Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst as f64);
        self.at = now;
    }

    /// How long until one token is there.
    fn shortfall(&self, rate: &Rate) -> Duration {
        if self.tokens >= 1.0 { Duration::ZERO } else { Duration::from_secs_f64((1.0 - self.tokens) / rate.per_second) }
    }
}

#[derive(Default)]
struct PerTool {
    running: usize,
    /// Reservations, pushed waiters included.
    queued: usize,
    bucket: Option<Bucket>,
}

struct Waiter {
    seq: u64,
    tool: Arc<str>,
    grant: oneshot::Sender<()>,
}

#[derive(Default)]
struct State {
    running: usize,
    queued: usize,
    tools: HashMap<Arc<str>, PerTool>,
    owner_buckets: HashMap<(Arc<str>, String), Bucket>,
    /// Owners with waiters, in turn order; an owner is here exactly when it has waiters.
    turns: VecDeque<String>,
    waiters: HashMap<String, VecDeque<Waiter>>,
    /// Every reservation by arrival (for positions), with the task waiting on it.
    reservations: BTreeMap<u64, (Arc<str>, Option<TaskId>)>,
    tasks: HashMap<TaskId, u64>,
    next_seq: u64,
}

impl State {
    /// Where reservation `seq` stands among its tool's waiters.
    fn position(&self, seq: u64) -> Option<QueuePosition> {
        let (tool, _) = self.reservations.get(&seq)?;
        let position = self.reservations.range(..=seq).filter(|(_, (t, _))| t == tool).count();
        let per_tool = self.tools.get(tool)?;
        Some(QueuePosition { position, queued: per_tool.queued, running: per_tool.running })
    }

    /// Removes a reservation and its task's entry; false if it was gone already.
    fn forget_reservation(&mut self, seq: u64) -> bool {
        match self.reservations.remove(&seq) {
            Some((_, task)) => {
                if let Some(id) = task {
                    self.tasks.remove(&id);
                }
                true
            }
            None => false,
        }
    }
}

/// Enforces [`ToolLimits`] and [`GlobalLimits`].
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use taskwire_engine::{GlobalLimits, Scheduler, ToolLimits};
/// let scheduler = Scheduler::new(GlobalLimits::default(), [("build".to_string(), ToolLimits::default().max_running(1))]);
/// let first = scheduler.admit("build", "alice").unwrap().acquire().await;
/// let second = scheduler.admit("build", "bob").unwrap();
/// assert_eq!(scheduler.snapshot("bob").tools[0].queued, 1);
/// drop(first);
/// let _running = second.acquire().await; // the freed slot goes to the waiter
/// # });
/// ```
pub struct Scheduler {
    global: GlobalLimits,
    limits: HashMap<String, ToolLimits>,
    state: Mutex<State>,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Owner buckets kept before full (idle) ones are dropped.
const OWNER_BUCKETS_BEFORE_PRUNING: usize = 10_000;

impl Scheduler {
    /// A scheduler for these tools (tools not named here are unlimited).
    pub fn new(global: GlobalLimits, tools: impl IntoIterator<Item = (String, ToolLimits)>) -> Arc<Self> {
        let limits: HashMap<String, ToolLimits> = tools.into_iter().filter(|(_, l)| l.is_limited()).collect();
        Arc::new(Self { global, limits, state: Mutex::new(State::default()) })
    }

    /// The limits of `tool`, if it has any.
    pub fn limits(&self, tool: &str) -> Option<&ToolLimits> {
        self.limits.get(tool)
    }

    /// Decides whether a call of `tool` by `owner` (an [`crate::Owner::key`]) may go on.
    pub fn admit(self: &Arc<Self>, tool: &str, owner: &str) -> Result<Admission, Refusal> {
        self.admit_with(tool, owner, true)
    }

    /// Admits work that was accepted before (a task re-run after a crash): it queues like any
    /// other, but neither rate limits nor queue bounds refuse it.
    pub fn readmit(self: &Arc<Self>, tool: &str, owner: &str) -> Admission {
        match self.admit_with(tool, owner, false) {
            Ok(admission) => admission,
            Err(_) => Admission::unlimited(),
        }
    }

    fn admit_with(self: &Arc<Self>, tool: &str, owner: &str, enforce: bool) -> Result<Admission, Refusal> {
        let Some((name, limits)) = self.limits.get_key_value(tool) else {
            return Ok(Admission::unlimited());
        };
        let now = Instant::now();
        let mut st = lock(&self.state);
        let name: Arc<str> = match st.tools.get_key_value(name.as_str()) {
            Some((k, _)) => k.clone(),
            None => Arc::from(name.as_str()),
        };
        let per_tool = st.tools.entry(name.clone()).or_default();
        let tool_free = limits.max_running.is_none_or(|m| per_tool.running < m) && per_tool.queued == 0;
        let tool_queued = per_tool.queued;
        let global_free = self.global.max_running.is_none_or(|m| st.running < m);
        let runs_now = tool_free && global_free;
        if enforce && (!runs_now || limits.when_rate_limited == WhenRateLimited::Wait) {
            // It may have to queue: the bound is checked before a token is taken.
            if tool_queued >= limits.queue_bound() {
                return Err(Refusal::QueueFull { capacity: limits.queue_bound(), global: false });
            }
            if st.queued >= self.global.max_queued {
                return Err(Refusal::QueueFull { capacity: self.global.max_queued, global: true });
            }
        }
        let wait = if enforce { self.take_tokens(&mut st, &name, limits, owner, now)? } else { Duration::ZERO };
        if runs_now && wait.is_zero() {
            let per_tool = st.tools.entry(name.clone()).or_default();
            per_tool.running += 1;
            st.running += 1;
            drop(st);
            let permit = Permit { scheduler: Some(self.clone()), tool: Some(name) };
            return Ok(Admission { scheduler: Some(self.clone()), stage: Stage::Running(permit) });
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        st.tools.entry(name.clone()).or_default().queued += 1;
        st.queued += 1;
        st.reservations.insert(seq, (name.clone(), None));
        // A call that waits only for a slot takes its place in the queue now, in arrival order.
        // Queued when its future was first polled instead, a later call polled sooner (another
        // worker thread) overtook it: an owner's calls then ran out of order.
        let grant = wait.is_zero().then(|| self.enqueue(&mut st, seq, &name, owner));
        let reservation = Reservation { seq, tool: name, owner: owner.to_owned(), not_before: now + wait, grant };
        Ok(Admission { scheduler: Some(self.clone()), stage: Stage::Reserved(reservation) })
    }

    /// Takes a token from every bucket of the call, or refuses. In wait mode the buckets go into
    /// debt and the answer is how long the call must wait for its token.
    fn take_tokens(
        &self,
        st: &mut State,
        tool: &Arc<str>,
        limits: &ToolLimits,
        owner: &str,
        now: Instant,
    ) -> Result<Duration, Refusal> {
        if st.owner_buckets.len() > OWNER_BUCKETS_BEFORE_PRUNING
            && let Some(rate) = &limits.rate_per_owner
        {
            st.owner_buckets.retain(|_, b| {
                b.refill(rate, now);
                b.tokens < rate.burst as f64
            });
        }
        let mut shortfall = Duration::ZERO;
        let mut refusal = None;
        if let Some(rate) = &limits.rate_per_owner {
            let bucket =
                st.owner_buckets.entry((tool.clone(), owner.to_owned())).or_insert_with(|| Bucket::full(rate, now));
            bucket.refill(rate, now);
            let wait = bucket.shortfall(rate);
            if wait > shortfall {
                shortfall = wait;
                refusal = Some(Refusal::RateLimited { retry_after: wait, rate: *rate, per_owner: true });
            }
        }
        if let Some(rate) = &limits.rate_per_tool {
            let bucket =
                st.tools.entry(tool.clone()).or_default().bucket.get_or_insert_with(|| Bucket::full(rate, now));
            bucket.refill(rate, now);
            let wait = bucket.shortfall(rate);
            if wait > shortfall {
                shortfall = wait;
                refusal = Some(Refusal::RateLimited { retry_after: wait, rate: *rate, per_owner: false });
            }
        }
        if let (Some(refusal), WhenRateLimited::Refuse) = (refusal, limits.when_rate_limited) {
            return Err(refusal);
        }
        if limits.rate_per_owner.is_some()
            && let Some(b) = st.owner_buckets.get_mut(&(tool.clone(), owner.to_owned()))
        {
            b.tokens -= 1.0;
        }
        if let Some(b) = st.tools.get_mut(tool).and_then(|t| t.bucket.as_mut()) {
            b.tokens -= 1.0;
        }
        Ok(shortfall)
    }

    /// Where the task `id` waits, if it does.
    pub fn queue_position(&self, id: &TaskId) -> Option<QueuePosition> {
        let st = lock(&self.state);
        st.position(*st.tasks.get(id)?)
    }

    /// The limits and the current counts, with `owner`'s own buckets (no one else's).
    pub fn snapshot(&self, owner: &str) -> Snapshot {
        let now = Instant::now();
        let mut st = lock(&self.state);
        let mut names: Vec<&String> = self.limits.keys().collect();
        names.sort();
        let mut tools = Vec::with_capacity(names.len());
        for name in names {
            let limits = &self.limits[name];
            let key: Arc<str> = Arc::from(name.as_str());
            let per_tool = st.tools.entry(key.clone()).or_default();
            let tool_tokens = limits.rate_per_tool.map(|rate| {
                let b = per_tool.bucket.get_or_insert_with(|| Bucket::full(&rate, now));
                b.refill(&rate, now);
                b.tokens
            });
            let (running, queued) = (per_tool.running, per_tool.queued);
            let owner_tokens = limits.rate_per_owner.map(|rate| {
                st.owner_buckets.get_mut(&(key.clone(), owner.to_owned())).map_or(rate.burst as f64, |b| {
                    b.refill(&rate, now);
                    b.tokens
                })
            });
            tools.push(ToolState {
                tool: name.clone(),
                limits: limits.clone(),
                running,
                queued,
                tool_tokens,
                owner_tokens,
            });
        }
        Snapshot { global: self.global, running: st.running, queued: st.queued, tools }
    }

    /// Hands free slots to waiters, owners in turn.
    fn dispatch(&self, st: &mut State) {
        let mut unserved_turns = st.turns.len();
        while unserved_turns > 0 && self.global.max_running.is_none_or(|m| st.running < m) {
            let Some(owner) = st.turns.pop_front() else { break };
            let Some(queue) = st.waiters.get_mut(&owner) else { continue };
            let has_room = |tool: &str, tools: &HashMap<Arc<str>, PerTool>| {
                let running = tools.get(tool).map_or(0, |t| t.running);
                self.limits.get(tool).and_then(|l| l.max_running).is_none_or(|m| running < m)
            };
            let Some(i) = queue.iter().position(|w| has_room(&w.tool, &st.tools)) else {
                st.turns.push_back(owner);
                unserved_turns -= 1;
                continue;
            };
            let waiter = queue.remove(i).expect("the position was just found");
            if queue.is_empty() {
                st.waiters.remove(&owner);
            } else {
                st.turns.push_back(owner);
            }
            st.forget_reservation(waiter.seq);
            st.queued -= 1;
            let per_tool = st.tools.entry(waiter.tool.clone()).or_default();
            per_tool.queued -= 1;
            // The slot is taken for the waiter; if it went away meanwhile, give the slot back.
            if waiter.grant.send(()).is_ok() {
                per_tool.running += 1;
                st.running += 1;
            }
            unserved_turns = st.turns.len();
        }
    }

    /// Puts waiter `seq` in its owner's queue (in `seq` order) and hands out free slots; the
    /// receiver gets the grant.
    fn enqueue(&self, st: &mut State, seq: u64, tool: &Arc<str>, owner: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let waiter = Waiter { seq, tool: tool.clone(), grant: tx };
        match st.waiters.get_mut(owner) {
            Some(queue) => {
                let at = queue.partition_point(|w| w.seq < seq);
                queue.insert(at, waiter);
            }
            None => {
                st.waiters.insert(owner.to_owned(), VecDeque::from([waiter]));
                st.turns.push_back(owner.to_owned());
            }
        }
        self.dispatch(st);
        rx
    }

    fn release(&self, tool: &Arc<str>) {
        let mut st = lock(&self.state);
        if let Some(t) = st.tools.get_mut(tool) {
            t.running = t.running.saturating_sub(1);
        }
        st.running = st.running.saturating_sub(1);
        self.dispatch(&mut st);
    }

    /// Removes a reservation that never got its slot (its waiter was pushed or not).
    fn withdraw(&self, reservation: &Reservation) {
        let mut st = lock(&self.state);
        if !st.forget_reservation(reservation.seq) {
            return; // granted meanwhile: the grant's receiver releases the slot
        }
        st.queued -= 1;
        if let Some(t) = st.tools.get_mut(&reservation.tool) {
            t.queued -= 1;
        }
        if let Some(queue) = st.waiters.get_mut(&reservation.owner) {
            queue.retain(|w| w.seq != reservation.seq);
            if queue.is_empty() {
                st.waiters.remove(&reservation.owner);
                st.turns.retain(|o| *o != reservation.owner);
            }
        }
        // A waiter leaving the head of a tool's queue may let another tool's waiter run.
        self.dispatch(&mut st);
    }
}

struct Reservation {
    seq: u64,
    tool: Arc<str>,
    owner: String,
    not_before: Instant,
    /// The grant of a place already in the queue; `None` while a rate token is awaited.
    grant: Option<oneshot::Receiver<()>>,
}

enum Stage {
    /// Unlimited, or already started.
    Done,
    Running(Permit),
    Reserved(Reservation),
}

/// An admitted call: it runs at once or holds a place in the queue. Dropping it gives the place
/// (or the slot) back.
pub struct Admission {
    scheduler: Option<Arc<Scheduler>>,
    stage: Stage,
}

impl Admission {
    /// The admission of a tool without limits: it runs at once and holds nothing.
    pub fn unlimited() -> Admission {
        Admission { scheduler: None, stage: Stage::Done }
    }

    /// Whether the call must wait (for a slot or a rate token) before it runs.
    pub fn must_wait(&self) -> bool {
        matches!(self.stage, Stage::Reserved(_))
    }

    /// Ties the waiting place to a task, so that [`Scheduler::queue_position`] can find it.
    pub fn attach(&self, id: &TaskId) {
        if let (Some(s), Stage::Reserved(r)) = (&self.scheduler, &self.stage) {
            let mut st = lock(&s.state);
            if let Some((_, task)) = st.reservations.get_mut(&r.seq) {
                *task = Some(id.clone());
                st.tasks.insert(id.clone(), r.seq);
            }
        }
    }

    /// Where the call waits, if it does.
    pub fn position(&self) -> Option<QueuePosition> {
        let (Some(s), Stage::Reserved(r)) = (&self.scheduler, &self.stage) else { return None };
        lock(&s.state).position(r.seq)
    }

    /// Waits for the rate token and a slot. Cancel-safe: dropping the future gives the place
    /// back.
    pub async fn acquire(mut self) -> Permit {
        let stage = std::mem::replace(&mut self.stage, Stage::Done);
        let (scheduler, reservation) = match (self.scheduler.take(), stage) {
            (_, Stage::Running(permit)) => return permit,
            (Some(s), Stage::Reserved(r)) => (s, r),
            _ => return Permit { scheduler: None, tool: None },
        };
        let mut waiting = Waiting::new(scheduler, reservation);
        let rx = match waiting.grant.take() {
            Some(rx) => rx,
            None => {
                // Waited for a rate token first. A timer even for a past instant costs a tick
                // (about a millisecond): skip it then.
                if waiting.reservation.not_before > Instant::now() {
                    tokio::time::sleep_until(waiting.reservation.not_before).await;
                }
                let s = waiting.scheduler.clone();
                let r = &waiting.reservation;
                s.enqueue(&mut lock(&s.state), r.seq, &r.tool, &r.owner)
            }
        };
        let rx = waiting.grant.insert(rx);
        // The sender stays in the scheduler's state until it grants or is withdrawn.
        let _ = rx.await;
        waiting.granted = true;
        Permit { scheduler: Some(waiting.scheduler.clone()), tool: Some(waiting.reservation.tool.clone()) }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let (Some(s), Stage::Reserved(r)) = (self.scheduler.take(), std::mem::replace(&mut self.stage, Stage::Done))
        {
            // Gives the place back, or the slot if it was granted already.
            drop(Waiting::new(s, r));
        }
    }
}

/// A place in the queue being waited on; dropped before its grant, it leaves the queue.
struct Waiting {
    scheduler: Arc<Scheduler>,
    reservation: Reservation,
    grant: Option<oneshot::Receiver<()>>,
    granted: bool,
}

impl Waiting {
    fn new(scheduler: Arc<Scheduler>, mut reservation: Reservation) -> Self {
        let grant = reservation.grant.take();
        Waiting { scheduler, reservation, grant, granted: false }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.granted {
            return;
        }
        if let Some(mut rx) = self.grant.take() {
            rx.close();
            if rx.try_recv().is_ok() {
                // Granted between the last poll and this drop: the slot goes back.
                self.scheduler.release(&self.reservation.tool);
                return;
            }
        }
        self.scheduler.withdraw(&self.reservation);
    }
}

/// A running slot. Dropping it frees the slot for the next waiter.
pub struct Permit {
    scheduler: Option<Arc<Scheduler>>,
    tool: Option<Arc<str>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let (Some(s), Some(tool)) = (&self.scheduler, &self.tool) {
            s.release(tool);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn one_tool(limits: ToolLimits) -> Arc<Scheduler> {
        Scheduler::new(GlobalLimits::default(), [("t".to_string(), limits)])
    }

    #[tokio::test]
    async fn an_unlimited_tool_never_waits_and_never_touches_the_state() {
        let s = one_tool(ToolLimits::default().max_running(1));
        let a = s.admit("other", "o").unwrap();
        assert!(!a.must_wait());
        drop(a.acquire().await);
        assert_eq!(s.snapshot("o").running, 0);
    }

    /// Polls `f` once: its output if it finished.
    async fn ready_now<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        tokio::select! {
            biased;
            out = f => Some(out),
            _ = std::future::ready(()) => None,
        }
    }

    #[tokio::test]
    async fn an_owners_calls_get_slots_in_admission_order_whichever_waits_first() {
        let s = one_tool(ToolLimits::default().max_running(1));
        let running = s.admit("t", "o").unwrap().acquire().await;
        let second = s.admit("t", "o").unwrap();
        let mut third = Box::pin(s.admit("t", "o").unwrap().acquire());
        // The third call starts waiting before the second (as on another worker thread).
        assert!(ready_now(&mut third).await.is_none());
        drop(running);
        let mut second = Box::pin(second.acquire());
        let _slot = ready_now(&mut second).await.expect("the freed slot goes to the call admitted first");
        assert!(ready_now(&mut third).await.is_none(), "the later call still waits");
    }

    #[tokio::test]
    async fn slots_go_to_owners_in_turn() {
        let s = one_tool(ToolLimits::default().max_running(1));
        let running = s.admit("t", "busy").unwrap().acquire().await;
        // "busy" queues five calls, then "quiet" queues one.
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for (i, owner) in ["busy", "busy", "busy", "busy", "busy", "quiet"].into_iter().enumerate() {
            let admission = s.admit("t", owner).unwrap();
            assert!(admission.must_wait());
            let order = order.clone();
            waiters.push(tokio::spawn(async move {
                let permit = admission.acquire().await;
                order.lock().unwrap().push((i, owner));
                tokio::task::yield_now().await;
                drop(permit);
            }));
            tokio::task::yield_now().await;
        }
        drop(running);
        for w in waiters {
            w.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        let quiet_turn = order.iter().position(|(_, o)| *o == "quiet").unwrap();
        assert!(quiet_turn <= 1, "the quiet owner waited behind the busy one: {order:?}");
        let busy: Vec<usize> = order.iter().filter(|(_, o)| *o == "busy").map(|(i, _)| *i).collect();
        assert_eq!(busy, [0, 1, 2, 3, 4], "an owner's own calls keep their order");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn running_never_exceeds_the_limits_and_everyone_runs() {
        let s = Scheduler::new(
            GlobalLimits { max_running: Some(3), max_queued: 10_000 },
            [
                ("a".to_string(), ToolLimits::default().max_running(2)),
                ("b".to_string(), ToolLimits::default().max_running(2)),
            ],
        );
        let (now_a, max_a, now_all, max_all, done) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let mut jobs = Vec::new();
        for i in 0..400 {
            let tool = if i % 2 == 0 { "a" } else { "b" };
            let admission = s.admit(tool, &format!("owner{}", i % 7)).unwrap();
            let (now_a, max_a, now_all, max_all, done) =
                (now_a.clone(), max_a.clone(), now_all.clone(), max_all.clone(), done.clone());
            jobs.push(tokio::spawn(async move {
                let _permit = admission.acquire().await;
                let all = now_all.fetch_add(1, Ordering::SeqCst) + 1;
                max_all.fetch_max(all, Ordering::SeqCst);
                if tool == "a" {
                    max_a.fetch_max(now_a.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                }
                tokio::task::yield_now().await;
                if tool == "a" {
                    now_a.fetch_sub(1, Ordering::SeqCst);
                }
                now_all.fetch_sub(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
            }));
        }
        for j in jobs {
            j.await.unwrap();
        }
        assert_eq!(done.load(Ordering::SeqCst), 400);
        assert!(max_a.load(Ordering::SeqCst) <= 2, "tool a ran {} at once", max_a.load(Ordering::SeqCst));
        assert!(max_all.load(Ordering::SeqCst) <= 3, "{} ran at once", max_all.load(Ordering::SeqCst));
        let snapshot = s.snapshot("owner0");
        assert_eq!((snapshot.running, snapshot.queued), (0, 0), "every slot and place was given back");
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_a_withdrawn_place_frees_room() {
        let s = one_tool(ToolLimits::default().max_running(1).max_queued(2));
        let _running = s.admit("t", "o").unwrap().acquire().await;
        let first = s.admit("t", "o").unwrap();
        let second = s.admit("t", "o").unwrap();
        assert_eq!(second.position().map(|p| (p.position, p.queued, p.running)), Some((2, 2, 1)));
        assert_eq!(s.admit("t", "o").err(), Some(Refusal::QueueFull { capacity: 2, global: false }));
        drop(first);
        assert_eq!(second.position().map(|p| p.position), Some(1), "the place behind moved up");
        let third = s.admit("t", "o").expect("room again");
        // A waiter cancelled while waiting leaves the queue too.
        let waiting = tokio::spawn(third.acquire());
        tokio::task::yield_now().await;
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(s.snapshot("o").queued, 1);
    }

    #[tokio::test]
    async fn the_position_of_a_task_is_found_by_its_id() {
        let s = one_tool(ToolLimits::default().max_running(1));
        let _running = s.admit("t", "o").unwrap().acquire().await;
        let admission = s.admit("t", "o").unwrap();
        let id = TaskId::random();
        admission.attach(&id);
        let position = s.queue_position(&id).unwrap();
        assert_eq!(position.message("t"), "queued: position 1 of 1 waiting for tool t (1 running)");
        drop(admission);
        assert_eq!(s.queue_position(&id), None);
    }

    #[tokio::test]
    async fn an_empty_bucket_refuses_with_the_time_until_the_next_token() {
        let s = one_tool(ToolLimits::default().rate_per_owner(Rate::per_second(10.0).burst(3)));
        for _ in 0..3 {
            drop(s.admit("t", "alice").unwrap());
        }
        match s.admit("t", "alice").err() {
            Some(Refusal::RateLimited { retry_after, per_owner: true, .. }) => {
                assert!(retry_after <= Duration::from_millis(100) && retry_after > Duration::from_millis(50));
            }
            other => panic!("expected a rate refusal, got {other:?}"),
        }
        assert!(s.admit("t", "bob").is_ok(), "another owner has its own bucket");
        let tokens = s.snapshot("alice").tools[0].owner_tokens.unwrap();
        assert!(tokens < 1.0, "alice's bucket is empty: {tokens}");
    }

    #[tokio::test]
    async fn in_wait_mode_calls_get_their_tokens_in_time() {
        let s = one_tool(ToolLimits::default().rate_per_tool(Rate::per_second(20.0).burst(1)).wait_when_rate_limited());
        let start = Instant::now();
        for _ in 0..5 {
            drop(s.admit("t", "o").unwrap().acquire().await);
        }
        // One token at once, then four at 50 ms each.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(195), "too fast: {elapsed:?}");
    }
}
