//! The lab-style blocking program: a server thread and a client over TCP on
//! 127.0.0.1, with certificates and a key generated on the spot; the server
//! prints what it received.
//!
//! Run it with `cargo run --example blocking`.

use std::error::Error;
use std::net::{TcpListener, TcpStream};
use std::thread;

use secure_link::blocking::{SecureClient, SecureServer, SecureServerError};
use secure_link::rustls::pki_types::ServerName;
use secure_link::{HmacKey, certs};

fn main() -> Result<(), Box<dyn Error>> {
    let pki = certs::generate(&["localhost"])?;
    let key = HmacKey::generate()?;

    // As in the lab: both ends built in one thread before any I/O.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client_link = TcpStream::connect(listener.local_addr()?)?;
    let (server_link, peer) = listener.accept()?;
    let mut client = SecureClient::try_new(
        client_link,
        key.as_bytes(),
        &pki.ca_pem,
        ServerName::try_from("localhost")?,
    )?;
    let mut server =
        SecureServer::try_new(server_link, key.as_bytes(), &pki.key_pem, &pki.chain_pem)?;

    let sender = thread::spawn(move || -> Result<(), secure_link::LinkError> {
        for message in ["", "hello", "a bit longer message to transmit"] {
            client.try_send_msg(message.as_bytes())?;
        }
        client.try_send_msg(&vec![b'x'; 3 * 1024 * 1024])?;
        Ok(()) // dropping the client sends close_notify
    });

    loop {
        match server.recv_message() {
            Ok(message) if message.len() > 64 => {
                println!("received {} bytes from {peer}", message.len());
            }
            Ok(message) => println!(
                "received {:?} from {peer}",
                String::from_utf8_lossy(&message)
            ),
            Err(SecureServerError::PeerClosed) => break,
            Err(err) => return Err(format!("receive failed: {err}").into()),
        }
    }
    sender.join().map_err(|_| "client thread panicked")??;
    println!("client closed the link cleanly");
    Ok(())
}
