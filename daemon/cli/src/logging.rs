//! The agent's logs: stderr (text, or JSON lines with `log_json`), an
//! optional `log_file` rotated by size and age as Consul rotates it, and
//! every line offered to `/v1/agent/monitor` watchers at their own level.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use mesh_config::LogFile;
use mesh_telemetry::monitor;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

pub type SetLevel = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

pub fn filter_for(level: &str) -> tracing_subscriber::EnvFilter {
    // Library internals stay at warn: at debug, openraft alone logs every heartbeat.
    tracing_subscriber::EnvFilter::new(format!("warn,mesh={level},mesh_agent={level},mesh_api={level},mesh_raft={level},mesh_store={level},mesh_gossip={level},mesh_checks={level},mesh_dns={level}"))
}

/// How the agent logs.
pub struct LogSettings<'a> {
    pub level: &'a str,
    pub json: bool,
    pub file: Option<&'a LogFile>,
}

/// Installs the agent's logging; returns a setter that changes the level
/// live (config reload), unless `RUST_LOG` pins it.
pub fn init(settings: &LogSettings) -> io::Result<Option<SetLevel>> {
    use std::io::IsTerminal;
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{reload, EnvFilter};
    let from_env = EnvFilter::try_from_default_env().ok();
    let pinned = from_env.is_some();
    let (filter, handle) =
        reload::Layer::new(from_env.unwrap_or_else(|| filter_for(settings.level)));
    let ansi = std::io::stderr().is_terminal() && !settings.json;
    let stderr = if settings.json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(io::stderr)
            .boxed()
    };
    let file = match settings.file {
        Some(f) => {
            let writer = RotatingFile::open(f)?;
            Some(if settings.json {
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(writer)
                    .boxed()
            } else {
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(writer)
                    .boxed()
            })
        }
        None => None,
    };
    let output = stderr.and_then(file).with_filter(filter);
    let ok = tracing_subscriber::registry()
        .with(output)
        .with(MonitorLayer)
        .try_init()
        .is_ok();
    if !ok || pinned {
        return Ok(None);
    }
    Ok(Some(Arc::new(move |level: &str| {
        handle.reload(filter_for(level)).map_err(|e| e.to_string())
    })))
}

// === the monitor ===

fn level_number(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// Offers mesh's own events to monitor watchers, at the level they asked
/// for whatever the agent's own level; costs one atomic load when nobody
/// watches.
struct MonitorLayer;

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for MonitorLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        let level = level_number(meta.level());
        if !monitor::wanted(level) || !meta.target().starts_with("mesh") {
            return;
        }
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        monitor::publish(
            level,
            format!("{now} [{}] {}: {}", meta.level(), meta.target(), fields.0),
        );
    }
}

// === log_file ===

/// A log file rotated past `max_bytes` or `max_age`: the current file is
/// renamed `<stem>-<unix nanos>.<ext>` and the oldest beyond `max_files`
/// are removed.
#[derive(Clone)]
pub struct RotatingFile {
    inner: Arc<Mutex<Rotating>>,
}

struct Rotating {
    settings: LogFile,
    file: File,
    written: u64,
    opened: SystemTime,
}

impl RotatingFile {
    pub fn open(settings: &LogFile) -> io::Result<RotatingFile> {
        if let Some(dir) = settings.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&settings.path)?;
        let written = file.metadata()?.len();
        Ok(RotatingFile {
            inner: Arc::new(Mutex::new(Rotating {
                settings: settings.clone(),
                file,
                written,
                opened: SystemTime::now(),
            })),
        })
    }
}

impl Rotating {
    fn due(&self, next: usize) -> bool {
        let big = self
            .settings
            .max_bytes
            .is_some_and(|max| self.written > 0 && self.written + next as u64 > max);
        let old = self.opened.elapsed().unwrap_or_default() >= self.settings.max_age;
        big || old
    }

    fn rotate(&mut self) -> io::Result<()> {
        let path = &self.settings.path;
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos();
        std::fs::rename(path, rotated_name(path, stamp))?;
        self.file = OpenOptions::new().create(true).append(true).open(path)?;
        self.written = 0;
        self.opened = SystemTime::now();
        if let Some(keep) = self.settings.max_files {
            let mut old = rotated_files(path);
            old.sort();
            let excess = old.len().saturating_sub(keep);
            for f in old.into_iter().take(excess) {
                let _ = std::fs::remove_file(f);
            }
        }
        Ok(())
    }
}

fn stem_ext(path: &Path) -> (String, String) {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "mesh".into());
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (stem, ext)
}

fn rotated_name(path: &Path, stamp: u128) -> PathBuf {
    let (stem, ext) = stem_ext(path);
    path.with_file_name(format!("{stem}-{stamp:024}{ext}"))
}

/// Rotated files of `path`, oldest first once sorted (fixed-width stamps).
pub fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let (stem, ext) = stem_ext(path);
    let prefix = format!("{stem}-");
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(&prefix)
                    && n.ends_with(&ext)
                    && n[prefix.len()..n.len() - ext.len()]
                        .chars()
                        .all(|c| c.is_ascii_digit())
            })
        })
        .collect()
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if r.due(buf.len()) {
            // A failed rotation must not stop logging: keep the current file.
            let _ = r.rotate();
        }
        let n = r.file.write(buf)?;
        r.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .file
            .flush()
    }
}

impl<'a> MakeWriter<'a> for RotatingFile {
    type Writer = RotatingFile;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.log");
        let settings = LogFile {
            path: path.clone(),
            max_bytes: Some(100),
            max_age: Duration::from_secs(3600),
            max_files: Some(2),
        };
        let mut w = RotatingFile::open(&settings).unwrap();
        for i in 0..20 {
            writeln!(w, "line {i:02} padding padding padding").unwrap();
        }
        let rotated = rotated_files(&path);
        assert_eq!(rotated.len(), 2, "{rotated:?}");
        let current = std::fs::read_to_string(&path).unwrap();
        assert!(current.len() <= 100, "{}", current.len());
        assert!(current.contains("line 19"));
    }
}
