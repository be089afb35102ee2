//! One AFL++ target: `sigvault-afl <TARGET>` feeds each input AFL gives it to the target of that
//! name in `sigvault::fuzz::TARGETS`. A target must return for every input; AFL counts a panic
//! or an abort as a crash and keeps the input in its `crashes/` directory.

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some(&(_, target)) = sigvault::fuzz::TARGETS.iter().find(|(n, _)| *n == name) else {
        let names: Vec<&str> = sigvault::fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("usage: sigvault-afl TARGET, one of: {}", names.join(" "));
        std::process::exit(2);
    };
    afl::fuzz!(|data: &[u8]| {
        let _ = target(data);
    });
}
