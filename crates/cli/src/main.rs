//! The `coordkit` binary; everything is in the library (`coordkit_cli::main`).
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    coordkit_cli::main()
}
