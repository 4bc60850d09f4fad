//! Fetching ahead: worker threads retrieve the run's instances in the
//! order ingest will open them, holding at most a byte budget of fetched
//! bytes that the pipeline has not yet released (a series retrieve may go
//! over it by that study or series). An instance ingest is waiting for is fetched
//! whatever the budget (the budget only limits reading ahead, so it can
//! never stall the run). Bytes live in memory only: nothing of a fetched
//! instance is ever on disk.
//!
//! A study or series whose instances are all wanted is retrieved in one
//! request (Orthanc answers a study of four for a quarter of the cost of
//! four instance requests); whatever that answer does not deliver, for any
//! reason, is then retrieved instance by instance, so each failure is an
//! instance's own.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::client::{Client, HttpError};
use super::multipart::{self, Parts};
use crate::message::WebInstance;

/// What one request retrieves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The whole study: every instance the server holds in it is wanted.
    Study,
    /// The whole series.
    Series,
    Instance,
}

/// The instances one request retrieves.
pub struct Unit {
    pub scope: Scope,
    pub instances: Vec<WebInstance>,
}

/// Where one instance's fetch is.
enum Slot {
    Queued,
    InFlight,
    Ready(Arc<[u8]>),
    Failed(String),
}

#[derive(Default)]
struct State {
    /// Units in fetch order, and the next one not yet taken.
    units: Vec<Arc<Unit>>,
    taken: Vec<bool>,
    next: usize,
    unit_of: HashMap<String, usize>,
    slots: HashMap<String, Slot>,
    /// Units asked for by ingest before a worker took them.
    demanded: VecDeque<usize>,
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

    /// Records a fetch's outcome, unless the instance was released (the
    /// run stopped) or already delivered.
    fn publish(&self, instance: &WebInstance, fetched: Result<Vec<u8>, String>) {
        let mut state = self.lock();
        if matches!(state.slots.get(instance.canonical()), Some(Slot::InFlight)) {
            let slot = match fetched {
                Ok(bytes) => {
                    state.held += bytes.len() as u64;
                    Slot::Ready(Arc::from(bytes))
                }
                Err(reason) => Slot::Failed(reason),
            };
            state.slots.insert(instance.canonical().to_string(), slot);
        }
        self.changed.notify_all();
    }

    fn in_flight(&self, instance: &WebInstance) -> bool {
        matches!(self.lock().slots.get(instance.canonical()), Some(Slot::InFlight))
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
    client
        .retrieve(&instance.path(), |content_type, body| {
            multipart::single_instance(content_type, body, max_bytes).map_err(answer)
        })
        .map_err(|e| format!("fetch failed: {e}"))
}

fn answer(e: multipart::MultipartError) -> HttpError {
    HttpError::Answer { what: "WADO-RS retrieve".into(), problem: e.to_string() }
}

/// The SOP Instance UID a part's file meta names, if it has one.
fn sop_of(part: &[u8]) -> Option<String> {
    let meta = dicom_object::FileMetaTable::from_reader(part.get(128..)?).ok()?;
    Some(meta.media_storage_sop_instance_uid().to_string())
}

/// A whole study or series in one request: each part goes to the instance
/// its file meta names; parts of instances not asked for are dropped.
fn fetch_whole(shared: &Shared, unit: &Unit) -> Result<(), HttpError> {
    let Some(first) = unit.instances.first() else { return Ok(()) };
    let path = match unit.scope {
        Scope::Study => format!("studies/{}", first.study),
        _ => format!("studies/{}/series/{}", first.study, first.series),
    };
    shared.client.retrieve(&path, |content_type, body| {
        let mut parts = Parts::new(content_type, body, shared.max_bytes).map_err(answer)?;
        while let Some(bytes) = parts.next_part().map_err(answer)? {
            let Some(sop) = sop_of(&bytes) else { continue };
            if let Some(instance) = unit.instances.iter().find(|i| i.sop.as_str() == sop) {
                shared.publish(instance, Ok(bytes));
            }
        }
        Ok(())
    })
}

fn fetch_unit(shared: &Shared, unit: &Unit) {
    if unit.scope != Scope::Instance && unit.instances.len() > 1 {
        if let Err(e) = fetch_whole(shared, unit) {
            log::debug!("{:?} retrieve failed, retrieving its instances one by one: {e}", unit.scope);
        }
    }
    for instance in &unit.instances {
        if shared.in_flight(instance) {
            shared.publish(instance, fetch_one(&shared.client, instance, shared.max_bytes));
        }
    }
}

impl Fetcher {
    pub fn new(client: Client, workers: usize, budget: u64, max_bytes: u64) -> Self {
        let shared = Shared { client, state: Mutex::new(State::default()), changed: Condvar::new(), budget, max_bytes };
        Self { shared: Arc::new(shared), workers: workers.max(1), started: Mutex::new(false) }
    }

    /// Queues `units` and starts the workers (once).
    pub fn start(&self, units: Vec<Unit>) {
        let mut started = self.started.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *started || units.is_empty() {
            return;
        }
        *started = true;
        {
            let mut state = self.shared.lock();
            for (i, unit) in units.iter().enumerate() {
                for instance in &unit.instances {
                    state.slots.insert(instance.canonical().to_string(), Slot::Queued);
                    state.unit_of.insert(instance.canonical().to_string(), i);
                }
            }
            state.taken = vec![false; units.len()];
            state.units = units.into_iter().map(Arc::new).collect();
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
                    if let Some(&unit) = state.unit_of.get(key) {
                        state.demanded.push_back(unit);
                    }
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

/// Takes the next unit to fetch: one ingest waits for first, else the next
/// in order while the budget has room.
fn take(state: &mut State, budget: u64) -> Option<usize> {
    while let Some(unit) = state.demanded.pop_front() {
        if !state.taken[unit] {
            return Some(unit);
        }
    }
    if state.held >= budget {
        return None;
    }
    while state.next < state.units.len() {
        let unit = state.next;
        state.next += 1;
        if !state.taken[unit] {
            return Some(unit);
        }
    }
    None
}

fn work(shared: &Shared) {
    loop {
        let unit = {
            let mut state = shared.lock();
            loop {
                if state.stop {
                    return;
                }
                if let Some(i) = take(&mut state, shared.budget) {
                    state.taken[i] = true;
                    let unit = Arc::clone(&state.units[i]);
                    for instance in &unit.instances {
                        if let Some(slot @ Slot::Queued) = state.slots.get_mut(instance.canonical()) {
                            *slot = Slot::InFlight;
                        }
                    }
                    break unit;
                }
                if state.next >= state.units.len() && state.demanded.is_empty() {
                    return;
                }
                state = shared.changed.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        };
        fetch_unit(shared, &unit);
    }
}
