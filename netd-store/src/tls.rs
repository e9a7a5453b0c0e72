//! TLS to the store: the PEM files a client is given (`--store-cacert`, `--store-cert`,
//! `--store-key`; for Consul also its CLI's `CONSUL_CACERT`, `CONSUL_CLIENT_CERT` and
//! `CONSUL_CLIENT_KEY`), read and checked once, when the store's configuration is made
//! ([`crate::StoreConfig`]): a file that cannot be used stops the daemon at start, in one line,
//! instead of failing every connection later. And what a TLS failure inside a client's error
//! means for the user ([`failure`]): the store's certificate is not trusted, or the store
//! refused this client.

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

/// One PEM file, and how the user named it (the flag or the environment variable), for errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFile {
    pub path: PathBuf,
    pub given_as: &'static str,
}

/// The files a store client is given; none: TLS (if the URL asks for it) with the system's
/// roots and no client certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA (or CAs) that signed the store's certificate: the only ones trusted.
    pub ca: Option<TlsFile>,
    /// This client's certificate (chain), and its private key.
    pub cert: Option<TlsFile>,
    pub key: Option<TlsFile>,
}

impl TlsFiles {
    /// The files of `netd daemon --store-cacert --store-cert --store-key`.
    pub fn from_flags(ca: Option<PathBuf>, cert: Option<PathBuf>, key: Option<PathBuf>) -> Self {
        let file = |path: Option<PathBuf>, given_as| path.map(|path| TlsFile { path, given_as });
        Self {
            ca: file(ca, "--store-cacert"),
            cert: file(cert, "--store-cert"),
            key: file(key, "--store-key"),
        }
    }

    /// Whether any file is given.
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }

    /// What is not given here, from Consul's own variables, as its CLI reads them
    /// (`CONSUL_CACERT`, `CONSUL_CLIENT_CERT`, `CONSUL_CLIENT_KEY`). `env` looks a variable up.
    pub fn or_consul_env(self, env: impl Fn(&str) -> Option<String>) -> Self {
        let from_env = |given_as: &'static str| {
            env(given_as).filter(|p| !p.is_empty()).map(|p| TlsFile {
                path: p.into(),
                given_as,
            })
        };
        Self {
            ca: self.ca.or_else(|| from_env("CONSUL_CACERT")),
            cert: self.cert.or_else(|| from_env("CONSUL_CLIENT_CERT")),
            key: self.key.or_else(|| from_env("CONSUL_CLIENT_KEY")),
        }
    }

    /// Reads and checks the files: certificates that parse, a key that is the certificate's.
    pub fn load(&self) -> Result<ClientTls, TlsError> {
        let ca = match &self.ca {
            Some(file) => Some(load_ca(file)?),
            None => None,
        };
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some(Arc::new(load_identity(cert, key)?)),
            (None, None) => None,
            (Some(given), None) | (None, Some(given)) => {
                return Err(TlsError::Half {
                    given: given.given_as,
                });
            }
        };
        Ok(ClientTls { ca, identity })
    }
}

/// Why the TLS files cannot be used; one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {} {}: {error}", .file.given_as, .file.path.display())]
    Read {
        file: TlsFile,
        error: std::io::Error,
    },
    #[error("{} {} holds no PEM {what}", .file.given_as, .file.path.display())]
    NoPem { file: TlsFile, what: &'static str },
    #[error("{} {} cannot be used: {reason}", .file.given_as, .file.path.display())]
    Unusable { file: TlsFile, reason: String },
    #[error(
        "{} {} is not the key of {} {} (their public keys differ)",
        .key.given_as, .key.path.display(), .cert.given_as, .cert.path.display()
    )]
    KeyMismatch { cert: TlsFile, key: TlsFile },
    #[error(
        "{given} is given without its pair: a client certificate needs both --store-cert and --store-key"
    )]
    Half { given: &'static str },
}

