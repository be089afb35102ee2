//! Every example config shipped in config/ parses and validates with the code as it is, so the
//! documentation cannot drift from the parser. (Files and credentials they reference exist only
//! on an installed system; `check-config` reports those separately.)

#[test]
fn every_shipped_example_config_parses() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("config dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let cfg = sigvault::config::load(&path)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
            let stem = path.file_stem().and_then(|s| s.to_str()).expect("name");
            assert_eq!(
                cfg.kind(),
                stem,
                "{} should configure {stem}",
                path.display()
            );
            n += 1;
        }
    }
    assert!(
        n >= 3,
        "expected the ceremony, tlog and ctlog examples, found {n}"
    );
}
