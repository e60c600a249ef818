//! A fault-injection TCP proxy on 127.0.0.1: it carries a client's
//! connections to an upstream server and cuts them after N bytes in
//! either direction (with FIN or with RST), black-holes them (stops moving
//! bytes, sockets left open), delays or throttles them, refuses new ones,
//! and heals.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// Which way bytes go: `Up` is client to server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Up,
    Down,
}

/// How a connection is cut: a FIN (orderly TCP close, but no TLS
/// `close_notify`) or a RST.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    Fin,
    Rst,
}

/// A cut planned for one connection.
#[derive(Clone, Copy, Debug)]
pub struct Cut {
    pub dir: Dir,
    pub after: u64,
    pub how: How,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Path {
    black_hole: bool,
    delay: Duration,
    /// Bytes per second, per direction.
    throttle: Option<u64>,
}

struct Control {
    upstream: Mutex<SocketAddr>,
    cuts: Mutex<VecDeque<Cut>>,
    path: watch::Sender<Path>,
    kill: broadcast::Sender<How>,
    refuse: std::sync::atomic::AtomicBool,
    connections: AtomicUsize,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    control: Arc<Control>,
    task: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        let _ = self.control.kill.send(How::Rst);
    }
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let control = Arc::new(Control {
            upstream: Mutex::new(upstream),
            cuts: Mutex::new(VecDeque::new()),
            path: watch::Sender::new(Path::default()),
            kill: broadcast::channel(16).0,
            refuse: Default::default(),
            connections: AtomicUsize::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, control.clone()));
        FaultProxy {
            addr,
            control,
            task,
        }
    }

    /// The next connections are cut as planned, one cut each, in order.
    pub fn plan_cuts(&self, cuts: impl IntoIterator<Item = Cut>) {
        self.control.cuts.lock().unwrap().extend(cuts);
    }

    /// Cuts planned and not yet used.
    pub fn cuts_left(&self) -> usize {
        self.control.cuts.lock().unwrap().len()
    }

    /// Cuts every live connection now.
    pub fn cut_now(&self, how: How) {
        let _ = self.control.kill.send(how);
    }

    /// Stops (or restarts) moving bytes; sockets stay open.
    pub fn black_hole(&self, on: bool) {
        self.control.path.send_modify(|path| path.black_hole = on);
    }

    /// Holds each chunk this long before passing it on.
    pub fn delay(&self, delay: Duration) {
        self.control.path.send_modify(|path| path.delay = delay);
    }

    /// At most this many bytes per second each way (`None`: no limit).
    pub fn throttle(&self, bytes_per_second: Option<u64>) {
        self.control
            .path
            .send_modify(|path| path.throttle = bytes_per_second);
    }

    /// New connections are closed at once (the server is away).
    pub fn refuse(&self, on: bool) {
        self.control.refuse.store(on, Ordering::SeqCst);
    }

    /// Connections go to this server from now on (a restarted one).
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self.control.upstream.lock().unwrap() = upstream;
    }

    /// Everything back to a clean path (planned cuts are kept).
    pub fn heal(&self) {
        self.control.path.send_replace(Path::default());
        self.refuse(false);
    }

    /// Connections carried so far.
    pub fn connections(&self) -> usize {
        self.control.connections.load(Ordering::SeqCst)
    }
}

async fn accept_loop(listener: TcpListener, control: Arc<Control>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if control.refuse.load(Ordering::SeqCst) {
            let _ = client.set_zero_linger();
            drop(client);
            continue;
        }
        let upstream = *control.upstream.lock().unwrap();
        let Ok(server) = TcpStream::connect(upstream).await else {
            let _ = client.set_zero_linger();
            continue;
        };
        control.connections.fetch_add(1, Ordering::SeqCst);
        let cut = control.cuts.lock().unwrap().pop_front();
        tokio::spawn(carry(client, server, cut, control.clone()));
    }
}

enum Outcome {
    /// The side read here sent a FIN (passed on to the other).
    Eof,
    Kill(How),
}

async fn carry(client: TcpStream, server: TcpStream, cut: Option<Cut>, control: Arc<Control>) {
    let mut kill = control.kill.subscribe();
    let up_cut = cut.filter(|c| c.dir == Dir::Up);
    let down_cut = cut.filter(|c| c.dir == Dir::Down);
    let how = {
        // Both pumps live until the end (a pump dropped mid-write would
        // lose bytes, a fault nobody planned).
        let up = pump(&client, &server, up_cut, &control);
        let down = pump(&server, &client, down_cut, &control);
        tokio::pin!(up, down);
        let mut up_open = true;
        let mut down_open = true;
        loop {
            let outcome = tokio::select! {
                outcome = &mut up, if up_open => { up_open = false; outcome }
                outcome = &mut down, if down_open => { down_open = false; outcome }
                how = kill.recv() => Outcome::Kill(how.unwrap_or(How::Rst)),
            };
            match outcome {
                Outcome::Eof if !up_open && !down_open => return,
                Outcome::Eof => {}
                Outcome::Kill(how) => break how,
            }
        }
    };
    for socket in [&client, &server] {
        match how {
            How::Rst => {
                let _ = socket.set_zero_linger();
            }
            How::Fin => {
                let _ = socket2::SockRef::from(socket).shutdown(std::net::Shutdown::Write);
            }
        }
    }
}

async fn read(socket: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        socket.readable().await?;
        match socket.try_read(buf) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

async fn write_all(socket: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        socket.writable().await?;
        match socket.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Moves bytes one way until a FIN, a planned cut, or an error.
async fn pump(from: &TcpStream, to: &TcpStream, cut: Option<Cut>, control: &Control) -> Outcome {
    let mut path = control.path.subscribe();
    let mut buf = vec![0u8; 16 * 1024];
    let mut moved = 0u64;
    loop {
        let state = *path.borrow_and_update();
        if state.black_hole {
            if path.changed().await.is_err() {
                return Outcome::Kill(How::Rst);
            }
            continue;
        }
        let room = match state.throttle {
            Some(rate) => ((rate / 100).max(1) as usize).min(buf.len()),
            None => buf.len(),
        };
        let n = match read(from, &mut buf[..room]).await {
            Ok(0) => {
                let _ = socket2::SockRef::from(to).shutdown(std::net::Shutdown::Write);
                return Outcome::Eof;
            }
            Ok(n) => n,
            Err(_) => return Outcome::Kill(How::Rst),
        };
        // A black hole that opened during the read holds these bytes.
        while path.borrow_and_update().black_hole {
            if path.changed().await.is_err() {
                return Outcome::Kill(How::Rst);
            }
        }
        if !state.delay.is_zero() {
            tokio::time::sleep(state.delay).await;
        }
        if state.throttle.is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Some(cut) = cut
            && moved + n as u64 >= cut.after
        {
            let rest = (cut.after - moved) as usize;
            let _ = write_all(to, &buf[..rest]).await;
            return Outcome::Kill(cut.how);
        }
        if write_all(to, &buf[..n]).await.is_err() {
            return Outcome::Kill(How::Rst);
        }
        moved += n as u64;
    }
}