/// The files' contents, checked, as PEM both clients take (re-encoded: a file may hold more
/// than they parse, e.g. `openssl ecparam`'s parameters before the key). Cheap to clone.
#[derive(Clone, Default)]
pub struct ClientTls {
    /// The CAs the store's certificate must chain to; `None`: the system's roots.
    pub(crate) ca: Option<Arc<Vec<u8>>>,
    pub(crate) identity: Option<Arc<Identity>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ClientTls")
            .field("ca", &self.ca.is_some())
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

impl ClientTls {
    /// Whether nothing was given: plain http stores take nothing else.
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.identity.is_none()
    }
}

/// A client certificate chain and its key, in PEM.
pub(crate) struct Identity {
    pub(crate) cert: Vec<u8>,
    pub(crate) key: Vec<u8>,
}

impl Identity {
    /// The chain followed by the key: what reqwest's `Identity::from_pem` takes.
    pub(crate) fn pem_bundle(&self) -> Vec<u8> {
        [self.cert.as_slice(), self.key.as_slice()].concat()
    }
}

fn read(file: &TlsFile) -> Result<Vec<u8>, TlsError> {
    std::fs::read(&file.path).map_err(|error| TlsError::Read {
        file: file.clone(),
        error,
    })
}

fn certificates(file: &TlsFile, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Unusable {
            file: file.clone(),
            reason: format!("not PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoPem {
            file: file.clone(),
            what: "certificate",
        });
    }
    Ok(certs)
}

fn load_ca(file: &TlsFile) -> Result<Arc<Vec<u8>>, TlsError> {
    let certs = certificates(file, &read(file)?)?;
    // What the clients will do with them: a certificate that is no trust anchor is refused now.
    let mut roots = rustls::RootCertStore::empty();
    for cert in &certs {
        roots.add(cert.clone()).map_err(|e| TlsError::Unusable {
            file: file.clone(),
            reason: e.to_string(),
        })?;
    }
    Ok(Arc::new(
        certs
            .iter()
            .map(|c| pem("CERTIFICATE", c))
            .collect::<String>()
            .into_bytes(),
    ))
}

fn load_identity(cert_file: &TlsFile, key_file: &TlsFile) -> Result<Identity, TlsError> {
    let certs = certificates(cert_file, &read(cert_file)?)?;
    let key = PrivateKeyDer::from_pem_slice(&read(key_file)?).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPem {
            file: key_file.clone(),
            what: "private key (PKCS#8, PKCS#1 or SEC1)",
        },
        e => TlsError::Unusable {
            file: key_file.clone(),
            reason: format!("not PEM: {e}"),
        },
    })?;
    let label = match &key {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    let key_pem = pem(label, key.secret_der());
    // rustls checks the pair when a client is built; checked here, a key that is not the
    // certificate's stops the daemon at start instead of failing every connection.
    let provider = rustls::crypto::ring::default_provider();
    let cert_pem: String = certs.iter().map(|c| pem("CERTIFICATE", c)).collect();
    match rustls::sign::CertifiedKey::from_der(certs, key, &provider) {
        Ok(_) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch {
                cert: cert_file.clone(),
                key: key_file.clone(),
            });
        }
        Err(e) => {
            return Err(TlsError::Unusable {
                file: key_file.clone(),
                reason: e.to_string(),
            });
        }
    }
    Ok(Identity {
        cert: cert_pem.into_bytes(),
        key: key_pem.into_bytes(),
    })
}

/// One PEM section.
fn pem(label: &str, der: &[u8]) -> String {
    let body = BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The TLS failure inside a client's error, if there is one: a rustls error somewhere in its
/// causes. (`io::Error` hides a custom error from `source()`, showing only that error's own
/// source, so an `io::Error` is looked into.)
pub(crate) fn rustls_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            && let Some(tls) = rustls_error(inner)
        {
            return Some(tls);
        }
        cause = e.source();
    }
    None
}

