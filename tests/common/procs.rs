//! Child processes of the real binary for service tests: the tlog.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sigvault::http::client::{Client, Endpoint};
use sigvault::note;
use sigvault::tlog::api::TlogClient;

use super::{TestDb, TestToken};

/// A tlog child process and what it needs.
pub struct Tlog {
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub public: String,
    pub spki_pem: PathBuf,
    pub db_user: String,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Run a token tool (pkcs11-tool, softhsm2-util) that finds its token by label. Such a tool
/// fails when another token of the shared store cannot be read at that moment (a test of this
/// binary has taken its files away to play a vanished HSM), so a failure is retried for up to
/// 40 s, past any such outage; the last outcome is returned.
fn token_tool(program: &str, args: &[&str]) -> (bool, String, String) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let out = super::run(Command::new(program).args(args));
        if out.0 || Instant::now() >= deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// OpenSC's pkcs11-tool on `token` (the run's module, the token by label), through
/// [`token_tool`].
fn pkcs11_tool(token: &TestToken, args: &[&str]) -> (bool, String, String) {
    let module = super::module();
    let mut all = vec![
        "--module",
        module.to_str().expect("path"),
        "--token-label",
        &token.label,
    ];
    all.extend_from_slice(args);
    token_tool("pkcs11-tool", &all)
}

/// Generate the checkpoint key with OpenSC's pkcs11-tool (not our code) and export its public key.
pub fn keygen(token: &TestToken, dir: &Path) -> PathBuf {
    if !has_tlog_key(token) {
        generate_tlog_key(token);
    }
    export_tlog_pubkey(token, dir)
}

/// Whether `token` already holds a public key labelled "tlog" (e.g. one `import_key` put there).
fn has_tlog_key(token: &TestToken) -> bool {
    let (ok, o, e) = pkcs11_tool(token, &["--list-objects", "--type", "pubkey"]);
    assert!(ok, "pkcs11-tool list: {o}{e}");
    o.lines()
        .any(|l| l.split_whitespace().eq(["label:", "tlog"]))
}

/// Import the PKCS#8 PEM key pair at `pem` into `token` as "tlog" (id 01): tests only, to put
/// one key in two tokens (production keys are generated inside their token).
pub fn import_key(token: &TestToken, pem: &Path) {
    let (ok, o, e) = token_tool(
        "softhsm2-util",
        &[
            "--import",
            pem.to_str().expect("path"),
            "--token",
            &token.label,
            "--label",
            "tlog",
            "--id",
            "01",
            "--pin",
            &token.pin,
        ],
    );
    assert!(ok, "softhsm2-util --import: {o}{e}");
}

fn generate_tlog_key(token: &TestToken) {
    let (ok, o, e) = pkcs11_tool(
        token,
        &[
            "--login",
            "--pin",
            &token.pin,
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--label",
            "tlog",
            "--id",
            "01",
        ],
    );
    assert!(ok, "pkcs11-tool keygen: {o}{e}");
}

fn export_tlog_pubkey(token: &TestToken, dir: &Path) -> PathBuf {
    let der = dir.join("tlog.pub.der");
    let (ok, o, e) = pkcs11_tool(
        token,
        &[
            "--read-object",
            "--type",
            "pubkey",
            "--label",
            "tlog",
            "-o",
            der.to_str().expect("path"),
        ],
    );
    assert!(ok, "pkcs11-tool read pubkey: {o}{e}");
    let pem = dir.join("tlog.pub.pem");
    let (ok, o, e) = super::run(Command::new("openssl").args([
        "pkey",
        "-pubin",
        "-inform",
        "DER",
        "-in",
        der.to_str().expect("p"),
        "-out",
        pem.to_str().expect("p"),
    ]));
    assert!(ok, "{o}{e}");
    pem
}

impl Tlog {
    /// Configure (own DB user, own key) and start.
    pub fn new(test: &str, token: &TestToken, db: &TestDb) -> Self {
        Self::with_max_entry(test, token, db, 2048)
    }

    /// As [`Tlog::new`], accepting entries up to `max_entry` bytes.
    pub fn with_max_entry(test: &str, token: &TestToken, db: &TestDb, max_entry: usize) -> Self {
        Self::with_tree(test, token, db, max_entry, "tlog.test - 7", "tlog.test")
    }

