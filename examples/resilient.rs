//! A node sends a numbered stream over a resilient link while the path
//! under it is torn down and brought back, again and again; the receiver
//! checks that every number arrived once, in order.
//!
//! The path is a relay on 127.0.0.1 between the two nodes: restarting it
//! drops every connection it carries (the nodes see them die mid-frame),
//! like a router reboot or a NAT timeout. The client reconnects through it
//! and the session resumes: nothing lost, nothing twice.
//!
//! Run: `cargo run --example resilient`

use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use secure_link::resilient::{Accepted, ResilientAcceptor, ResilientConfig, ResilientConnector};
use secure_link::{HmacKey, SecureAcceptor, SecureConnector, certs};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

const NUMBERS: u32 = 20_000;
const RESTARTS: usize = 5;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let pki = certs::generate(&["localhost"])?;
    let key = HmacKey::generate()?;
    // Reconnect fast: this example cuts often.
    let config = ResilientConfig::new()
        .with_backoff(Duration::from_millis(10), Duration::from_millis(200))
        .with_healthy_after(Duration::from_millis(100));

    // The receiving node.
    let acceptor = ResilientAcceptor::new(
        SecureAcceptor::new(&pki.chain_pem, &pki.key_pem, &key)?,
        config.clone(),
    )?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let server_addr = listener.local_addr()?;
    let (session_tx, mut sessions) = tokio::sync::mpsc::channel(1);
    let accepting = tokio::spawn(async move {
        let mut accepts = JoinSet::new();
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, session_tx) = (acceptor.clone(), session_tx.clone());
            // A new session comes out; a resumed one goes on by itself.
            accepts.spawn(async move {
                if let Ok(Accepted::Session(link)) = acceptor.accept(tcp).await {
                    let _ = session_tx.send(link).await;
                }
            });
        }
    });
    let receiver = tokio::spawn(async move {
        let mut link = sessions.recv().await.ok_or("no session")?;
        // One session, across every connection.
        let mut next = 0u32;
        while let Some(message) = link.next().await {
            let number = u32::from_be_bytes(message?[..].try_into()?);
            if number != next {
                return Err(format!("got {number}, expected {next}").into());
            }
            next += 1;
        }
        Ok::<_, Box<dyn Error + Send + Sync>>((next, link.stats()))
    });

    // The path between the nodes.
    let path = Arc::new(TcpListener::bind("127.0.0.1:0").await?);
    let path_addr = path.local_addr()?;
    let mut path_task = tokio::spawn(relay(path.clone(), server_addr));

    // The sending node.
    let connector = ResilientConnector::new(SecureConnector::new(&pki.ca_pem, &key)?, config)?;
    let mut link = connector.connect("localhost", move || TcpStream::connect(path_addr))?;
    let sender = tokio::spawn(async move {
        // A steady stream (batches of 100, a few ms apart), so that the
        // path restarts while it flows.
        for batch in 0..NUMBERS / 100 {
            for n in batch * 100..(batch + 1) * 100 {
                link.feed(Bytes::copy_from_slice(&n.to_be_bytes())).await?;
            }
            link.flush().await?; // every one so far acknowledged
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        link.close().await?; // the session ends
        Ok::<_, secure_link::LinkError>(())
    });

    for restart in 1..=RESTARTS {
        tokio::time::sleep(Duration::from_millis(150)).await;
        path_task.abort(); // every connection through the path dies
        let _ = path_task.await;
        println!("path restarted ({restart} of {RESTARTS})");
        path_task = tokio::spawn(relay(path.clone(), server_addr));
    }
    sender.await??;
    path_task.abort();
    let (received, stats) = receiver.await?.map_err(|err| err.to_string())?;
    accepting.abort();
    if received != NUMBERS {
        return Err(format!("{received} of {NUMBERS} numbers arrived").into());
    }
    println!(
        "all {NUMBERS} numbers arrived once, in order, over {} connections ({RESTARTS} path restarts, {} duplicates dropped)",
        stats.connections, stats.duplicates
    );
    Ok(())
}

/// Carries each connection to `upstream` until aborted (which drops them
/// all).
async fn relay(listener: Arc<TcpListener>, upstream: SocketAddr) {
    let mut connections = JoinSet::new();
    while let Ok((mut inbound, _)) = listener.accept().await {
        connections.spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}
