"""A local development certificate chain for C2PA signing: root CA -> signing certificate.

What it protects: development and tests sign exactly as production does (ES256, a certificate
chain, c2pa's default certificate checks) without a network or a commercial CA. Production uses
the operator's own certificate and key through the same ``SigningCredentials``.

The signing certificate carries what c2pa-rs checks for by default: an end-entity certificate
(not a CA, not self-signed) with the digitalSignature key usage and the emailProtection
extended key usage (a documentSigning-only certificate fails to sign unless trust settings
allow that EKU), subject and authority key identifiers, and a validity period in force.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class SigningCredentials:
    """PEM texts a C2PA signer needs.

    ``certificate_chain_pem`` is the signing certificate followed by its issuers (not the
    root); ``private_key_pem`` is the signing certificate's key (PKCS#8); ``root_pem`` is the
    trust anchor a reader must be told about to call the signature trusted.
    """

    certificate_chain_pem: str
    private_key_pem: str
    root_pem: str


def _name(common_name: str, organisation: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def generate_dev_chain(
    *,
    organisation: str = "Reelcast Development",
    valid_days: int = 365,
    now: datetime.datetime | None = None,
) -> SigningCredentials:
    """A fresh ES256 (P-256) root CA and a signing certificate it issued, valid from now."""
    now = now or datetime.datetime.now(datetime.UTC)
    start = now - datetime.timedelta(minutes=5)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(f"{organisation} Root CA", organisation)
    root_ski = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=valid_days * 2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(root_ski, critical=False)
        .sign(root_key, hashes.SHA256())
    )
    signing_key = ec.generate_private_key(ec.SECP256R1())
    signing = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{organisation} C2PA Signer", organisation))
        .issuer_name(root_name)
        .public_key(signing_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(signing_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )
    return SigningCredentials(
        certificate_chain_pem=signing.public_bytes(serialization.Encoding.PEM).decode(),
        private_key_pem=signing_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        root_pem=root.public_bytes(serialization.Encoding.PEM).decode(),
    )


def write_dev_chain(directory: str | Path, credentials: SigningCredentials) -> dict[str, Path]:
    """Write the chain as ``signing-chain.pem``, ``signing-key.pem`` (mode 0600) and
    ``root-ca.pem`` in ``directory``; returns their paths by those names."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "signing-chain.pem": directory / "signing-chain.pem",
        "signing-key.pem": directory / "signing-key.pem",
        "root-ca.pem": directory / "root-ca.pem",
    }
    paths["signing-chain.pem"].write_text(credentials.certificate_chain_pem)
    key_path = paths["signing-key.pem"]
    key_path.touch(mode=0o600, exist_ok=True)
    key_path.chmod(0o600)
    key_path.write_text(credentials.private_key_pem)
    paths["root-ca.pem"].write_text(credentials.root_pem)
    return paths


def load_credentials(directory: str | Path) -> SigningCredentials:
    """Read what ``write_dev_chain`` wrote (or an operator's files of the same names)."""
    directory = Path(directory)
    return SigningCredentials(
        certificate_chain_pem=(directory / "signing-chain.pem").read_text(),
        private_key_pem=(directory / "signing-key.pem").read_text(),
        root_pem=(directory / "root-ca.pem").read_text(),
    )