    /// As [`Tlog::with_max_entry`], the tree "t" with this checkpoint origin and signer name.
    pub fn with_tree(
        test: &str,
        token: &TestToken,
        db: &TestDb,
        max_entry: usize,
        origin: &str,
        note_name: &str,
    ) -> Self {
        let dir = super::scratch(test);
        let spki_pem = keygen(token, &dir);
        // A least-privilege database user of its own, so the test can kill its connections.
        let db_user = format!("u{}", &db.database[..db.database.len().min(28)]).replace('-', "_");
        let db_user = db_user[..db_user.len().min(32)].to_owned();
        let pass = "tlog-pass";
        let (ok, _, e) = db.sql(&format!(
            "CREATE USER '{db_user}'@'127.0.0.1' IDENTIFIED BY '{pass}'; \
             GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX, REFERENCES ON `{}`.* TO '{db_user}'@'127.0.0.1'",
            db.database
        ));
        assert!(ok, "{e}");
        let url = format!(
            "mysql://{db_user}:{pass}@{}:{}/{}",
            db.host, db.port, db.database
        );
        super::write_private(&dir.join("db.url"), &url);
        let socket = dir.join("tlog.sock");
        let public = format!("127.0.0.1:{}", free_port());
        let config = dir.join("tlog.toml");
        std::fs::write(
            &config,
            format!(
                r#"[hsm]
module = "{module}"
[tlog]
database_url = {{ file = "{dir}/db.url" }}
migrate_on_start = true
internal_listen = "unix:{socket}"
public_listen = "{public}"
max_entry_size = {max_entry}
batch_max_wait_ms = 10
lease_ttl_ms = 2000
state_dir = "{dir}/state"
[[tlog.trees]]
name = "t"
origin = "{origin}"
note_name = "{note_name}"
key = "pkcs11:token={label};object=tlog"
pin = {{ file = "{pin}" }}
"#,
                module = super::module().display(),
                dir = dir.display(),
                socket = socket.display(),
                label = token.label,
                pin = token.pin_file.display(),
            ),
        )
        .expect("config");
        let (ok, o, e) = super::run(
            Command::new(super::sigvault_bin())
                .arg("check-config")
                .arg(&config),
        );
        assert!(ok, "check-config: {o}{e}");
        let mut t = Tlog {
            child: None,
            dir,
            config,
            socket,
            public,
            spki_pem,
            db_user,
        };
        t.start();
        t
    }

    /// A second instance on the same database and key, with its own socket and port.
    pub fn standby(&self) -> Tlog {
        let socket = self.dir.join("standby.sock");
        let public = format!("127.0.0.1:{}", free_port());
        let text = std::fs::read_to_string(&self.config)
            .expect("config")
            .replace(
                &self.socket.display().to_string(),
                &socket.display().to_string(),
            )
            .replace(&self.public, &public);
        let config = self.dir.join("standby.toml");
        std::fs::write(&config, text).expect("write");
        let mut t = Tlog {
            child: None,
            dir: self.dir.join("standby"),
            config,
            socket,
            public,
            spki_pem: self.spki_pem.clone(),
            db_user: self.db_user.clone(),
        };
        std::fs::create_dir_all(&t.dir).expect("mkdir");
        t.start();
        t
    }

    pub fn start(&mut self) {
        self.child = Some(spawn_service(
            &["tlog", "serve"],
            &self.config,
            &self.dir,
            "tlog.log",
        ));
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tlog.log")).unwrap_or_default()
    }

    /// Stop, mark the tree frozen in the config (`frozen = true`, as an operator retiring it
    /// would), start again.
    pub fn restart_frozen(&mut self) {
        self.stop();
        let mut config = std::fs::read_to_string(&self.config).expect("config");
        assert!(
            config.rfind("[[tlog.trees]]") > config.rfind("[tlog]") && config.ends_with('\n'),
            "the tree's table is last"
        );
        config.push_str("frozen = true\n");
        std::fs::write(&self.config, config).expect("write");
        self.start();
    }

