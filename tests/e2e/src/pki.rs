//! A throwaway PKI for one control plane: a CA, serving certificates for loopback, an
//! admin client certificate (system:masters), and the key pair that signs ServiceAccount
//! tokens. ECDSA P-256 throughout: kube-apiserver accepts it everywhere, and ring makes it
//! in microseconds.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::error::HarnessError;

pub struct Pki {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, PEM-encoded.
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
}

fn pki_error(what: &str, err: rcgen::Error) -> HarnessError {
    HarnessError::new(format!("PKI: {what}: {err}"))
}

impl Pki {
    pub fn new() -> Result<Self, HarnessError> {
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| pki_error("CA params", e))?;
        params
            .distinguished_name
            .push(DnType::CommonName, "podidentity-e2e-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(|e| pki_error("CA key", e))?;
        let issuer = CertifiedIssuer::self_signed(params, key)
            .map_err(|e| pki_error("CA certificate", e))?;
        Ok(Self { issuer })
    }

    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A serving certificate for loopback (and the in-cluster names of the API server).
    pub fn serving(&self, extra_names: &[&str]) -> Result<Pair, HarnessError> {
        let mut names = vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
            "10.0.0.1".to_string(),
        ];
        names.extend(extra_names.iter().map(|n| n.to_string()));
        let mut params =
            CertificateParams::new(names).map_err(|e| pki_error("serving params", e))?;
        params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, "serving")
    }

    /// A client certificate: CN is the user, O the groups.
    pub fn client(&self, user: &str, groups: &[&str]) -> Result<Pair, HarnessError> {
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| pki_error("client params", e))?;
        params.distinguished_name.push(DnType::CommonName, user);
        for group in groups {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *group);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, "client")
    }

    fn sign(&self, params: CertificateParams, what: &str) -> Result<Pair, HarnessError> {
        let key = KeyPair::generate().map_err(|e| pki_error(what, e))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| pki_error(what, e))?;
        Ok(Pair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The key pair that signs ServiceAccount tokens: (private PKCS#8 PEM, public SPKI PEM).
pub fn token_signing_key() -> Result<(String, String), HarnessError> {
    let key = KeyPair::generate().map_err(|e| pki_error("token signing key", e))?;
    Ok((key.serialize_pem(), key.public_key_pem()))
}
