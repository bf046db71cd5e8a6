//! Configuration (spec README, "Command line"): built-in defaults, then an
//! optional TOML file (`--config FILE`, or `<root>/ecertd.toml` when it
//! exists), then `ECERTD_*` environment variables, then command-line flags;
//! later layers win. Every problem names where it came from (the file, the
//! variable or the flag) and the key.
//!
//! Keys (file key / environment variable / flag):
//!
//! | key | variable | flag | default | meaning |
//! |---|---|---|---|---|
//! | `root` | `ECERTD_ROOT` | `--root` | `spool` | spool root directory |
//! | `db` | `ECERTD_DB` | `--db` | `<root>/ecertd.db` | SQLite store |
//! | `business_date` | `ECERTD_BUSINESS_DATE` | `--business-date` | today (UTC, per batch) | date for validity checks |
//! | `listen` | `ECERTD_LISTEN` | `serve --listen` | none | TCP endpoint address |
//! | `listen_channel` | `ECERTD_LISTEN_CHANNEL` | | `abi` | channel of TCP batches (`abi` or `ecert`) |
//! | `metrics` | `ECERTD_METRICS` | `serve --metrics` | none | HTTP `/healthz` and `/metrics` address |
//! | `max_file_bytes` | `ECERTD_MAX_FILE_BYTES` | | 67108864 | larger drop files are refused |
//! | `poll_interval_ms` | `ECERTD_POLL_INTERVAL_MS` | | 2000 | rescan period of the drop folders |
//! | `group_batches` | `ECERTD_GROUP_BATCHES` | | 64 | batches of a file committed per transaction |
//! | `lookahead` | `ECERTD_LOOKAHEAD` | | `true` | large groups read certificates on a second thread (`false` on one core) |
//! | `retry_max_ms` | `ECERTD_RETRY_MAX_MS` | | 60000 | longest back-off before retrying a failed file |
//! | `max_connections` | `ECERTD_MAX_CONNECTIONS` | | 64 | concurrent TCP connections |
//! | `max_batch_bytes` | `ECERTD_MAX_BATCH_BYTES` | | 8388608 | bytes of one TCP batch |
//! | `idle_timeout_ms` | `ECERTD_IDLE_TIMEOUT_MS` | | 60000 | TCP read/write stall limit |
//! | `batch_timeout_ms` | `ECERTD_BATCH_TIMEOUT_MS` | | 300000 | a TCP batch's time from its first record to its Z |
//! | `shutdown_timeout_ms` | `ECERTD_SHUTDOWN_TIMEOUT_MS` | | 20000 | drain limit after SIGINT/SIGTERM |
//! | `store_busy_timeout_ms` | `ECERTD_STORE_BUSY_TIMEOUT_MS` | | 30000 | wait for a store lock held by another process |
//! | `log_format` | `ECERTD_LOG_FORMAT` | | `text` | `text` or `json` (stderr) |
//! | `log_level` | `ECERTD_LOG_LEVEL` | | `info` | a tracing filter, e.g. `info,ecertd=debug` |
//!
//! Relative paths in a configuration file are relative to the file's folder.
//! `root` may not be set in `<root>/ecertd.toml` itself (the file is found
//! through the root).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::envelope::Channel;
use crate::types::Date;

/// Output format of the logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The effective configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    pub root: PathBuf,
    pub db: PathBuf,
    /// A fixed business date; `None` means today's UTC date at each batch.
    pub business_date: Option<Date>,
    pub listen: Option<SocketAddr>,
    pub listen_channel: Channel,
    pub metrics: Option<SocketAddr>,
    pub max_file_bytes: u64,
    pub poll_interval: Duration,
    pub group_batches: usize,
    /// Whether large groups read their certificates on a second connection
    /// and thread ([`crate::lookahead`]).
    pub lookahead: bool,
    pub retry_max: Duration,
    pub max_connections: usize,
    pub max_batch_bytes: usize,
    pub idle_timeout: Duration,
    /// How long a TCP batch may take from its first record to its Z record.
    pub batch_timeout: Duration,
    pub shutdown_timeout: Duration,
    /// How long a store write waits for a lock held by another process.
    pub store_busy_timeout: Duration,
    pub log_format: LogFormat,
    pub log_level: String,
    /// The configuration file that was read, if any.
    pub config_file: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            root: PathBuf::from("spool"),
            db: PathBuf::from("spool/ecertd.db"),
            business_date: None,
            listen: None,
            listen_channel: Channel::Abi,
            metrics: None,
            max_file_bytes: 64 << 20,
            poll_interval: Duration::from_millis(2000),
            group_batches: 64,
            lookahead: true,
            retry_max: Duration::from_secs(60),
            max_connections: 64,
            max_batch_bytes: 8 << 20,
            idle_timeout: Duration::from_secs(60),
            batch_timeout: Duration::from_secs(300),
            shutdown_timeout: Duration::from_secs(20),
            store_busy_timeout: Duration::from_secs(30),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            config_file: None,
        }
    }
}

