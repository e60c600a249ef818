//! An async echo server over TCP: every authenticated message is printed and
//! sent back. Shows the acceptor, a timeout on each phase, and the polite
//! close (`while let Some(..) = server.next().await { .. } server.close()`).
//!
//! Make certificates and a key with the CLI, then run the server and, in a
//! second terminal, the client example:
//!
//! ```text
//! cargo run --release -- gen-certs --out pki
//! cargo run --release -- gen-key --out key.hex
//! cargo run --example server -- 127.0.0.1:7878 pki key.hex
//! cargo run --example client -- 127.0.0.1:7878 pki/ca.pem key.hex hello world
//! ```
//!
//! A fourth argument `once` makes the server exit after one connection.

use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use secure_link::{HmacKey, LinkError, SecureAcceptor};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// How long a client may stay silent between messages.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the closing exchange may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, pki, key_file, rest @ ..] = args.as_slice() else {
        return Err("usage: server LISTEN_ADDR PKI_DIR KEY_FILE [once]".into());
    };
    let once = rest.first().is_some_and(|a| a == "once");
    let chain = std::fs::read_to_string(format!("{pki}/server-chain.pem"))?;
    let private_key = std::fs::read_to_string(format!("{pki}/server-key.pem"))?;
    let key = HmacKey::from_hex(&std::fs::read_to_string(key_file)?)?;
    let acceptor = SecureAcceptor::new(&chain, &private_key, key)?
        .with_handshake_timeout(Duration::from_secs(10));

    let listener = TcpListener::bind(listen.as_str()).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (tcp, peer) = listener.accept().await?;
        let acceptor = acceptor.clone();
        let connection = tokio::spawn(async move {
            match serve(acceptor, tcp, peer).await {
                Ok(count) => println!("{peer}: closed cleanly after {count} messages"),
                Err(err) => println!("{peer}: {err}"),
            }
        });
        if once {
            connection.await?;
            return Ok(());
        }
    }
}

async fn serve(
    acceptor: SecureAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Result<u64, LinkError> {
    // The acceptor applies its handshake timeout.
    let mut server = acceptor.accept(tcp).await?;
    let mut count = 0;
    loop {
        let next = timeout(IDLE_TIMEOUT, server.next())
            .await
            .map_err(|_| LinkError::Io(std::io::ErrorKind::TimedOut.into()))?;
        let Some(message) = next else { break };
        let message = message?;
        println!("{peer}: {:?}", String::from_utf8_lossy(&message));
        count += 1;
        timeout(IDLE_TIMEOUT, server.send(message))
            .await
            .map_err(|_| LinkError::Io(std::io::ErrorKind::TimedOut.into()))??;
    }
    // The client sent close_notify: answer with ours.
    timeout(CLOSE_TIMEOUT, server.close())
        .await
        .map_err(|_| LinkError::Io(std::io::ErrorKind::TimedOut.into()))??;
    Ok(count)
}
