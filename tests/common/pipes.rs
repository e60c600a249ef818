//! An in-memory network for resilient ends under paused time: every dial
//! is a fresh pair of `tokio::io::duplex` pipes joined by a relay task,
//! whose far end goes to a [`ResilientAcceptor`]. `cut` drops every relay
//! (both ends read the end of their pipe), `set_up(false)` refuses dials.
//! No sockets, so `tokio::time::pause` moves time only when every task
//! waits.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use secure_link::resilient::{Accepted, ResilientAcceptor, ResilientLink};
use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// Bytes each pipe buffers in each direction.
pub const PIPE_BUFFER: usize = 64 * 1024;

#[derive(Clone)]
pub struct Pipes {
    acceptor: ResilientAcceptor,
    sessions: mpsc::UnboundedSender<ResilientLink>,
    up: Arc<AtomicBool>,
    dials: Arc<AtomicUsize>,
    relays: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Pipes {
    /// The network and the channel each new session's link comes out of
    /// (a resumed one goes on by itself).
    pub fn new(acceptor: ResilientAcceptor) -> (Pipes, mpsc::UnboundedReceiver<ResilientLink>) {
        let (sessions, links) = mpsc::unbounded_channel();
        let pipes = Pipes {
            acceptor,
            sessions,
            up: Arc::new(AtomicBool::new(true)),
            dials: Arc::new(AtomicUsize::new(0)),
            relays: Arc::default(),
        };
        (pipes, links)
    }

    /// A dial function for `ResilientConnector::connect`.
    pub fn dial(
        &self,
    ) -> impl FnMut() -> BoxFuture<'static, io::Result<DuplexStream>> + Send + 'static {
        let pipes = self.clone();
        move || {
            let pipes = pipes.clone();
            Box::pin(async move { pipes.connect() })
        }
    }

    fn connect(&self) -> io::Result<DuplexStream> {
        self.dials.fetch_add(1, Ordering::SeqCst);
        if !self.up.load(Ordering::SeqCst) {
            return Err(io::ErrorKind::ConnectionRefused.into());
        }
        let (client, mut near) = tokio::io::duplex(PIPE_BUFFER);
        let (mut far, server) = tokio::io::duplex(PIPE_BUFFER);
        let relay = tokio::spawn(async move {
            let _ = tokio::io::copy_bidirectional(&mut near, &mut far).await;
        });
        let mut relays = self.relays.lock().unwrap_or_else(|p| p.into_inner());
        relays.retain(|relay| !relay.is_finished());
        relays.push(relay.abort_handle());
        let (acceptor, sessions) = (self.acceptor.clone(), self.sessions.clone());
        tokio::spawn(async move {
            if let Ok(Accepted::Session(link)) = acceptor.accept(server).await {
                let _ = sessions.send(link);
            }
        });
        Ok(client)
    }

    /// Drops every connection now.
    pub fn cut(&self) {
        for relay in self
            .relays
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            relay.abort();
        }
    }

    /// Whether dials succeed.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    /// Dials so far, refused ones included.
    pub fn dials(&self) -> usize {
        self.dials.load(Ordering::SeqCst)
    }
}
