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
