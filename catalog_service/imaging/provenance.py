"""Marking images a generative model touched: the IPTC Digital Source Type in XMP, and a signed C2PA manifest.

Google Merchant Center and the EU AI Act (Art. 50) ask for machine-readable marking of AI-generated images.
Readers look for `Iptc4xmpExt:DigitalSourceType` (IPTC Photo Metadata Standard, "Digital Source Type" and the
cv.iptc.org/newscodes/digitalsourcetype vocabulary); a C2PA manifest (c2pa-python, contentauth/c2pa-python
docs/usage.md and docs/intents.md) says the same in a `c2pa.actions` assertion, signed with the operator's
certificate. The XMP packet stays in the file when it is signed.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import io
from importlib import metadata
from typing import Any
from xml.sax.saxutils import escape

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from PIL import Image

IPTC_SOURCE_TYPE_BASE = "http://cv.iptc.org/newscodes/digitalsourcetype/"

# The IPTC Digital Source Type vocabulary (the codes c2pa-python's C2paDigitalSourceType knows as well).
SOURCE_TYPES = frozenset({
    "trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia", "algorithmicMedia", "algorithmicallyEnhanced",
    "compositeSynthetic", "composite", "compositeCapture", "dataDrivenMedia", "digitalCapture", "digitalCreation",
    "computationalCapture", "humanEdits", "negativeFilm", "positiveFilm", "print", "screenCapture",
    "virtualRecording", "trainedAlgorithmicData",
})

CONTENT_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})

# c2pa-rs accepts these signature algorithms (C2PA 2.x, "X.509 Certificates"); ES256 for the usual P-256 key.
_EC_ALGORITHMS = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
_MIN_RSA_BITS = 2048


class ProvenanceError(Exception):
    """Marking or signing an image went wrong."""


class SignerUnusable(ProvenanceError):
    """The configured certificate and key cannot sign C2PA manifests; the message says what to change."""


class SigningFailed(ProvenanceError):
    """The C2PA library refused to sign one image."""


@dataclasses.dataclass(frozen=True)
class Signer:
    """A C2PA signer built once per process from the operator's certificate chain and key."""

    algorithm: str
    subject: str
    not_after: datetime.datetime
    _signer: Any = dataclasses.field(repr=False)  # c2pa.Signer
    _context: Any = dataclasses.field(repr=False)  # c2pa.Context: our builder settings


def source_type_uri(source_type: str) -> str:
    """The IPTC vocabulary URI for a Digital Source Type code; ValueError for a code outside the vocabulary."""
    if source_type not in SOURCE_TYPES:
        raise ValueError(f"unknown IPTC digital source type {source_type!r}")
    return IPTC_SOURCE_TYPE_BASE + source_type


def xmp_packet(source_type: str) -> bytes:
    """An XMP packet saying `Iptc4xmpExt:DigitalSourceType` = the vocabulary URI of `source_type`."""
    uri = escape(source_type_uri(source_type))
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">\n'
        f'   <Iptc4xmpExt:DigitalSourceType>{uri}</Iptc4xmpExt:DigitalSourceType>\n'
        '  </rdf:Description>\n'
        ' </rdf:RDF>\n'
        '</x:xmpmeta>\n'
        '<?xpacket end="w"?>'
    ).encode()


