//! The validated, ready-to-use config. Every value here has passed validation: IPs are IPv4,
//! CIDRs are expanded, durations are parsed, defaults are filled in. Code above the config layer
//! never sees raw YAML.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::bunq::model::{CredentialId, credential_label};
use crate::bunq::{BaseUrl, Environment};
use crate::config::cron::CronSchedule;
use crate::notify::NotifyConfig;
use crate::sources::{Source, SourceSettings};

/// Where the config is read from when neither `--config` nor the environment says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/bunq-ipsync/config.yaml";
/// Environment variable naming the config file.
pub const CONFIG_PATH_ENV: &str = "BUNQ_IPSYNC_CONFIG";
/// Environment variable holding the API key; wins over every configured source.
pub const API_KEY_ENV: &str = "BUNQ_API_KEY";
/// Environment variable set by systemd when the unit has `LoadCredential=`.
pub const CREDENTIALS_DIRECTORY_ENV: &str = "CREDENTIALS_DIRECTORY";
/// Default for `sync.max_changes`: more changes in one run block the whole run.
pub const DEFAULT_MAX_CHANGES: usize = 10;
/// Default for `sync.max_cidr_addresses`: one CIDR may expand to at most this many addresses.
pub use crate::address::DEFAULT_MAX_CIDR_ADDRESSES;
/// Upper bound for `sync.max_cidr_addresses`: every ACTIVE IP is billed and written one PUT at a
/// time under bunq's rate limits, so a /20 is already more than an allowlist should hold.
pub const MAX_CIDR_ADDRESSES_LIMIT: u32 = 4096;
/// Default for `sync.interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Lower bound for `sync.interval`: each run lists every credential, and bunq allows 3 GETs per
/// 3 seconds per endpoint.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Default for `sync.renew_before`: the session is renewed when less than this remains.
pub const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(60 * 60);
/// Default for `http.listen`: loopback only; expose deliberately.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 9477));
/// Default for `bunq.device_description`. The daemon finds its own credential (and so its own IP,
/// which it must never deactivate) through this description.
pub const DEFAULT_DEVICE_DESCRIPTION: &str = "bunq-ipsync";
/// Default for `bunq.state_dir` (matches systemd's `StateDirectory=bunq-ipsync`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/bunq-ipsync";
/// Default for `log.level`.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// The validated config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The file this was read from, for messages and reloads.
    pub source: PathBuf,
    /// How to reach bunq.
    pub bunq: BunqSettings,
    /// How runs behave.
    pub sync: SyncSettings,
    /// The health and metrics listener.
    pub http: HttpSettings,
    /// Logging.
    pub log: LogSettings,
    /// The credentials under management, in file order. Credentials not listed are never read
    /// or written.
    pub credentials: Vec<CredentialSpec>,
    /// `sources:`: how DNS, file and URL sources are resolved.
    pub sources: SourceSettings,
    /// `notify:`: webhooks and the heartbeat (none by default).
    pub notify: NotifyConfig,
}

impl Config {
    /// Every distinct source any credential names, each once (sorted by value).
    pub fn sources(&self) -> std::collections::BTreeSet<&Source> {
        self.credentials
            .iter()
            .flat_map(|credential| &credential.sources)
            .collect()
    }
}

/// `bunq:`: the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BunqSettings {
    /// Sandbox or production.
    pub environment: Environment,
    /// The API base URL: the override (validated by [`BaseUrl::parse`], the client's own rule),
    /// else the environment's.
    pub base_url: BaseUrl,
    /// True when `base_url` came from the config rather than the environment default.
    pub base_url_overridden: bool,
    /// File holding the API key, if configured.
    pub api_key_file: Option<PathBuf>,
    /// Name of the systemd credential holding the API key, if configured.
    pub api_key_credential: Option<String>,
    /// Description registered with `POST /device-server`; identifies the daemon's own credential.
    pub device_description: String,
    /// Directory for the persisted bunq context and run state.
    pub state_dir: PathBuf,
    /// IPs sent as `permitted_ips` at device registration (empty: bunq binds the caller's IP).
    pub permitted_ips: Vec<Ipv4Addr>,
    /// `bunq.egress_ips` (CIDRs expanded): every address the daemon may call bunq from. These
    /// are never deactivated on the daemon's own credential. `None` when not set: the egress is
    /// unknown, and no IP of the own credential except its registration IP is deactivated.
    pub egress_ips: Option<BTreeSet<Ipv4Addr>>,
}

/// Whether entries outside the desired state are deactivated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// The ACTIVE set becomes exactly the desired set: undesired entries are deactivated.
    Sync,
    /// Desired IPs are made ACTIVE; nothing is ever deactivated.
    Additive,
    /// Read, planned and reported exactly like `sync`, but never written: the planned actions
    /// stay pending, so a security team can watch what the daemon would do before it may.
    Observe,
}

impl Policy {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Sync => "sync",
            Policy::Additive => "additive",
            Policy::Observe => "observe",
        }
    }

    /// Whether the daemon may write this credential's allowlist (`observe` never does).
    pub fn writes(self) -> bool {
        self != Policy::Observe
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `sync:`: run behaviour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncSettings {
    /// The default policy of every credential.
    pub policy: Policy,
    /// Time between daemon runs (ignored when `schedule` is set).
    pub interval: Duration,
    /// Cron schedule (seconds field first, 6 or 7 fields) that replaces `interval`, with its
    /// period measured.
    pub schedule: Option<CronSchedule>,
    /// Renew the bunq session when less than this remains.
    pub renew_before: Duration,
    /// Upper bound of the random spread of each interval run (zero: none), in the form the
    /// daemon's scheduler takes it (`Scheduler::with_jitter`).
    pub jitter: Duration,
    /// More changes than this in one run block the whole run.
    pub max_changes: usize,
    /// A CIDR expanding to more addresses than this is refused.
    pub max_cidr_addresses: u32,
}

/// `http:`: the health and metrics listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpSettings {
    /// Address to bind.
    pub listen: SocketAddr,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// `log:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSettings {
    /// Line format.
    pub format: LogFormat,
    /// A tracing filter directive (`info`, `bunq_ipsync=debug,warn`); `RUST_LOG` may override it.
    pub level: String,
}

/// One credential's desired state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialSpec {
    /// The credential-password-ip id.
    pub id: CredentialId,
    /// Label for logs and plans.
    pub name: Option<String>,
    /// The static IPs that must be ACTIVE (CIDRs expanded).
    pub ips: BTreeSet<Ipv4Addr>,
    /// The dynamic sources whose addresses must be ACTIVE too, in file order, each once.
    pub sources: Vec<Source>,
    /// The effective policy (override, else `sync.policy`).
    pub policy: Policy,
    /// IPs never deactivated, whatever the desired state says (CIDRs expanded).
    pub protected: BTreeSet<Ipv4Addr>,
    /// Whether an empty `ips` was explicitly allowed.
    pub allow_empty: bool,
}

impl CredentialSpec {
    /// `4242 (ci-runners)` or `4242`, for messages.
    pub fn label(&self) -> String {
        credential_label(self.id, self.name.as_deref())
    }
}