/// What the store's protocol is, for [`Probe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// gRPC (etcd): the server speaks first (its HTTP/2 settings).
    Http2,
    /// HTTP/1.1 (Consul): the probe asks for nothing much, and the server answers.
    Http1,
}

/// One TLS connection of our own to a store member, to tell why the store's client failed
/// when it is TLS that fails. A TLS 1.3 server checks the client's certificate after the
/// client has finished its handshake, and refuses it with an alert on the connection; the
/// store's client then often sees only a connection closed under its request (always over
/// HTTP/2, sometimes over HTTP/1.1). The probe completes the handshake and reads the server's
/// first answer, or its alert.
#[derive(Clone)]
pub(crate) struct Probe {
    config: Arc<rustls::ClientConfig>,
    protocol: Protocol,
}

impl Probe {
    /// A probe with these files (the system's roots without a CA), set up as the store's
    /// client is.
    pub(crate) fn new(tls: &ClientTls, protocol: Protocol) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        match &tls.ca {
            Some(ca) => {
                for cert in CertificateDer::pem_slice_iter(ca) {
                    roots
                        .add(cert.map_err(|e| e.to_string())?)
                        .map_err(|e| e.to_string())?;
                }
            }
            None => {
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
        let mut config = match &tls.identity {
            Some(identity) => {
                let certs = CertificateDer::pem_slice_iter(&identity.cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
                let key =
                    PrivateKeyDer::from_pem_slice(&identity.key).map_err(|e| e.to_string())?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| e.to_string())?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![match protocol {
            Protocol::Http2 => b"h2".to_vec(),
            Protocol::Http1 => b"http/1.1".to_vec(),
        }];
        Ok(Self {
            config: Arc::new(config),
            protocol,
        })
    }

    /// Why TLS to `member` (`https://HOST:PORT`) fails, if it is TLS that fails, within
    /// `bound`. `None`: no connection could be made, or TLS went through.
    pub(crate) async fn run(
        &self,
        member: &str,
        bound: std::time::Duration,
    ) -> Option<rustls::Error> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (host, port) = member
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).ok()?;
        let attempt = async {
            let tcp = tokio::net::TcpStream::connect((host, port)).await.ok()?;
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.config));
            let mut tls = match connector.connect(name, tcp).await {
                Ok(tls) => tls,
                Err(e) => return rustls_error(&e).cloned(),
            };
            if self.protocol == Protocol::Http1 {
                let request =
                    format!("HEAD / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
                if let Err(e) = tls.write_all(request.as_bytes()).await {
                    return rustls_error(&e).cloned();
                }
            }
            match tls.read(&mut [0; 1]).await {
                Err(e) => rustls_error(&e).cloned(),
                Ok(_) => None,
            }
        };
        tokio::time::timeout(bound, attempt).await.ok().flatten()
    }
}

