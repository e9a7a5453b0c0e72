//! Certificates for the store labs, made when a lab starts (no key material lives in the
//! repository): a CA, a server certificate for an address, client certificates; PEM files in a
//! directory, as `openssl req` and `openssl x509` would make them (docs/stores.md has those
//! commands).

use std::{
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A CA in a directory of its own, signing what it is asked for there.
pub struct Pki {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    /// The CA's certificate (`ca.pem`): what the servers and the clients trust.
    pub ca: PathBuf,
}

/// A certificate and its key.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A new CA named `name`, its files under `dir` (made if missing).
    pub fn new(dir: &Path, name: &str) -> anyhow::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut params = CertificateParams::new(Vec::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let ca = dir.join("ca.pem");
        fs::write(&ca, cert.pem())?;
        Ok(Self {
            dir: dir.to_path_buf(),
            issuer: Issuer::new(params, key),
            ca,
        })
    }

    /// A server certificate for `ip` (its subject alternative name), `NAME.pem` and
    /// `NAME-key.pem`.
    pub fn server(&self, name: &str, ip: Ipv4Addr) -> anyhow::Result<CertFiles> {
        self.sign(
            name,
            vec![ip.to_string()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate with `name` as its common name.
    pub fn client(&self, name: &str) -> anyhow::Result<CertFiles> {
        self.sign(name, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn sign(
        &self,
        name: &str,
        alt_names: Vec<String>,
        usage: ExtendedKeyUsagePurpose,
    ) -> anyhow::Result<CertFiles> {
        let mut params = CertificateParams::new(alt_names)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let files = CertFiles {
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}-key.pem")),
        };
        fs::write(&files.cert, cert.pem())?;
        write_private(&files.key, &key.serialize_pem())?;
        Ok(files)
    }
}

/// A key file readable by its owner only, as a user keeps one.
fn write_private(path: &Path, pem: &str) -> anyhow::Result<()> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(pem.as_bytes())?;
    Ok(())
}
