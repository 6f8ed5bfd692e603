//! The sandbox worker process; see `sgde_sandbox::worker_main`.

fn main() -> std::process::ExitCode {
    sgde_sandbox::worker_main()
}
