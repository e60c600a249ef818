//! Reloading certificates and keys without a restart, with
//! `ReloadableAcceptor`: an accept loop serves with the acceptor current
//! when each connection arrives; a reload builds a new `SecureAcceptor`
//! from the new files first and swaps it in only if that succeeded.
//! Connections already open keep what they were accepted with.
//!
//! Here the "files" are two generated PKIs and two keys, and the reload is
//! a function call; `secure-link serve` does the same on SIGHUP.
//!
//! Run: `cargo run --example reload`

use std::error::Error;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use secure_link::certs;
use secure_link::{HmacKey, ReloadableAcceptor, SecureAcceptor, SecureConnector};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let (pki_1, key_1) = (certs::generate(&["localhost"])?, HmacKey::generate()?);
    let (pki_2, key_2) = (certs::generate(&["localhost"])?, HmacKey::generate()?);

    let acceptor = ReloadableAcceptor::new(SecureAcceptor::new(
        &pki_1.chain_pem,
        &pki_1.key_pem,
        &key_1,
    )?);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;

    // The accept loop: each connection gets the acceptor current now, and
    // prints what it receives until its client closes.
    let serving = acceptor.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let serving = serving.clone();
            tokio::spawn(async move {
                let Ok(mut server) = serving.accept(tcp).await else {
                    return;
                };
                while let Some(Ok(message)) = server.next().await {
                    println!("server: {:?}", String::from_utf8_lossy(&message));
                }
                let _ = server.close().await;
            });
        }
    });
    let connect = |ca: String, key: HmacKey| async move {
        let tcp = TcpStream::connect(addr).await?;
        SecureConnector::new(&ca, key)?
            .connect("localhost", tcp)
            .await
    };

    // A connection made before the reload.
    let mut before = connect(pki_1.ca_pem.clone(), key_1.clone()).await?;
    before.send(Bytes::from("opened before the reload")).await?;

    // The reload: build first (a bad file would fail here and change
    // nothing), then swap.
    let fresh = SecureAcceptor::new(&pki_2.chain_pem, &pki_2.key_pem, &key_2)?;
    acceptor.replace(fresh);
    println!("reloaded: new certificate and key for new connections");

    let mut after = connect(pki_2.ca_pem.clone(), key_2.clone()).await?;
    after.send(Bytes::from("opened after the reload")).await?;
    after.close().await?;

    // The old connection carries on with the old material.
    before
        .send(Bytes::from("still open, old certificate and key"))
        .await?;
    before.close().await?;

    // A client that trusts only the old CA is refused now.
    match connect(pki_1.ca_pem.clone(), key_1).await {
        Err(err) => println!("client with the old CA: refused ({err})"),
        Ok(_) => return Err("a client trusting only the old CA was served".into()),
    }
    Ok(())
}
