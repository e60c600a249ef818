//! The async runtime the subcommands run on.

use super::Error;

/// Runs `job` on a multi-threaded runtime. The runtime is not waited for
/// afterwards: a write to a stalled stdout may still hold one of its
/// blocking threads, and the outcome is already known.
pub(crate) fn block_on(
    job: impl std::future::Future<Output = Result<(), Error>>,
) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| Error::msg(format!("cannot start the async runtime: {err}")))?;
    let outcome = runtime.block_on(job);
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    outcome
}
