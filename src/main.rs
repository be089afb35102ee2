fn main() -> std::process::ExitCode {
    sigvault::cmd::main()
}
