"""A real RFC 3161 time-stamp authority on 127.0.0.1 for tests.

It answers ``application/timestamp-query`` POSTs with an ``application/timestamp-reply``
TimeStampResp: a CMS SignedData (ECDSA P-256 / SHA-256) over a TSTInfo whose messageImprint is
copied from the request, whose nonce is echoed, with genTime now (whole seconds, UTC), a serial
number unique to this authority, its policy OID and an accuracy of one second. The TSA's
certificate goes in the SignedData when the request sets certReq, as RFC 3161 says.

The TSA certificate is what a C2PA validator checks for: issued by a local test root, an end
entity with the single, critical extendedKeyUsage id-kp-timeStamping, the digitalSignature key
usage, subject and authority key identifiers. ``root_pem`` is the anchor a reader must be given
to call its time stamps trusted.

Requests it cannot honour get a ``rejection`` status with the RFC's failure bit: badDataFormat
for bytes that are not a TimeStampReq, badAlg for an unknown hash or a digest of the wrong
length, unacceptedPolicy for another reqPolicy, unacceptedExtension for any extension.
Everything it issued or refused is in ``issued`` / ``refused``.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import threading
from dataclasses import dataclass

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from moderation.provenance.devcert import issue_certificate, issue_root_ca
from tests.support.loopback import LoopbackServer, QuietHandler

QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
# Under the ITU-T/ISO "example" arc (2.999): never a real policy.
TEST_POLICY_OID = "2.999.3161.1"
TSA_COMMON_NAME = "Reelcast Test TSA"
ROOT_COMMON_NAME = "Reelcast Test TSA Root CA"
ORGANISATION = "Reelcast Tests"
_DIGEST_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64}


@dataclass(frozen=True)
class Issued:
    """One time stamp this authority granted."""

    serial_number: int
    gen_time: datetime.datetime
    nonce: int | None
    cert_req: bool
    hash_algorithm: str
    hashed_message: bytes


class _TimeStampResp(core.Sequence):
    """TimeStampResp with the token OPTIONAL, as RFC 3161 defines it (asn1crypto requires it,
    which leaves no way to write a rejection)."""

    _fields = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


def _make_chain() -> tuple[x509.Certificate, x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A fresh root CA and the TSA certificate it issued, with the TSA's key."""
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    root, root_key = issue_root_ca(
        common_name=ROOT_COMMON_NAME, organisation=ORGANISATION, start=start, days=2
    )
    tsa, tsa_key = issue_certificate(
        issuer=root,
        issuer_key=root_key,
        common_name=TSA_COMMON_NAME,
        organisation=ORGANISATION,
        start=start,
        days=1,
        extended_key_usage=[ExtendedKeyUsageOID.TIME_STAMPING],
        eku_critical=True,
    )
    return root, tsa, tsa_key


