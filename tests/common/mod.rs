//! Shared helpers for integration tests: a real SoftHSM2 token per test, created in the private
//! token dir that tests/run.sh set up, and a database per test on its private MariaDB.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Is the real-HSM environment here? If not: skip (return false) when run by plain
/// `cargo test`, fail when run by tests/run.sh (SIGVAULT_TEST_REQUIRE=1).
pub fn have_softhsm() -> bool {
    if std::env::var_os("SOFTHSM2_CONF").is_some()
        && std::env::var_os("SIGVAULT_TEST_WORK").is_some()
    {
        return true;
    }
    assert!(
        std::env::var_os("SIGVAULT_TEST_REQUIRE").is_none(),
        "SIGVAULT_TEST_REQUIRE is set but the SoftHSM environment is missing"
    );
    eprintln!("skipping: run through tests/run.sh for a private SoftHSM token dir");
    false
}

pub fn module() -> PathBuf {
    std::env::var_os("SIGVAULT_TEST_PKCS11_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/lib/softhsm/libsofthsm2.so".into())
}

pub fn work_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("SIGVAULT_TEST_WORK").expect("SIGVAULT_TEST_WORK"))
}

/// A fresh scratch directory under the run's work dir.
pub fn scratch(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = work_dir().join(format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&d).expect("mkdir scratch");
    d
}

/// A token initialised for one test, with its PIN in a 0600 file.
pub struct TestToken {
    pub label: String,
    pub pin: String,
    pub pin_file: PathBuf,
}

/// The token for `tag`, out of the set `all` that this test binary uses.
///
/// SoftHSM reads its token directory when the module is initialised and does not notice tokens
/// that `softhsm2-util` creates later, so a test process must create every token it will use
/// before any test loads the module: the first call creates the whole set, at once.
pub fn token(all: &[&str], tag: &str) -> &'static TestToken {
    static SET: std::sync::OnceLock<std::collections::HashMap<String, TestToken>> =
        std::sync::OnceLock::new();
    let set = SET.get_or_init(|| all.iter().map(|t| (t.to_string(), new_token(t))).collect());
    set.get(tag)
        .unwrap_or_else(|| panic!("token tag {tag:?} is not in this test binary's set"))
}

/// Token labels are at most 32 bytes; keep them short and unique per process and call.
fn new_token(tag: &str) -> TestToken {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let label = format!("{}-{}-{n}", &tag[..tag.len().min(12)], std::process::id());
    let pin = format!("pin-{n}-{}", std::process::id());
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            &label,
            "--pin",
            &pin,
            "--so-pin",
            "so-secret",
        ])
        .output()
        .expect("run softhsm2-util");
    assert!(
        out.status.success(),
        "softhsm2-util --init-token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = scratch("pin");
    let pin_file = dir.join(format!("{label}.pin"));
    write_private(&pin_file, &pin);
    TestToken {
        label,
        pin,
        pin_file,
    }
}

pub fn write_private(path: &Path, content: &str) {
    std::fs::write(path, content).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// Path of the sigvault binary built for these tests.
pub fn sigvault_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sigvault"))
}

/// `softhsm/ceremony.sh STATE` (the development ceremony) with this build's binary, its tokens
/// in the run's private token dir labelled `<prefix><role>`.
pub fn dev_ceremony(state: &Path, prefix: &str) -> (bool, String, String) {
    run(
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("softhsm/ceremony.sh"))
            .arg(state)
            .env("SIGVAULT", sigvault_bin())
            .env("SIGVAULT_TOKEN_PREFIX", prefix),
    )
}

/// Run a command, returning (success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("spawn");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The private MariaDB of this run, split from SIGVAULT_TEST_MYSQL_URL.
pub struct TestDb {
    pub host: String,
    pub port: String,
    pub user: String,
    pub password: String,
    /// A database created for one test; its URL is `url()`.
    pub database: String,
}

impl TestDb {
    pub fn url(&self) -> String {
        format!(
            "mysql://{}:{}@{}:{}/{}",
            self.user, self.password, self.host, self.port, self.database
        )
    }

    /// Run SQL through the stock `mariadb` client (code we did not write) in this database.
    pub fn sql(&self, sql: &str) -> (bool, String, String) {
        let db = if self.database.is_empty() {
            "information_schema"
        } else {
            &self.database
        };
        run(Command::new("mariadb")
            .arg("--no-defaults")
            .arg("--batch")
            .arg("--skip-column-names")
            .arg(format!("--host={}", self.host))
            .arg(format!("--port={}", self.port))
            .arg(format!("--user={}", self.user))
            .arg(format!("--password={}", self.password))
            .arg(format!("--database={db}"))
            .arg("-e")
            .arg(sql))
    }

