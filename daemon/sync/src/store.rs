//! What mesh sync remembers across restarts, in one JSON file in its
//! working directory: per task the hash of the inputs last applied, the last
//! runs, the last drift check, and the tasks created through the API.
//! Written whole to a temporary file, synced and renamed, so a crash leaves
//! the old or the new file, never half of one.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::config::TaskConfig;

/// Runs kept per task.
pub const MAX_EVENTS_PER_TASK: usize = 20;
/// Longest error message kept with a run.
pub const MAX_ERROR_BYTES: usize = 4096;

/// One run of a task (or one drift check).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub id: String,
    pub task_name: String,
    /// `apply` or `drift-check`.
    pub kind: String,
    /// What started it: `start`, `change`, `schedule`, `retry`, `api`, `once`.
    pub trigger: String,
    pub inputs_hash: String,
    pub start_time: String,
    pub end_time: Option<String>,
    pub duration_ms: Option<u64>,
    pub success: bool,
    pub error: Option<EventError>,
    /// Terraform's summary line (`Apply complete! Resources: …`, `Plan: …`).
    pub plan_summary: Option<String>,
    /// For drift checks: whether the infrastructure differs from the state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventError {
    pub message: String,
}

/// What is kept for one task.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Hash of the inputs of the last successful apply.
    pub applied_hash: Option<String>,
    /// Newest last.
    pub events: VecDeque<Event>,
    /// Enabled or disabled through the API (tasks created through the API).
    pub enabled: Option<bool>,
    /// Triggers that found the inputs equal to the last apply, so ran nothing.
    #[serde(default)]
    pub unchanged_skips: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StateFile {
    #[serde(default)]
    tasks: BTreeMap<String, TaskRecord>,
    /// Tasks created through the API, in creation order of names.
    #[serde(default)]
    api_tasks: BTreeMap<String, TaskConfig>,
}

/// The state file and its in-memory copy.
pub struct Store {
    path: PathBuf,
    state: Mutex<StateFile>,
}

impl Store {
    /// Opens (or starts) the state in `dir`. Runs that were under way when
    /// the last process died are marked as interrupted.
    pub fn open(dir: &Path) -> Result<Store, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join("mesh-sync-state.json");
        let mut state: StateFile = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{}: not a mesh sync state file ({e}); move it away to start afresh",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateFile::default(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let mut changed = false;
        for record in state.tasks.values_mut() {
            for ev in record.events.iter_mut().filter(|e| e.end_time.is_none()) {
                ev.end_time = Some(ev.start_time.clone());
                ev.success = false;
                ev.error = Some(EventError {
                    message: "mesh sync stopped during this run".into(),
                });
                changed = true;
            }
        }
        let store = Store {
            path,
            state: Mutex::new(state),
        };
        if changed {
            store.save(&store.state.lock().expect("store lock"))?;
        }
        Ok(store)
    }

    fn save(&self, state: &StateFile) -> Result<(), String> {
        let bytes = serde_json::to_vec_pretty(state).expect("state serializes");
        let tmp = self.path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| format!("{}: {e}", self.path.display()))
    }

    fn update<T>(&self, f: impl FnOnce(&mut StateFile) -> T) -> T {
        let mut state = self.state.lock().expect("store lock");
        let out = f(&mut state);
        if let Err(e) = self.save(&state) {
            tracing::error!(error = %e, "mesh sync: saving state failed");
        }
        out
    }

    /// A copy of one task's record.
    pub fn record(&self, task: &str) -> TaskRecord {
        self.state
            .lock()
            .expect("store lock")
            .tasks
            .get(task)
            .cloned()
            .unwrap_or_default()
    }

    /// Adds or replaces (same id) an event, keeping the newest ones.
    pub fn put_event(&self, mut event: Event) {
        if let Some(err) = &mut event.error {
            if err.message.len() > MAX_ERROR_BYTES {
                let cut = err
                    .message
                    .ceil_char_boundary(err.message.len() - MAX_ERROR_BYTES);
                err.message = err.message[cut..].to_string();
            }
        }
        self.update(|s| {
            let record = s.tasks.entry(event.task_name.clone()).or_default();
            match record.events.iter_mut().find(|e| e.id == event.id) {
                Some(old) => *old = event,
                None => record.events.push_back(event),
            }
            while record.events.len() > MAX_EVENTS_PER_TASK {
                record.events.pop_front();
            }
        });
    }

    pub fn set_applied(&self, task: &str, hash: &str) {
        self.update(|s| {
            s.tasks.entry(task.to_string()).or_default().applied_hash = Some(hash.to_string());
        });
    }

    pub fn count_skip(&self, task: &str) {
        self.update(|s| s.tasks.entry(task.to_string()).or_default().unchanged_skips += 1);
    }

    pub fn set_enabled(&self, task: &str, enabled: bool) {
        self.update(|s| {
            s.tasks.entry(task.to_string()).or_default().enabled = Some(enabled);
        });
    }

    pub fn api_tasks(&self) -> Vec<TaskConfig> {
        self.state
            .lock()
            .expect("store lock")
            .api_tasks
            .values()
            .cloned()
            .collect()
    }

    pub fn put_api_task(&self, task: &TaskConfig) {
        self.update(|s| {
            s.api_tasks.insert(task.name.clone(), task.clone());
        });
    }

    /// Forgets an API task and the record of any task by that name.
    pub fn forget(&self, task: &str) {
        self.update(|s| {
            s.api_tasks.remove(task);
            s.tasks.remove(task);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, end: Option<&str>) -> Event {
        Event {
            id: id.into(),
            task_name: "t".into(),
            kind: "apply".into(),
            trigger: "change".into(),
            inputs_hash: "h".into(),
            start_time: "2026-01-01T00:00:00Z".into(),
            end_time: end.map(str::to_string),
            duration_ms: None,
            success: end.is_some(),
            error: None,
            plan_summary: None,
            drift: None,
        }
    }

    #[test]
    fn runs_survive_a_restart_and_unfinished_ones_are_marked() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_event(event("1", Some("2026-01-01T00:00:01Z")));
            store.set_applied("t", "abc");
            store.put_event(event("2", None));
        }
        let store = Store::open(dir.path()).unwrap();
        let rec = store.record("t");
        assert_eq!(rec.applied_hash.as_deref(), Some("abc"));
        assert_eq!(rec.events.len(), 2);
        assert!(rec.events[0].success);
        assert!(!rec.events[1].success);
        assert!(rec.events[1]
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("stopped"));
    }

    #[test]
    fn only_the_newest_runs_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for i in 0..(MAX_EVENTS_PER_TASK + 5) {
            store.put_event(event(&i.to_string(), Some("x")));
        }
        let rec = store.record("t");
        assert_eq!(rec.events.len(), MAX_EVENTS_PER_TASK);
        assert_eq!(
            rec.events.back().unwrap().id,
            (MAX_EVENTS_PER_TASK + 4).to_string()
        );
    }
}