class TimeStampAuthority(LoopbackServer):
    poll_interval = 0.05

    def __init__(self, *, policy: str = TEST_POLICY_OID):
        super().__init__()
        self.policy = policy
        self.root, self.certificate, self._key = _make_chain()
        self._certificate_asn1 = asn1_x509.Certificate.load(
            self.certificate.public_bytes(serialization.Encoding.DER)
        )
        self.issued: list[Issued] = []
        self.refused: list[str] = []  # the failure bit of each rejection
        self._serials = itertools.count(1)
        self._lock = threading.Lock()

    @property
    def root_pem(self) -> str:
        return self.root.public_bytes(serialization.Encoding.PEM).decode()

    # --- the protocol ----------------------------------------------------------------------------

    def respond(self, query: bytes) -> bytes:
        """The DER TimeStampResp for a DER TimeStampReq."""
        try:
            request = tsp.TimeStampReq.load(query, strict=True)
            imprint = request["message_imprint"]
            hash_algorithm = imprint["hash_algorithm"]["algorithm"].native
            hashed_message = imprint["hashed_message"].native
            req_policy = request["req_policy"].dotted if request["req_policy"].native else None
            has_extensions = bool(request["extensions"].native)
            nonce = request["nonce"].native
            cert_req = bool(request["cert_req"].native)
        except (ValueError, TypeError, KeyError):
            return self._rejection("bad_data_format")
        if _DIGEST_SIZES.get(hash_algorithm) != len(hashed_message):
            return self._rejection("bad_alg")
        if req_policy is not None and req_policy != self.policy:
            return self._rejection("unaccepted_policy")
        if has_extensions:
            return self._rejection("unaccepted_extensions")

        with self._lock:
            serial_number = next(self._serials)
        gen_time = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        tst_info = tsp.TSTInfo(
            {
                "version": "v1",
                "policy": self.policy,
                "message_imprint": imprint.copy(),
                "serial_number": serial_number,
                "gen_time": gen_time,
                "accuracy": {"seconds": 1},
                "nonce": nonce,
                "tsa": asn1_x509.GeneralName(
                    name="directory_name", value=self._certificate_asn1.subject
                ),
            }
        )
        token = self._sign(tst_info.dump(), include_certificate=cert_req)
        with self._lock:
            self.issued.append(
                Issued(serial_number, gen_time, nonce, cert_req, hash_algorithm, hashed_message)
            )
        return _TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token}).dump()

    def _sign(self, tst_info_der: bytes, *, include_certificate: bool) -> cms.ContentInfo:
        sha256 = algos.DigestAlgorithm({"algorithm": "sha256"})
        certificate_hash = hashlib.sha256(self._certificate_asn1.dump()).digest()
        signed_attrs = cms.CMSAttributes(
            [
                {"type": "content_type", "values": ["tst_info"]},
                {"type": "message_digest", "values": [hashlib.sha256(tst_info_der).digest()]},
                {
                    "type": "signing_certificate_v2",
                    "values": [{"certs": [{"cert_hash": certificate_hash}]}],
                },
            ]
        )
        # CMS signs the DER of the attributes as a SET OF (RFC 5652 5.4), not as [0] IMPLICIT.
        signature = self._key.sign(signed_attrs.dump(), ec.ECDSA(hashes.SHA256()))
        signer_info = cms.SignerInfo(
            {
                "version": "v1",
                "sid": {
                    "issuer_and_serial_number": {
                        "issuer": self._certificate_asn1.issuer,
                        "serial_number": self._certificate_asn1.serial_number,
                    }
                },
                "digest_algorithm": sha256,
                "signed_attrs": signed_attrs,
                "signature_algorithm": {"algorithm": "sha256_ecdsa"},
                "signature": signature,
            }
        )
        signed_data = {
            "version": "v3",
            "digest_algorithms": [sha256],
            "encap_content_info": {
                "content_type": "tst_info",
                "content": cms.ParsableOctetString(tst_info_der),
            },
            "signer_infos": [signer_info],
        }
        if include_certificate:
            signed_data["certificates"] = [self._certificate_asn1]
        return cms.ContentInfo({"content_type": "signed_data", "content": signed_data})

    def _rejection(self, failure: str) -> bytes:
        with self._lock:
            self.refused.append(failure)
        return _TimeStampResp(
            {"status": {"status": "rejection", "fail_info": tsp.PKIFailureInfo({failure})}}
        ).dump()

    # --- the HTTP server -------------------------------------------------------------------------

    def _handler_class(self) -> type[QuietHandler]:
        authority = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if content_type.lower() != QUERY_TYPE:
                    self._answer(415, "text/plain", b"expected application/timestamp-query\n")
                    return
                self._answer(200, REPLY_TYPE, authority.respond(body))

            def do_GET(self) -> None:
                self._answer(405, "text/plain", b"POST a TimeStampReq\n")

            def _answer(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    @property
    def url(self) -> str:
        return self.address("/tsa")
