//! The acceptor `serve` builds from its files, at start and on every
//! SIGHUP, and the reload in progress.

use std::sync::Arc;
use std::time::Duration;

use secure_link::SecureAcceptor;
use tokio::task::JoinHandle;
use tracing::info;

use super::args::Args;
use crate::{files, shared::Error};

/// The reload in progress, off the event loop (`spawn_blocking`: a slow
/// disk must not stall accepting), and whether a SIGHUP came during it.
#[derive(Default)]
pub(super) struct Reload {
    running: Option<JoinHandle<Result<SecureAcceptor, Error>>>,
    /// A SIGHUP while `running`: read the files again once it is done, so
    /// the configuration is what they hold after the last signal.
    again: bool,
}

impl Reload {
    pub(super) fn start(&mut self, args: &Arc<Args>, timeouts: Timeouts) {
        if self.running.is_some() {
            self.again = true;
            return;
        }
        let args = args.clone();
        self.running = Some(tokio::task::spawn_blocking(move || {
            load_acceptor(&args, &timeouts)
        }));
    }

    /// The outcome of the reload in progress; pending while there is none.
    pub(super) async fn finished(&mut self) -> Result<SecureAcceptor, Error> {
        let Some(running) = &mut self.running else {
            return std::future::pending().await;
        };
        let loaded = running.await;
        self.running = None;
        loaded.unwrap_or_else(|err| Err(Error::msg(format!("the reload task failed: {err}"))))
    }

    /// Starts the reload a SIGHUP asked for while the last one ran.
    pub(super) fn again(&mut self, args: &Arc<Args>, timeouts: Timeouts) {
        if std::mem::take(&mut self.again) {
            self.start(args, timeouts);
        }
    }
}

/// The timeouts every acceptor gets.
#[derive(Clone, Copy)]
pub(super) struct Timeouts {
    pub(super) handshake: Duration,
    pub(super) first_message: Duration,
    pub(super) idle: Duration,
    pub(super) write: Duration,
}

/// Reads the certificate chain, private key, client CA and HMAC key files
/// and builds an acceptor from them: at start, and again on every SIGHUP.
/// Errors name the file.
pub(super) fn load_acceptor(args: &Args, timeouts: &Timeouts) -> Result<SecureAcceptor, Error> {
    files::warn_if_exposed(&args.private_key, "private key");
    for path in &args.hmac_key {
        files::warn_if_exposed(path, "HMAC key file");
    }
    let chain = files::read_text(&args.cert_chain, "certificate chain")?;
    let private_key = zeroize::Zeroizing::new(files::read_text(&args.private_key, "private key")?);
    let mut keys = Vec::new();
    for path in &args.hmac_key {
        keys.extend(files::read_keys(path)?);
    }
    let mut keys = keys.into_iter();
    let Some(primary) = keys.next() else {
        return Err(Error::msg("--hmac-key: no key given"));
    };
    let fingerprints: Vec<String> = std::iter::once(&primary)
        .chain(keys.as_slice())
        .map(secure_link::HmacKey::fingerprint)
        .collect();
    let acceptor = SecureAcceptor::new(&chain, &private_key, primary).map_err(|err| {
        Error::msg(format!(
            "{} / {}: {}",
            args.cert_chain.display(),
            args.private_key.display(),
            files::explain(&err)
        ))
    })?;
    let acceptor = match &args.client_ca {
        Some(path) => {
            let pem = files::read_text(path, "client CA")?;
            acceptor.with_client_ca(&pem).map_err(|err| {
                Error::msg(format!("{}: {}", path.display(), files::explain(&err)))
            })?
        }
        None => acceptor,
    };
    let acceptor = keys
        .fold(acceptor, SecureAcceptor::with_additional_key)
        .with_max_frame_len(args.max_frame_len)
        .with_max_first_frame_len(args.max_first_frame_len)
        .with_handshake_timeout(timeouts.handshake)
        .with_first_message_timeout(timeouts.first_message)
        .with_idle_timeout(timeouts.idle)
        .with_write_timeout(timeouts.write)
        .with_auth_mode(crate::shared::values::auth_mode(args.session_bound));
    let keys = fingerprints.join(", ");
    info!(event = "keys", %keys, "accepting HMAC keys {keys}");
    Ok(acceptor)
}