def load_signer(cert_pem: bytes, key_pem: bytes) -> Signer:
    """A signer from a PEM certificate chain (signing certificate first, then its CA's) and its PEM private key.

    Refuses, with SignerUnusable, a pair that could not sign: no certificate, an encrypted or unknown key, a key
    that is not the certificate's, an expired or self-signed certificate, or one c2pa rejects on a trial signing
    (it wants an end-entity certificate with the digitalSignature key usage and an EKU such as emailProtection
    or documentSigning, issued by a CA).
    """
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise SignerUnusable("the certificate file holds no PEM certificate (-----BEGIN CERTIFICATE-----)") from None
    certificate = chain[0]
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise SignerUnusable("the private key is encrypted: give an unencrypted PEM key (PKCS#8)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise SignerUnusable("the key file holds no PEM private key (-----BEGIN PRIVATE KEY-----)") from None
    algorithm = _algorithm(key)
    if _public_der(key.public_key()) != _public_der(certificate.public_key()):
        raise SignerUnusable("the private key does not belong to the first certificate in the certificate file")
    subject = certificate.subject.rfc4514_string()
    now = datetime.datetime.now(datetime.UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise SignerUnusable(
            f"the certificate {subject} is valid from {certificate.not_valid_before_utc:%Y-%m-%d} to "
            f"{certificate.not_valid_after_utc:%Y-%m-%d}, not today: renew it"
        )
    if certificate.issuer == certificate.subject and len(chain) == 1:
        raise SignerUnusable(
            f"the certificate {subject} signs itself; C2PA wants one issued by a CA, followed in the file by "
            "the CA's certificate"
        )
    import c2pa  # loaded only when signing is configured: it brings a native library with it

    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(algorithm.encode(), cert_pem, key_pem, None))
    except c2pa.C2paError as exc:
        raise SignerUnusable(f"c2pa refused the certificate and key: {exc}") from None
    # No thumbnail in the manifest: the image is the product shot itself, and every byte is pushed to the shop.
    context = c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}})
    loaded = Signer(algorithm, subject, certificate.not_valid_after_utc, signer, context)
    try:  # c2pa checks the certificate's profile (key usage, EKU, issuer) only when it signs: find out now
        sign(_trial_png(), "image/png", "trainedAlgorithmicMedia", loaded)
    except SigningFailed as exc:
        raise SignerUnusable(
            f"c2pa cannot sign with the certificate {subject}: {exc}. It needs an end-entity certificate "
            "(not a CA) with the digitalSignature key usage and the emailProtection or documentSigning extended "
            "key usage, issued by a CA whose certificate follows it in the file"
        ) from None
    return loaded


def sign(data: bytes, content_type: str, source_type: str, signer: Signer) -> bytes:
    """The image with a signed C2PA manifest whose `c2pa.created` action carries the IPTC source type URI."""
    if content_type not in CONTENT_TYPES:
        raise ValueError(f"cannot sign {content_type!r} (one of {', '.join(sorted(CONTENT_TYPES))})")
    import c2pa

    manifest = {
        "claim_generator_info": [{"name": "catalog-service", "version": _version()}],
        "assertions": [{
            "label": "c2pa.actions",
            "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": source_type_uri(source_type)}]},
        }],
    }
    out = io.BytesIO()
    try:
        with c2pa.Builder(manifest, context=signer._context) as builder:
            builder.sign(signer._signer, content_type, io.BytesIO(data), out)
    except c2pa.C2paError as exc:
        raise SigningFailed(str(exc) or type(exc).__name__) from None
    return out.getvalue()


def _algorithm(key: object) -> str:
    """The C2PA signature algorithm for this private key, or SignerUnusable for a key C2PA cannot use."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name in _EC_ALGORITHMS:
            return _EC_ALGORITHMS[key.curve.name]
        raise SignerUnusable(f"the EC key is on curve {key.curve.name}; C2PA takes P-256, P-384 or P-521")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < _MIN_RSA_BITS:
            raise SignerUnusable(f"the RSA key has {key.key_size} bits; C2PA wants at least {_MIN_RSA_BITS}")
        return "ps256"  # C2PA signs with RSA-PSS, never PKCS#1 v1.5
    raise SignerUnusable(f"a {type(key).__name__} cannot sign C2PA manifests: use an EC (P-256) or RSA key")


def _public_der(public_key: Any) -> bytes:
    return bytes(public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


@functools.cache
def _trial_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (255, 255, 255)).save(out, "PNG")
    return out.getvalue()


@functools.cache
def _version() -> str:
    try:
        return metadata.version("catalog-service")
    except metadata.PackageNotFoundError:
        return "0"
