//! `gen-certs` and `gen-key`.

use std::path::PathBuf;

use secure_link::{HmacKey, certs};

use crate::{files, shared::Error};

/// Arguments of `gen-certs`.
#[derive(Debug, clap::Args)]
pub(crate) struct CertsArgs {
    /// Directory to write ca.pem, server-chain.pem and server-key.pem to
    /// (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// A DNS name or IP address the server certificate is valid for
    /// (repeatable; default: localhost and 127.0.0.1).
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,
    /// A client certificate to make, for mutual TLS: client-NAME-chain.pem
    /// and client-NAME-key.pem, signed by the same CA (repeatable; default:
    /// one named `client`).
    #[arg(long = "client", value_name = "NAME", default_value = "client")]
    clients: Vec<String>,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

/// Arguments of `gen-key`.
#[derive(Debug, clap::Args)]
pub(crate) struct KeyArgs {
    /// File to write the key to (mode 0600); stdout without it.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Overwrite an existing file.
    #[arg(long)]
    force: bool,
}

pub(crate) fn certs(args: &CertsArgs) -> Result<(), Error> {
    let names = if args.names.is_empty() {
        vec!["localhost".to_owned(), "127.0.0.1".to_owned()]
    } else {
        args.names.clone()
    };
    for client in &args.clients {
        // The name becomes part of file names.
        let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if client.is_empty() || !client.chars().all(safe) || client.starts_with('.') {
            return Err(Error::msg(format!(
                "--client {client:?}: use letters, digits, '-', '_' and '.' (it names files)"
            )));
        }
    }
    let bundle = certs::generate_with_clients(&names, &args.clients)?;
    std::fs::create_dir_all(&args.out)
        .map_err(|err| Error::msg(format!("cannot create {}: {err}", args.out.display())))?;
    let client_files: Vec<(String, String)> = bundle
        .clients
        .iter()
        .map(|c| {
            (
                format!("client-{}-chain.pem", c.name),
                format!("client-{}-key.pem", c.name),
            )
        })
        .collect();
    let mut files = vec![
        ("ca.pem", bundle.ca_pem.as_str(), false),
        ("server-chain.pem", bundle.chain_pem.as_str(), false),
        ("server-key.pem", bundle.key_pem.as_str(), true),
    ];
    for (client, (chain, key)) in bundle.clients.iter().zip(&client_files) {
        files.push((chain.as_str(), client.chain_pem.as_str(), false));
        files.push((key.as_str(), client.key_pem.as_str(), true));
    }
    if !args.force {
        // All or nothing: refuse before writing any of them.
        for (name, _, _) in &files {
            let path = args.out.join(name);
            if path.exists() {
                return Err(Error::msg(format!(
                    "{} exists; use --force to overwrite it",
                    path.display()
                )));
            }
        }
    }
    for (name, contents, secret) in files {
        files::write_new(&args.out.join(name), contents, secret, args.force)?;
    }
    eprintln!(
        "wrote {dir}/ca.pem (trust this on clients), {dir}/server-chain.pem and \
         {dir}/server-key.pem (mode 0600) for {names}",
        dir = args.out.display(),
        names = names.join(", ")
    );
    for (chain, key) in &client_files {
        eprintln!(
            "wrote {dir}/{chain} and {dir}/{key} (mode 0600): a client certificate for mutual TLS",
            dir = args.out.display()
        );
    }
    Ok(())
}

pub(crate) fn key(args: &KeyArgs) -> Result<(), Error> {
    let key = HmacKey::generate()?;
    let line = zeroize::Zeroizing::new(format!("{}\n", key.to_hex()));
    match &args.out {
        Some(path) => files::write_new(path, &line, true, args.force)?,
        None => {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(line.as_bytes())?;
            stdout.flush()?;
        }
    }
    // Not secret: tells keys apart in serve's logs during a rotation.
    eprintln!("key fingerprint: {}", key.fingerprint());
    Ok(())
}
