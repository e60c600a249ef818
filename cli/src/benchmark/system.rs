//! What the runs take from the machine: loopback TCP pairs, the process's
//! CPU clock, the in-memory pipe's size.

use std::time::Duration;

use secure_link::LinkError;

/// A connected pair of TCP streams over 127.0.0.1 (Nagle off): client end,
/// server end.
pub async fn tcp_pair() -> Result<(tokio::net::TcpStream, tokio::net::TcpStream), LinkError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (client, accepted) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
    let (client, server) = (client?, accepted?.0);
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    Ok((client, server))
}

/// CPU time this process has spent so far, all its threads
/// (`CLOCK_PROCESS_CPUTIME_ID`); on Linux, the only platform this is built
/// and checked on, else `None`.
pub(crate) fn cpu_time() -> Option<Duration> {
    #[cfg(target_os = "linux")]
    {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
        Some(Duration::new(
            u64::try_from(now.tv_sec).ok()?,
            u32::try_from(now.tv_nsec).ok()?,
        ))
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// CPU time this process has spent since `before` (a reading of
/// [`cpu_time`]), all its threads; `None` where there is no such clock.
pub(crate) fn cpu_since(before: Option<Duration>) -> Option<Duration> {
    before
        .zip(cpu_time())
        .map(|(before, now)| now.saturating_sub(before))
}

/// The duplex buffer of [`Transport::Duplex`].
pub(crate) const DUPLEX_BUFFER: usize = 1024 * 1024;
