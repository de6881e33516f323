//! The in-memory provider: serves every kind by keeping each instance's spec in a map. For
//! planner and executor tests, benchmarks, and trying nimbus without machines. With a
//! directory it persists the map there (`objects.json`, rewritten atomically after each
//! change) and appends every change to `changes.log`, so that separate `nimbus` runs see
//! the same "infrastructure" and a test can count what was done.
//!
//! Faults can be injected: a terminal failure or a number of transient failures for an
//! address, and a delay per change.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nimbus_planner::plan::{Action, Change, KindSchema, Observed, ProviderSchema};
use nimbus_schemas::Kind;
use serde_json::Value;

use crate::{Applied, BoxFuture, Cancel, ObserveRequest, Provider, ProviderError};

#[derive(Debug, Default)]
struct Faults {
    failing: BTreeSet<String>,
    transient: BTreeMap<String, u32>,
}

#[derive(Debug, Default)]
pub struct MemoryProvider {
    objects: Mutex<BTreeMap<String, Value>>,
    directory: Option<PathBuf>,
    faults: Mutex<Faults>,
    delay: Duration,
    observe_calls: AtomicUsize,
    applies: AtomicUsize,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MemoryProvider {
    pub fn new() -> Self {
        MemoryProvider::default()
    }

    /// A provider persisted in `directory` (created if missing), loading what is there.
    pub fn persistent(directory: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(directory)?;
        let objects = match std::fs::read(directory.join("objects.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok(MemoryProvider {
            objects: Mutex::new(objects),
            directory: Some(directory.to_owned()),
            ..MemoryProvider::default()
        })
    }

    /// Every change takes this long.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Changes to `address` fail for good.
    pub fn fail(&self, address: &str) {
        lock(&self.faults).failing.insert(address.to_owned());
    }

    /// The next `times` changes to `address` fail with a transient error.
    pub fn fail_transiently(&self, address: &str, times: u32) {
        lock(&self.faults)
            .transient
            .insert(address.to_owned(), times);
    }

    /// Sets an instance as if changed by hand, outside nimbus.
    pub fn set(&self, address: &str, value: Option<Value>) {
        let mut objects = lock(&self.objects);
        match value {
            Some(v) => objects.insert(address.to_owned(), v),
            None => objects.remove(address),
        };
    }

    pub fn get(&self, address: &str) -> Option<Value> {
        lock(&self.objects).get(address).cloned()
    }

    pub fn len(&self) -> usize {
        lock(&self.objects).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many `observe` calls were made (one per target and batch).
    pub fn observe_calls(&self) -> usize {
        self.observe_calls.load(Ordering::SeqCst)
    }

    /// How many changes were applied successfully.
    pub fn applies(&self) -> usize {
        self.applies.load(Ordering::SeqCst)
    }

    /// The most changes that were in flight at once.
    pub fn peak_in_flight(&self) -> usize {
        self.peak_in_flight.load(Ordering::SeqCst)
    }

    fn persist(&self, objects: &BTreeMap<String, Value>, change: &Change) -> std::io::Result<()> {
        let Some(directory) = &self.directory else {
            return Ok(());
        };
        let temporary = directory.join("objects.json.tmp");
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&serde_json::to_vec_pretty(objects).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&temporary, directory.join("objects.json"))?;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(directory.join("changes.log"))?;
        let line = serde_json::json!({"address": change.address, "action": change.action});
        writeln!(log, "{line}")?;
        log.sync_all()
    }

    fn apply_now(&self, change: &Change) -> Result<Applied, ProviderError> {
        {
            let mut faults = lock(&self.faults);
            if faults.failing.contains(&change.address) {
                return Err(ProviderError::Failed(format!(
                    "{} failed (injected)",
                    change.address
                )));
            }
            if let Some(left) = faults.transient.get_mut(&change.address)
                && *left > 0
            {
                *left -= 1;
                return Err(ProviderError::Transient(format!(
                    "{}: connection refused (injected)",
                    change.address
                )));
            }
        }
        let mut objects = lock(&self.objects);
        let observed = match change.action {
            Action::Create | Action::Update | Action::Replace => {
                let after = change.after.clone().ok_or_else(|| {
                    ProviderError::Bug(format!("{} has no desired spec", change.address))
                })?;
                if !after.is_object() {
                    return Err(ProviderError::Failed(format!(
                        "{}: a spec is a mapping of fields, not {after}",
                        change.address
                    )));
                }
                objects.insert(change.address.clone(), after.clone());
                after
            }
            Action::Delete => {
                objects.remove(&change.address);
                Value::Null
            }
            Action::NoOp | Action::Read | Action::Import => {
                objects.get(&change.address).cloned().unwrap_or(Value::Null)
            }
        };
        self.persist(&objects, change).map_err(|e| {
            ProviderError::Failed(format!("cannot persist the in-memory provider: {e}"))
        })?;
        self.applies.fetch_add(1, Ordering::SeqCst);
        Ok(Applied {
            observed,
            outputs: Value::Null,
        })
    }
}

impl Provider for MemoryProvider {
    fn name(&self) -> &str {
        nimbus_planner::rules::MEMORY
    }

    fn describe(&self) -> ProviderSchema {
        ProviderSchema {
            provider: nimbus_planner::rules::MEMORY.to_owned(),
            kinds: Kind::MANAGED
                .iter()
                .map(|k| KindSchema::default_for(*k))
                .collect(),
        }
    }

    fn observe<'a>(
        &'a self,
        _target: Option<&'a str>,
        batch: &'a [ObserveRequest],
    ) -> BoxFuture<'a, Result<Vec<(String, Observed)>, ProviderError>> {
        Box::pin(async move {
            self.observe_calls.fetch_add(1, Ordering::SeqCst);
            let objects = lock(&self.objects);
            Ok(batch
                .iter()
                .map(|r| {
                    let observed = objects
                        .get(&r.address)
                        .map_or(Observed::Absent, |v| Observed::Present(v.clone()));
                    (r.address.clone(), observed)
                })
                .collect())
        })
    }

    fn apply<'a>(
        &'a self,
        change: &'a Change,
        _cancel: &'a Cancel,
    ) -> BoxFuture<'a, Result<Applied, ProviderError>> {
        Box::pin(async move {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak_in_flight.fetch_max(now, Ordering::SeqCst);
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            let result = self.apply_now(change);
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            result
        })
    }
}
