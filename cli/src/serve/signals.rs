//! The signals `serve` answers: Ctrl-C (SIGINT) and SIGTERM stop it,
//! SIGHUP reloads its certificate, private key and HMAC keys.

use crate::shared::Error;

/// Handlers for the stop signals, installed when this is made: a signal
/// that arrives from then on is seen, even before anyone waits.
pub(crate) struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn install() -> Result<Self, Error> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let watch = |kind: SignalKind, name: &str| {
                signal(kind).map_err(|err| Error::msg(format!("cannot watch {name}: {err}")))
            };
            Ok(Signals {
                interrupt: watch(SignalKind::interrupt(), "SIGINT")?,
                terminate: watch(SignalKind::terminate(), "SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next stop signal, named.
    pub(crate) async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                Some(()) = self.interrupt.recv() => "interrupted",
                Some(()) = self.terminate.recv() => "terminated",
                else => std::future::pending().await,
            }
        }
        #[cfg(not(unix))]
        match tokio::signal::ctrl_c().await {
            Ok(()) => "interrupted",
            Err(_) => std::future::pending().await,
        }
    }
}

/// The handler for SIGHUP (reload), installed when this is made.
pub(crate) struct Reloads {
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl Reloads {
    pub(crate) fn install() -> Result<Self, Error> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let hangup = signal(SignalKind::hangup())
                .map_err(|err| Error::msg(format!("cannot watch SIGHUP: {err}")))?;
            Ok(Reloads { hangup })
        }
        #[cfg(not(unix))]
        Ok(Reloads {})
    }

    /// The next SIGHUP (never, where there is none).
    pub(crate) async fn next(&mut self) {
        #[cfg(unix)]
        if self.hangup.recv().await.is_some() {
            return;
        }
        std::future::pending().await
    }
}
