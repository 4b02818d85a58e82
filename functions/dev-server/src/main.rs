//! `make run`: the whole system on one machine.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    dev_server::run().await
}
