//! [`ReloadableAcceptor`]: an acceptor whose configuration can be replaced
//! while it serves (new certificates, keys, limits), for reloads without a
//! restart.

use std::fmt;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::{LinkError, SecureAcceptor, SecureServer};

/// A [`SecureAcceptor`] that can be swapped atomically: every
/// [`accept`](Self::accept) uses the acceptor current when it starts, and
/// [`replace`](Self::replace) puts a new one in place for the connections
/// that come after. Connections already open keep the configuration they
/// were accepted with, untouched.
///
/// Cheap to clone: clones share the acceptor, so the task that reloads
/// (on SIGHUP, say) and the accept loop each hold one.
///
/// The pattern for a reload: read and parse everything (certificate chain,
/// private key, HMAC keys) and build the new [`SecureAcceptor`] first; only
/// if that succeeds, `replace`. A file that fails to load then leaves the
/// running configuration in place. `examples/reload.rs` shows it;
/// `secure-link serve` does it on SIGHUP.
///
/// Replacing the acceptor does not touch the links already open: a reload
/// that removes an HMAC key or a client CA must also close the links that
/// only the old configuration authorised. [`changes`](Self::changes)
/// tells each link's task of every replace, and
/// [`SecureServer::revoked_by`] says whether the new configuration still
/// authorises the link (second example).
///
/// ```no_run
/// # async fn run(chain: &str, key: &str, hmac: &[u8], new_chain: &str, new_key: &str)
/// # -> Result<(), secure_link::LinkError> {
/// use secure_link::{ReloadableAcceptor, SecureAcceptor};
///
/// let acceptor = ReloadableAcceptor::new(SecureAcceptor::new(chain, key, hmac)?);
/// let reloader = acceptor.clone();
/// // ... later, in the task that watches for a reload:
/// match SecureAcceptor::new(new_chain, new_key, hmac) {
///     Ok(fresh) => drop(reloader.replace(fresh)),
///     Err(err) => eprintln!("reload failed, keeping the running configuration: {err}"),
/// }
/// # Ok(()) }
/// ```
///
/// A link's task that closes its link once a reload revokes it (and checks
/// after the first message too, when the link is pinned to its key):
///
/// ```no_run
/// use futures::{SinkExt, StreamExt};
/// use secure_link::{ReloadableAcceptor, SecureServer};
/// # async fn run(acceptor: ReloadableAcceptor, tcp: tokio::net::TcpStream)
/// # -> Result<(), secure_link::LinkError> {
/// // Subscribe with the acceptor the link is accepted with: a replace
/// // after this line is seen.
/// let mut changes = acceptor.changes();
/// let mut server = acceptor.accept(tcp).await?;
/// let mut first = true;
/// loop {
///     tokio::select! {
///         message = server.next() => {
///             let Some(message) = message else { break };
///             let message = message?;
///             if std::mem::take(&mut first)
///                 && let Some(revoked) = server.revoked_by(&changes.current())
///             {
///                 eprintln!("closing: {revoked}");
///                 break;
///             }
///             println!("{message:?}");
///         }
///         fresh = changes.changed() => if let Some(revoked) = server.revoked_by(&fresh) {
///             eprintln!("closing: {revoked}");
///             break;
///         },
///     }
/// }
/// server.close().await
/// # }
/// ```
#[derive(Clone)]
pub struct ReloadableAcceptor {
    current: Arc<watch::Sender<SecureAcceptor>>,
}

impl ReloadableAcceptor {
    /// Serves with `acceptor` until it is replaced.
    pub fn new(acceptor: SecureAcceptor) -> Self {
        ReloadableAcceptor {
            current: Arc::new(watch::Sender::new(acceptor)),
        }
    }

    /// A copy of the acceptor in place now.
    pub fn current(&self) -> SecureAcceptor {
        self.current.borrow().clone()
    }

    /// Puts `acceptor` in place for connections accepted from now on;
    /// returns the one it replaces. Every [`AcceptorChanges`] is told.
    pub fn replace(&self, acceptor: SecureAcceptor) -> SecureAcceptor {
        self.current.send_replace(acceptor)
    }

    /// Tells of every [`replace`](Self::replace) from now on: for a link's
    /// task, to check with [`SecureServer::revoked_by`] whether the new
    /// configuration still authorises its link. Take it before accepting
    /// the link, so that no replace falls between the two.
    pub fn changes(&self) -> AcceptorChanges {
        AcceptorChanges {
            receiver: self.current.subscribe(),
        }
    }

    /// [`SecureAcceptor::accept`] with the acceptor current when called.
    ///
    /// # Errors
    ///
    /// As [`SecureAcceptor::accept`].
    pub async fn accept<IO>(&self, io: IO) -> Result<SecureServer<IO>, LinkError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        self.current().accept(io).await
    }
}

/// The replaces of a [`ReloadableAcceptor`], from
/// [`ReloadableAcceptor::changes`]. Holds no copy of its own: each is
/// taken when asked for.
#[derive(Debug)]
pub struct AcceptorChanges {
    receiver: watch::Receiver<SecureAcceptor>,
}

impl AcceptorChanges {
    /// Waits for the next replace and returns (a copy of) the acceptor in
    /// place then. Several replaces since the last call are seen as one,
    /// the latest. Once every clone of the [`ReloadableAcceptor`] is
    /// dropped no replace can come, and this waits for ever.
    ///
    /// # Cancellation safety
    ///
    /// Cancellation safe: a replace that a dropped call did not return is
    /// returned by the next one.
    pub async fn changed(&mut self) -> SecureAcceptor {
        if self.receiver.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        self.receiver.borrow_and_update().clone()
    }

    /// A copy of the acceptor in place now (a replace it shows is still
    /// returned by [`changed`](Self::changed)).
    pub fn current(&self) -> SecureAcceptor {
        self.receiver.borrow().clone()
    }
}

impl fmt::Debug for ReloadableAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadableAcceptor")
            .field("current", &self.current())
            .finish()
    }
}