    /// Back this database up to `file` with the stock `mariadb-dump --single-transaction`, as
    /// README's "Backups and recovery" suggests.
    pub fn dump(&self, file: &Path) {
        let out = Command::new("mariadb-dump")
            .arg("--no-defaults")
            .arg(format!("--host={}", self.host))
            .arg(format!("--port={}", self.port))
            .arg(format!("--user={}", self.user))
            .arg(format!("--password={}", self.password))
            .arg("--single-transaction")
            .arg(&self.database)
            .output()
            .expect("mariadb-dump");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(file, out.stdout).expect("write dump");
    }

    /// Put a [`TestDb::dump`] back.
    pub fn restore(&self, file: &Path) {
        let (ok, _, e) = self.sql(&format!("source {}", file.display()));
        assert!(ok, "restore: {e}");
    }
}

/// A fresh database for one test on the run's private MariaDB, or `None` (skip) outside
/// tests/run.sh.
pub fn database(test: &str) -> Option<TestDb> {
    static N: AtomicU32 = AtomicU32::new(0);
    let Ok(url) = std::env::var("SIGVAULT_TEST_MYSQL_URL") else {
        assert!(
            std::env::var_os("SIGVAULT_TEST_REQUIRE").is_none(),
            "SIGVAULT_TEST_REQUIRE is set but SIGVAULT_TEST_MYSQL_URL is missing"
        );
        eprintln!("skipping: run through tests/run.sh for a private MariaDB");
        return None;
    };
    let rest = url.strip_prefix("mysql://").expect("mysql:// URL");
    let (cred, addr) = rest.split_once('@').expect("user:pass@host:port");
    let (user, password) = cred.split_once(':').expect("user:pass");
    let addr = addr.trim_end_matches('/');
    let (host, port) = addr.split_once(':').expect("host:port");
    let name: String = test
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(40)
        .collect();
    let database = format!(
        "t_{name}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let db = TestDb {
        host: host.into(),
        port: port.into(),
        user: user.into(),
        password: password.into(),
        database: String::new(),
    };
    let (ok, _, err) = db.sql(&format!("CREATE DATABASE `{database}`"));
    assert!(ok, "CREATE DATABASE failed: {err}");
    Some(TestDb { database, ..db })
}

/// Route the library's tracing output to the test's captured output (shown on failure).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SIGVAULT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .with_test_writer()
        .try_init();
}
pub mod procs;

/// The directory SoftHSM2 keeps the token labelled `label` in (under the run's private token
/// directory), found by the label inside its `token.object`.
pub fn token_dir(label: &str) -> PathBuf {
    let conf = std::fs::read_to_string(std::env::var("SOFTHSM2_CONF").expect("SOFTHSM2_CONF"))
        .expect("softhsm2.conf");
    let dir = conf
        .lines()
        .find_map(|l| l.strip_prefix("directories.tokendir"))
        .map(|v| v.trim_start_matches([' ', '=']).trim().to_owned())
        .expect("directories.tokendir");
    for e in std::fs::read_dir(&dir).expect("token dir") {
        let p = e.expect("entry").path();
        if let Ok(obj) = std::fs::read(p.join("token.object")) {
            if obj.windows(label.len()).any(|w| w == label.as_bytes()) {
                return p;
            }
        }
    }
    panic!("no token labelled {label} under {dir}");
}

/// A token's files moved aside: how a removed or restarted HSM looks to a running PKCS#11
/// session. `restore` puts them back; so does dropping it, so that a test failing meanwhile
/// leaves the shared token store whole for the other tests of its binary.
pub struct TokenAway {
    dir: PathBuf,
    away: PathBuf,
    restored: bool,
}

impl TokenAway {
    pub fn take(label: &str) -> Self {
        let dir = token_dir(label);
        let away = dir.with_extension("away");
        std::fs::rename(&dir, &away).expect("take the token away");
        Self {
            dir,
            away,
            restored: false,
        }
    }

    pub fn restore(mut self) {
        std::fs::rename(&self.away, &self.dir).expect("bring the token back");
        self.restored = true;
    }
}

impl Drop for TokenAway {
    fn drop(&mut self) {
        if !self.restored {
            let _ = std::fs::rename(&self.away, &self.dir);
        }
    }
}

/// What the services say (readyz, log) about a token that keeps failing.
pub fn hsm_failing_phrase(label: &str) -> String {
    format!("the HSM token '{label}' has failed every signature")
}

/// The log of a service that gave up on its token: names it and says why it exits.
pub fn assert_hsm_exit_logged(log: &str, label: &str) {
    assert!(
        log.contains(&hsm_failing_phrase(label))
            && log.contains("exiting so that the service is restarted"),
        "{log}"
    );
}
