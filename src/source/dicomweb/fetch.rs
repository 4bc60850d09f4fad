//! Fetching ahead: worker threads retrieve the run's instances in the
//! order ingest will open them, holding at most a byte budget of fetched
//! bytes that the pipeline has not yet released. An instance ingest is
//! waiting for is fetched whatever the budget (the budget only limits
//! reading ahead, so it can never stall the run). Bytes live in memory
//! only: nothing of a fetched instance is ever on disk.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::client::Client;
use super::multipart;
use crate::message::WebInstance;

/// Where one instance's fetch is.
enum Slot {
    Queued,
    InFlight,
    Ready(Arc<[u8]>),
    Failed(String),
}

#[derive(Default)]
struct State {
    /// Canonical names in fetch order, and the next one not yet taken.
    order: Vec<WebInstance>,
    next: usize,
    slots: HashMap<String, Slot>,
    /// Asked for by ingest before a worker took them.
    demanded: VecDeque<WebInstance>,
    /// Bytes fetched and not yet released.
    held: u64,
    stop: bool,
}

struct Shared {
    client: Client,
    state: Mutex<State>,
    changed: Condvar,
    budget: u64,
    max_bytes: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a worker panicked while holding it; the
        // state is still consistent (every change is one assignment).
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The fetch workers of one DICOMweb source.
pub struct Fetcher {
    shared: Arc<Shared>,
    workers: usize,
    started: Mutex<bool>,
}

/// One instance's bytes, or why the server would not give them.
pub fn fetch_one(client: &Client, instance: &WebInstance, max_bytes: u64) -> Result<Vec<u8>, String> {
    let path = instance.path();
    client
        .retrieve(&path, |content_type, body| {
            multipart::single_instance(content_type, body, max_bytes).map_err(|e| super::client::HttpError::Answer {
                what: "WADO-RS retrieve".into(),
                problem: e.to_string(),
            })
        })
        .map_err(|e| format!("fetch failed: {e}"))
}

impl Fetcher {
    pub fn new(client: Client, workers: usize, budget: u64, max_bytes: u64) -> Self {
        let shared = Shared { client, state: Mutex::new(State::default()), changed: Condvar::new(), budget, max_bytes };
        Self { shared: Arc::new(shared), workers: workers.max(1), started: Mutex::new(false) }
    }

    /// Queues `order` and starts the workers (once).
    pub fn start(&self, order: Vec<WebInstance>) {
        let mut started = self.started.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *started || order.is_empty() {
            return;
        }
        *started = true;
        {
            let mut state = self.shared.lock();
            for instance in &order {
                state.slots.insert(instance.canonical().to_string(), Slot::Queued);
            }
            state.order = order;
        }
        for i in 0..self.workers {
            let shared = Arc::clone(&self.shared);
            let spawned = std::thread::Builder::new().name(format!("fetch-{i}")).spawn(move || work(&shared));
            if let Err(e) = spawned {
                log::warn!("cannot start fetch worker {i}: {e}");
            }
        }
    }

    /// The instance's bytes, waiting for its fetch; fetched here and now
    /// when it was never queued.
    pub fn get(&self, instance: &WebInstance) -> Result<Arc<[u8]>, String> {
        let key = instance.canonical();
        let mut state = self.shared.lock();
        if !state.slots.contains_key(key) {
            drop(state);
            return fetch_one(&self.shared.client, instance, self.shared.max_bytes).map(Arc::from);
        }
        let mut asked = false;
        loop {
            match state.slots.get(key) {
                Some(Slot::Ready(bytes)) => return Ok(Arc::clone(bytes)),
                Some(Slot::Failed(reason)) => return Err(reason.clone()),
                Some(Slot::Queued) if !asked => {
                    state.demanded.push_back(instance.clone());
                    asked = true;
                    self.shared.changed.notify_all();
                }
                Some(Slot::Queued | Slot::InFlight) => {}
                None => return Err("fetch failed: the instance was released before it was read".into()),
            }
            state = self.shared.changed.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Drops the instance's bytes, making room in the budget.
    pub fn release(&self, instance: &WebInstance) {
        let mut state = self.shared.lock();
        if let Some(Slot::Ready(bytes)) = state.slots.remove(instance.canonical()) {
            state.held = state.held.saturating_sub(bytes.len() as u64);
        }
        self.shared.changed.notify_all();
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
    }
}

/// Takes the next instance to fetch: one ingest waits for first, else the
/// next in order while the budget has room.
fn take(state: &mut State, budget: u64) -> Option<WebInstance> {
    while let Some(instance) = state.demanded.pop_front() {
        if matches!(state.slots.get(instance.canonical()), Some(Slot::Queued)) {
            return Some(instance);
        }
    }
    if state.held >= budget {
        return None;
    }
    while state.next < state.order.len() {
        let instance = state.order[state.next].clone();
        state.next += 1;
        if matches!(state.slots.get(instance.canonical()), Some(Slot::Queued)) {
            return Some(instance);
        }
    }
    None
}

fn work(shared: &Shared) {
    loop {
        let instance = {
            let mut state = shared.lock();
            loop {
                if state.stop {
                    return;
                }
                if let Some(instance) = take(&mut state, shared.budget) {
                    state.slots.insert(instance.canonical().to_string(), Slot::InFlight);
                    break instance;
                }
                let all_taken = state.next >= state.order.len() && state.demanded.is_empty();
                let nothing_queued = all_taken && !state.slots.values().any(|s| matches!(s, Slot::Queued));
                if nothing_queued {
                    return;
                }
                state = shared.changed.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        };
        let fetched = fetch_one(&shared.client, &instance, shared.max_bytes);
        let mut state = shared.lock();
        // A slot released while in flight (the run stopped) stays gone.
        if state.slots.contains_key(instance.canonical()) {
            let slot = match fetched {
                Ok(bytes) => {
                    state.held += bytes.len() as u64;
                    Slot::Ready(Arc::from(bytes))
                }
                Err(reason) => Slot::Failed(reason),
            };
            state.slots.insert(instance.canonical().to_string(), slot);
        }
        shared.changed.notify_all();
    }
}
