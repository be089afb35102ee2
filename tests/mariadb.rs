//! The private MariaDB that tests/run.sh starts: reachable, durable (InnoDB), and each test gets
//! its own database so tests never see each other's rows.

mod common;

#[test]
fn each_test_gets_its_own_innodb_database() {
    let (Some(a), Some(b)) = (common::database("iso_a"), common::database("iso_b")) else {
        return;
    };
    assert_ne!(a.database, b.database);
    let (ok, _, err) =
        a.sql("CREATE TABLE t (id BIGINT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO t VALUES (1),(2)");
    assert!(ok, "{err}");
    let (ok, out, err) = a.sql("SELECT COUNT(*) FROM t");
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "2");
    // b does not see a's table.
    let (ok, _, err) = b.sql("SELECT COUNT(*) FROM t");
    assert!(!ok && err.contains("doesn't exist"), "{err}");
    // The server is a private one on loopback, not a system instance.
    let (ok, out, _) = a.sql("SELECT @@bind_address, @@innodb_flush_log_at_trx_commit");
    assert!(ok);
    assert!(out.starts_with("127.0.0.1"), "{out}");
    assert!(a.url().contains(&a.database));
}

/// The private instance runs with config/mariadb.cnf, the file operators install; with it the
/// services have nothing to warn about. Without it they would, and say which setting and why.
#[tokio::test]
async fn the_shipped_server_settings_leave_nothing_to_warn_about() {
    use sigvault::store::{MIN_REDO_LOG_BYTES, Store, advice};
    // The rules, at their edges.
    assert!(advice(1, MIN_REDO_LOG_BYTES).is_empty());
    let both = advice(2, 96 << 20);
    assert_eq!(both.len(), 2, "{both:?}");
    assert!(
        both[0].contains("innodb_flush_log_at_trx_commit is 2"),
        "{both:?}"
    );
    assert!(
        both[1].contains("innodb_log_file_size is 96 MiB"),
        "{both:?}"
    );
    assert_eq!(advice(0, 1 << 30).len(), 1);
    assert_eq!(advice(1, MIN_REDO_LOG_BYTES - 1).len(), 1);

    let Some(db) = common::database("advice") else {
        return;
    };
    let store = Store::connect(&secrecy::SecretString::from(db.url()), 2)
        .await
        .expect("connect");
    let found = store.server_advice().await.expect("settings");
    assert!(found.is_empty(), "{found:?}");
    // ...because the server runs with the shipped file's values.
    let cnf = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/mariadb.cnf"),
    )
    .expect("config/mariadb.cnf");
    assert!(cnf.lines().any(|l| l == "innodb_log_file_size = 1G"));
    let (ok, out, err) = db.sql("SELECT @@innodb_log_file_size, @@innodb_flush_log_at_trx_commit");
    assert!(ok, "{err}");
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["1073741824", "1"]
    );
}
