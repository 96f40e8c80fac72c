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
from collections.abc import Sequence
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


def _key_usage(*, certificate_authority: bool) -> x509.KeyUsage:
    """keyCertSign and cRLSign for a CA, digitalSignature for an end entity; nothing else."""
    return x509.KeyUsage(
        digital_signature=not certificate_authority,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=certificate_authority,
        crl_sign=certificate_authority,
        encipher_only=False,
        decipher_only=False,
    )


def issue_root_ca(
    *, common_name: str, organisation: str, start: datetime.datetime, days: int
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A fresh self-signed P-256 root CA (path length 0, keyCertSign and cRLSign, a subject key
    identifier) valid ``days`` from ``start``, with its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name, organisation)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(certificate_authority=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def issue_certificate(
    *,
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    organisation: str,
    start: datetime.datetime,
    days: int,
    extended_key_usage: Sequence[x509.ObjectIdentifier],
    eku_critical: bool,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A fresh P-256 end-entity certificate ``issuer`` signed (ES256), valid ``days`` from
    ``start``, with its key: not a CA, the digitalSignature key usage, the given extended key
    usages, subject and authority key identifiers."""
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organisation))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(certificate_authority=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(extended_key_usage)), critical=eku_critical)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )
    return certificate, key


def generate_dev_chain(
    *,
    organisation: str = "Reelcast Development",
    valid_days: int = 365,
    now: datetime.datetime | None = None,
) -> SigningCredentials:
    """A fresh ES256 (P-256) root CA and a signing certificate it issued, valid from now."""
    now = now or datetime.datetime.now(datetime.UTC)
    start = now - datetime.timedelta(minutes=5)
    root, root_key = issue_root_ca(
        common_name=f"{organisation} Root CA",
        organisation=organisation,
        start=start,
        days=valid_days * 2,
    )
    signing, signing_key = issue_certificate(
        issuer=root,
        issuer_key=root_key,
        common_name=f"{organisation} C2PA Signer",
        organisation=organisation,
        start=start,
        days=valid_days,
        extended_key_usage=[ExtendedKeyUsageOID.EMAIL_PROTECTION],
        eku_critical=False,
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