    /// Restart with `line` (e.g. `queue_limit = 8`) added to the `[tlog]` table.
    pub fn restart_with(&mut self, line: &str) {
        self.stop();
        let config = std::fs::read_to_string(&self.config).expect("config");
        assert!(config.contains("[tlog]\n"));
        let config = config.replacen("[tlog]\n", &format!("[tlog]\n{line}\n"), 1);
        std::fs::write(&self.config, config).expect("write");
        self.start();
    }

    /// Wait up to `timeout` for the process to exit by itself; its status if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.child = None;
                    return Some(status);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    pub fn client(&self) -> TlogClient {
        TlogClient::new(vec![
            Client::new(Endpoint::Unix(self.socket.clone()), None)
                .expect("client")
                .with_timeout(Duration::from_secs(20)),
        ])
    }

    pub fn public(&self) -> Client {
        Client::new(
            format!("http://{}", self.public).parse().expect("endpoint"),
            None,
        )
        .expect("client")
    }

    pub fn internal_raw(&self) -> Client {
        Client::new(Endpoint::Unix(self.socket.clone()), None).expect("client")
    }

    /// Verify a checkpoint with openssl and the key pkcs11-tool exported.
    pub fn openssl_verify(&self, cp: &str) -> note::Checkpoint {
        let (body, sigs) = note::parse_note(cp).expect("note");
        assert_eq!(sigs.len(), 1);
        assert_eq!(sigs[0].name, "tlog.test");
        let d = super::scratch("cpverify");
        std::fs::write(d.join("body"), body).expect("w");
        std::fs::write(d.join("sig"), &sigs[0].signature).expect("w");
        let (ok, o, e) = super::run(
            Command::new("openssl")
                .args(["dgst", "-sha256", "-verify"])
                .arg(&self.spki_pem)
                .args(["-signature", "sig", "body"])
                .current_dir(&d),
        );
        assert!(ok && o.contains("Verified OK"), "openssl: {o}{e}");
        note::Checkpoint::parse_body(body).expect("checkpoint")
    }

    pub async fn wait_active(&self) {
        let c = self.client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match c.append("t", b"probe: active?", None, false).await {
                Ok(_) => return,
                Err(e) if Instant::now() < deadline && e.is_transient() => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("tlog never became active: {e}\n{}", self.log()),
            }
        }
    }
}

impl Drop for Tlog {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Tlog {
    /// SIGTERM, then wait for the graceful shutdown (SIGKILL after 15 s).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Start `sigvault <args> --config <config>` with its stderr in `dir/<log>`, and wait for its
/// systemd-style READY=1 (sent once its listeners are bound).
pub fn spawn_service(args: &[&str], config: &Path, dir: &Path, log: &str) -> Child {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let notify = dir.join(format!(
        "notify-{}",
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    let _ = std::fs::remove_file(&notify);
    let sock = std::os::unix::net::UnixDatagram::bind(&notify).expect("notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(log))
        .expect("log");
    let child = Command::new(super::sigvault_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .env("NOTIFY_SOCKET", &notify)
        .env("SIGVAULT_LOG", "info,sqlx=warn")
        .stdout(Stdio::null())
        .stderr(logf)
        .spawn()
        .expect("spawn service");
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).unwrap_or_else(|e| {
        panic!(
            "no READY=1 from sigvault {args:?} ({e}); log:\n{}",
            std::fs::read_to_string(dir.join(log)).unwrap_or_default()
        )
    });
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));
    child
}

/// A service child that gets SIGTERM (then SIGKILL) when dropped.
pub struct Service {
    pub child: Child,
    pub dir: PathBuf,
    pub log: String,
}

impl Service {
    pub fn start(args: &[&str], config: &Path, dir: &Path, log: &str) -> Self {
        Self {
            child: spawn_service(args, config, dir, log),
            dir: dir.into(),
            log: log.into(),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(&self.log)).unwrap_or_default()
    }

    /// Wait up to `timeout` for the service to exit by itself; its status, or None if it still
    /// runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Service {
    /// SIGTERM, then SIGKILL after 15 s; returns once it has exited (also what dropping does).
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return; // exited already (and reaped): its pid may belong to another process now
        }
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}
