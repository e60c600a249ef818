//! [`ReloadableAcceptor`]: an acceptor whose configuration can be replaced
//! while it serves (new certificates, keys, limits), for reloads without a
//! restart.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use tokio::io::{AsyncRead, AsyncWrite};

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
#[derive(Clone)]
pub struct ReloadableAcceptor {
    current: Arc<RwLock<SecureAcceptor>>,
}

impl ReloadableAcceptor {
    /// Serves with `acceptor` until it is replaced.
    pub fn new(acceptor: SecureAcceptor) -> Self {
        ReloadableAcceptor {
            current: Arc::new(RwLock::new(acceptor)),
        }
    }

    /// A copy of the acceptor in place now.
    pub fn current(&self) -> SecureAcceptor {
        // A panic while the lock was held cannot leave a half-written
        // acceptor: replace() swaps a whole value.
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts `acceptor` in place for connections accepted from now on;
    /// returns the one it replaces.
    pub fn replace(&self, acceptor: SecureAcceptor) -> SecureAcceptor {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *current, acceptor)
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

impl fmt::Debug for ReloadableAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadableAcceptor")
            .field("current", &self.current())
            .finish()
    }
}