/// A configuration problem: where, which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, environment variable or flag the value came from.
    pub source: String,
    /// The key concerned (empty when the whole file is unreadable).
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "configuration error in {}: {}", self.source, self.message)
        } else {
            write!(
                f,
                "configuration error in {}: key `{}`: {}",
                self.source, self.key, self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// Values given on the command line (and, for the global options, through
/// clap's own reading of `ECERTD_ROOT`, `ECERTD_DB`, `ECERTD_BUSINESS_DATE`).
#[derive(Clone, Debug, Default)]
pub struct Flags {
    pub root: Option<PathBuf>,
    pub db: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub business_date: Option<String>,
    pub listen: Option<String>,
    pub metrics: Option<String>,
}

/// Every key a configuration file may hold.
pub const KEYS: &[&str] = &[
    "root",
    "db",
    "business_date",
    "listen",
    "listen_channel",
    "metrics",
    "max_file_bytes",
    "poll_interval_ms",
    "group_batches",
    "lookahead",
    "retry_max_ms",
    "max_connections",
    "max_batch_bytes",
    "idle_timeout_ms",
    "batch_timeout_ms",
    "shutdown_timeout_ms",
    "store_busy_timeout_ms",
    "log_format",
    "log_level",
];

/// Keys that come through clap (`Flags`) rather than this module's
/// environment layer, which gives them flag rank; every other key of
/// [`KEYS`] is read from `ECERTD_<KEY>` here.
const CLAP_KEYS: &[&str] = &["root", "db", "business_date"];

/// The environment variable of a key.
pub fn env_name(key: &str) -> String {
    format!("ECERTD_{}", key.to_ascii_uppercase())
}

/// A value as found: typed in TOML, or text from the environment or a flag.
enum Raw<'a> {
    Toml(&'a toml::Value),
    Text(&'a str),
}

impl Raw<'_> {
    fn string(&self) -> Result<&str, String> {
        match self {
            Raw::Toml(toml::Value::String(s)) => Ok(s),
            Raw::Toml(v) => Err(format!("expected a string, found {}", v.type_str())),
            Raw::Text(s) => Ok(s),
        }
    }

    fn integer(&self, min: u64, max: u64) -> Result<u64, String> {
        let v = match self {
            Raw::Toml(toml::Value::Integer(i)) => u64::try_from(*i).map_err(|_| format!("{i} is negative"))?,
            Raw::Toml(v) => return Err(format!("expected an integer, found {}", v.type_str())),
            Raw::Text(s) => s
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("{s:?} is not a whole number"))?,
        };
        if v < min || v > max {
            return Err(format!("{v} is outside {min}..={max}"));
        }
        Ok(v)
    }

    fn boolean(&self) -> Result<bool, String> {
        match self {
            Raw::Toml(toml::Value::Boolean(b)) => Ok(*b),
            Raw::Toml(v) => Err(format!("expected true or false, found {}", v.type_str())),
            Raw::Text(s) => match s.trim() {
                "true" => Ok(true),
                "false" => Ok(false),
                other => Err(format!("{other:?} is not true or false")),
            },
        }
    }
}

fn path_value(raw: &Raw<'_>, base: Option<&Path>) -> Result<PathBuf, String> {
    let s = raw.string()?;
    if s.is_empty() {
        return Err("empty path".into());
    }
    let p = PathBuf::from(s);
    Ok(match base {
        Some(b) if p.is_relative() => b.join(p),
        _ => p,
    })
}

fn addr_value(raw: &Raw<'_>) -> Result<SocketAddr, String> {
    let s = raw.string()?;
    s.trim()
        .parse::<SocketAddr>()
        .map_err(|_| format!("{s:?} is not an address like 127.0.0.1:7001 or [::1]:7001"))
}

impl Settings {
    /// Applies one key. `base` is the folder relative paths are taken from.
    fn apply(&mut self, key: &str, raw: Raw<'_>, base: Option<&Path>, db_set: &mut bool) -> Result<(), String> {
        const DAY_MS: u64 = 86_400_000;
        match key {
            "root" => self.root = path_value(&raw, base)?,
            "db" => {
                self.db = path_value(&raw, base)?;
                *db_set = true;
            }
            "business_date" => {
                let s = raw.string()?;
                self.business_date = Some(Date::parse_iso(s).ok_or_else(|| format!("{s:?} is not YYYY-MM-DD"))?);
            }
            "listen" => self.listen = Some(addr_value(&raw)?),
            "metrics" => self.metrics = Some(addr_value(&raw)?),
            "listen_channel" => {
                self.listen_channel = match raw.string()? {
                    "abi" => Channel::Abi,
                    "ecert" => Channel::Ecert,
                    other => return Err(format!("{other:?} is not abi or ecert")),
                }
            }
            "max_file_bytes" => self.max_file_bytes = raw.integer(1, 1 << 40)?,
            "poll_interval_ms" => self.poll_interval = Duration::from_millis(raw.integer(10, DAY_MS)?),
            "group_batches" => self.group_batches = raw.integer(1, 10_000)? as usize,
            "lookahead" => self.lookahead = raw.boolean()?,
            "retry_max_ms" => self.retry_max = Duration::from_millis(raw.integer(10, DAY_MS)?),
            "max_connections" => self.max_connections = raw.integer(1, 100_000)? as usize,
            "max_batch_bytes" => self.max_batch_bytes = raw.integer(1024, 1 << 32)? as usize,
            "idle_timeout_ms" => self.idle_timeout = Duration::from_millis(raw.integer(10, DAY_MS)?),
            "batch_timeout_ms" => self.batch_timeout = Duration::from_millis(raw.integer(10, DAY_MS)?),
            "shutdown_timeout_ms" => self.shutdown_timeout = Duration::from_millis(raw.integer(100, DAY_MS)?),
            "store_busy_timeout_ms" => self.store_busy_timeout = Duration::from_millis(raw.integer(0, DAY_MS)?),
            "log_format" => {
                self.log_format = match raw.string()? {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    other => return Err(format!("{other:?} is not text or json")),
                }
            }
            "log_level" => {
                let s = raw.string()?;
                tracing_subscriber::EnvFilter::try_new(s).map_err(|e| format!("{s:?} is not a log filter: {e}"))?;
                self.log_level = s.to_string();
            }
            _ => return Err(format!("unknown key (known keys: {})", KEYS.join(", "))),
        }
        Ok(())
    }

    /// Builds the effective configuration from the layers.
    pub fn load(flags: &Flags) -> Result<Settings, ConfigError> {
        Settings::load_with_env(flags, |k| std::env::var_os(k))
    }

    /// As [`Settings::load`], with the environment given (for tests).
    pub fn load_with_env(
        flags: &Flags,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Settings, ConfigError> {
        let mut s = Settings::default();
        let mut db_set = false;
        // 1. The file.
        let (file, explicit) = match &flags.config {
            Some(p) => (Some(p.clone()), true),
            None => {
                let root = flags.root.clone().unwrap_or_else(|| s.root.clone());
                let candidate = root.join("ecertd.toml");
                (
                    std::fs::symlink_metadata(&candidate).is_ok().then_some(candidate),
                    false,
                )
            }
        };
        if let Some(path) = &file {
            let source = path.display().to_string();
            let err = |key: &str, message: String| ConfigError {
                source: source.clone(),
                key: key.to_string(),
                message,
            };
            let text = std::fs::read_to_string(path).map_err(|e| err("", format!("cannot read: {e}")))?;
            let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
                let msg = e.message().to_string();
                let line = e
                    .span()
                    .map(|sp| {
                        let before = text.as_bytes().get(..sp.start).unwrap_or(text.as_bytes());
                        format!(" (line {})", before.iter().filter(|&&b| b == b'\n').count() + 1)
                    })
                    .unwrap_or_default();
                err("", format!("not valid TOML{line}: {msg}"))
            })?;
            let base = path.parent().map(|p| {
                if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p.to_path_buf()
                }
            });
            for (key, value) in &table {
                if key == "root" && !explicit {
                    return Err(err(
                        key,
                        "not allowed in <root>/ecertd.toml (the file is found through the root); use --config".into(),
                    ));
                }
                s.apply(key, Raw::Toml(value), base.as_deref(), &mut db_set)
                    .map_err(|m| err(key, m))?;
            }
            s.config_file = Some(path.clone());
        }
        // 2. The environment.
        for key in KEYS.iter().filter(|k| !CLAP_KEYS.contains(k)) {
            let var = env_name(key);
            if let Some(v) = env(&var) {
                let err = |message: String| ConfigError {
                    source: format!("environment variable {var}"),
                    key: key.to_string(),
                    message,
                };
                let text = v.to_str().ok_or_else(|| err("not valid UTF-8".into()))?;
                s.apply(key, Raw::Text(text), None, &mut db_set).map_err(err)?;
            }
        }
        // 3. The flags.
        let flag = |key: &str, flag: &str, value: &str, s: &mut Settings, db_set: &mut bool| {
            s.apply(key, Raw::Text(value), None, db_set)
                .map_err(|message| ConfigError {
                    source: format!("{flag} (or {})", env_name(key)),
                    key: key.to_string(),
                    message,
                })
        };
        if let Some(r) = &flags.root {
            s.root = r.clone();
        }
        if let Some(d) = &flags.db {
            s.db = d.clone();
            db_set = true;
        }
        if let Some(d) = &flags.business_date {
            flag("business_date", "--business-date", d, &mut s, &mut db_set)?;
        }
        if let Some(a) = &flags.listen {
            s.apply("listen", Raw::Text(a), None, &mut db_set)
                .map_err(|message| ConfigError {
                    source: "--listen".into(),
                    key: "listen".into(),
                    message,
                })?;
        }
        if let Some(a) = &flags.metrics {
            s.apply("metrics", Raw::Text(a), None, &mut db_set)
                .map_err(|message| ConfigError {
                    source: "--metrics".into(),
                    key: "metrics".into(),
                    message,
                })?;
        }
        if !db_set {
            s.db = s.root.join("ecertd.db");
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests;
