// mimalloc rather than glibc's malloc: the services allocate many small, short-lived buffers
// across worker threads, where glibc's arenas showed up in profiles (free, consolidate).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sigvault::cmd::main()
}