/// What a TLS failure means, with what to do about it, in one line (the
/// [`crate::StoreError::Tls`] of a backend).
pub(crate) fn failure(error: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    match error {
        E::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => format!(
            "the store's certificate is not signed by a CA this client trusts ({error}): give \
             --store-cacert the CA that signed it"
        ),
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => format!(
            "the store's certificate is not for the address in the store URL ({error}): its \
             subject alternative names must hold that address"
        ),
        E::InvalidCertificate(_) => format!("the store's certificate is refused: {error}"),
        E::AlertReceived(
            alert @ (A::CertificateRequired
            | A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::UnsupportedCertificate
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::AccessDenied
            | A::DecryptError
            | A::HandshakeFailure),
        ) => format!(
            "the store refused this client (TLS alert {alert:?}): it wants a client certificate \
             signed by a CA it trusts, given with --store-cert and --store-key"
        ),
        other => format!("TLS: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// A self-signed certificate and its key, and another key, made now (no key material
    /// lives in the repository).
    fn material() -> (String, String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["t".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        (cert.pem(), key.serialize_pem(), other.serialize_pem())
    }

    fn temp_file(dir: &Path, name: &str, contents: &str) -> TlsFile {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        TlsFile {
            path,
            given_as: "--test",
        }
    }

    fn files(dir: &Path, ca: Option<&str>, cert: Option<&str>, key: Option<&str>) -> TlsFiles {
        TlsFiles {
            ca: ca.map(|c| temp_file(dir, "ca.pem", c)),
            cert: cert.map(|c| temp_file(dir, "cert.pem", c)),
            key: key.map(|k| temp_file(dir, "key.pem", k)),
        }
    }

    #[test]
    fn a_certificate_and_its_key_load() {
        let (cert, key, _) = material();
        let dir = tempfile::tempdir().unwrap();
        let tls = files(dir.path(), Some(&cert), Some(&cert), Some(&key))
            .load()
            .unwrap();
        assert!(!tls.is_empty());
        let identity = tls.identity.unwrap();
        assert!(String::from_utf8_lossy(&identity.pem_bundle()).contains("PRIVATE KEY-----"));
        assert!(TlsFiles::default().load().unwrap().is_empty());
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused_naming_both() {
        let (cert, _, other_key) = material();
        let dir = tempfile::tempdir().unwrap();
        let e = files(dir.path(), None, Some(&cert), Some(&other_key))
            .load()
            .unwrap_err();
        assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("key.pem is not the key of --test") && text.contains("cert.pem"),
            "{text}"
        );
    }

    #[test]
    fn unusable_files_are_refused_in_one_line() {
        let (cert, _, _) = material();
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsFiles::from_flags(Some(dir.path().join("nope.pem")), None, None);
        let e = missing.load().unwrap_err().to_string();
        assert!(e.starts_with("cannot read --store-cacert "), "{e}");
        let e = files(dir.path(), Some("hello"), None, None)
            .load()
            .unwrap_err();
        assert!(matches!(e, TlsError::NoPem { .. }), "{e}");
        let e = files(dir.path(), None, Some(&cert), Some(&cert))
            .load()
            .unwrap_err();
        assert!(e.to_string().contains("holds no PEM private key"), "{e}");
        let e = files(dir.path(), None, Some(&cert), None)
            .load()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--test is given without its pair: a client certificate needs both --store-cert \
             and --store-key"
        );
        for e in [missing.load().unwrap_err().to_string(), e.to_string()] {
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn consuls_variables_fill_in_what_the_flags_do_not_give() {
        let flags = TlsFiles::from_flags(Some("/flag/ca.pem".into()), None, None);
        let env = |name: &str| Some(format!("/env/{name}"));
        let files = flags.or_consul_env(env);
        assert_eq!(
            files.ca.as_ref().map(|f| (f.path.as_path(), f.given_as)),
            Some((Path::new("/flag/ca.pem"), "--store-cacert"))
        );
        assert_eq!(files.cert.map(|f| f.given_as), Some("CONSUL_CLIENT_CERT"));
        assert_eq!(
            files.key.map(|f| f.path),
            Some(PathBuf::from("/env/CONSUL_CLIENT_KEY"))
        );
        assert!(TlsFiles::default().or_consul_env(|_| None).is_empty());
    }

    #[test]
    fn a_tls_failure_is_found_inside_io_errors_and_said_with_what_to_do() {
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, alert);
        // Wrapped once more, as hyper wraps the connection's io::Error.
        #[derive(Debug, thiserror::Error)]
        #[error("connection error")]
        struct Outer(#[source] std::io::Error);
        let outer = Outer(io);
        let found = rustls_error(&outer).unwrap();
        let line = failure(found);
        assert!(
            line.starts_with("the store refused this client (TLS alert CertificateRequired)")
                && line.contains("--store-cert"),
            "{line}"
        );
        let untrusted = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert!(failure(&untrusted).contains("give --store-cacert"));
        assert!(rustls_error(&std::io::Error::other("plain")).is_none());
    }
}
