// mimalloc rather than glibc's malloc: the services allocate many small, short-lived buffers
// across worker threads, where glibc's arenas showed up in profiles (free, consolidate).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // A panic is a bug, and its message may quote what a client sent (a token, say): the journal
    // gets where it happened, never the message. A request handler's panic is answered 500
    // (sigvault::http::with_limits) and the service goes on.
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_else(|| "an unknown place".into());
        let thread = std::thread::current();
        eprintln!(
            "sigvault: panic in thread '{}' at {at} (a bug; the message is withheld because it may quote input)",
            thread.name().unwrap_or("unnamed")
        );
    }));
    sigvault::cmd::main()
}
