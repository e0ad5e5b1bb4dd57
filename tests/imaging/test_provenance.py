"""imaging/provenance.py and encode(): an AI image says so, in XMP and in a signed C2PA manifest.

Both are read back with independent readers: exiftool (Debian's libimage-exiftool-perl) for the XMP, and
c2pa's own Reader, trusting a CA this test makes, for the manifest.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import shutil
import subprocess
from pathlib import Path

import c2pa
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image

from catalog_service.config import Config, ConfigError
from catalog_service.imaging import provenance
from catalog_service.imaging.encode import CONTENT_TYPES, encode
from catalog_service.services import c2pa_signer

COMPOSITE = "compositeWithTrainedAlgorithmicMedia"
GENERATED = "trainedAlgorithmicMedia"
IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
FORMATS = [("jpeg", "jpg"), ("png", "png"), ("webp", "webp")]


# ---- a certificate chain of our own: a root CA and the end-entity certificate it issues for signing ----


@dataclasses.dataclass
class Chain:
    cert_pem: bytes  # signing certificate, then the CA's
    key_pem: bytes
    ca_pem: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Shop Ltd"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(*, signing: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=signing, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=not signing,
                         crl_sign=not signing, encipher_only=False, decipher_only=False)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey, encryption=None) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption or serialization.NoEncryption())


def make_chain(*, eku: bool = True, days: int = 30, end_entity_is_ca: bool = False) -> Chain:
    """What c2pa accepts (C2PA spec, "X.509 Certificates"; c2pa-rs certificate_profile.rs): an end-entity EC
    certificate with the digitalSignature key usage, an allowed EKU (emailProtection) and an authority key id,
    issued by a CA (basicConstraints CA, keyCertSign, a subject key id)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("Test Root CA")).issuer_name(_name("Test Root CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(_key_usage(signing=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder().subject_name(_name("Catalog image signer")).issuer_name(ca.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=2)).not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=end_entity_is_ca, path_length=None), critical=True)
               .add_extension(_key_usage(signing=True), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Chain(_pem(cert) + _pem(ca), _key_pem(key), _pem(ca))


@pytest.fixture(scope="module")
def chain() -> Chain:
    return make_chain()


@pytest.fixture(scope="module")
def signer(chain: Chain) -> provenance.Signer:
    return provenance.load_signer(chain.cert_pem, chain.key_pem)


def scene() -> Image.Image:
    """A small RGBA "scene": a product-coloured block on a see-through ground."""
    im = Image.new("RGBA", (96, 64), (230, 225, 215, 0))
    im.paste((180, 40, 50, 255), (24, 16, 72, 48))
    return im


def exiftool(data: bytes, tmp_path: Path, suffix: str) -> dict:
    """exiftool's reading of the file's IPTC Extension Digital Source Type (absent key: no such field)."""
    if shutil.which("exiftool") is None:
        pytest.fail("exiftool is not installed; scripts/ensure-tools installs it")
    path = tmp_path / f"scene.{suffix}"
    path.write_bytes(data)
    out = subprocess.run(["exiftool", "-j", "-XMP-iptcExt:DigitalSourceType", str(path)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)[0]


def read_manifest(data: bytes, content_type: str, ca_pem: bytes) -> tuple[str, dict]:
    """c2pa's validation state and active manifest, trusting our test CA as a root."""
    context = c2pa.Context.from_dict({"trust": {"trust_anchors": ca_pem.decode()}, "verify": {"verify_trust": True}})
    with c2pa.Reader(content_type, io.BytesIO(data), context=context) as reader:
        return reader.get_validation_state(), reader.get_active_manifest()


def created_actions(manifest: dict) -> list[dict]:
    actions = [action for assertion in manifest["assertions"] if assertion["label"].startswith("c2pa.actions")
               for action in assertion["data"]["actions"]]
    return [action for action in actions if action["action"] == "c2pa.created"]


# ---- XMP: Iptc4xmpExt:DigitalSourceType ----


@pytest.mark.parametrize(("fmt", "suffix"), FORMATS)
@pytest.mark.parametrize("source_type", [COMPOSITE, GENERATED])
def test_a_generated_image_says_so_in_xmp_in_every_format(tmp_path, fmt, suffix, source_type):
    data = encode(scene(), fmt, source_type=source_type)

    assert exiftool(data, tmp_path, suffix)["DigitalSourceType"] == IPTC + source_type


@pytest.mark.parametrize(("fmt", "suffix"), FORMATS)
def test_an_image_no_model_touched_carries_no_source_type(tmp_path, fmt, suffix):
    data = encode(scene(), fmt)

    assert "DigitalSourceType" not in exiftool(data, tmp_path, suffix)
    with Image.open(io.BytesIO(data)) as reopened:
        assert "xmp" not in reopened.info


def test_the_marking_changes_no_pixel():
    plain, marked = encode(scene(), "png"), encode(scene(), "png", source_type=COMPOSITE)
    with Image.open(io.BytesIO(plain)) as a, Image.open(io.BytesIO(marked)) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_a_code_outside_the_iptc_vocabulary_is_refused():
    """A typo would mark nothing a reader recognises; it must not reach a file (nor the XML)."""
    with pytest.raises(ValueError, match="digital source type"):
        encode(scene(), "png", source_type="aiGenerated")
    with pytest.raises(ValueError):
        provenance.xmp_packet('x"><evil/>')


# ---- C2PA: a signed manifest that says the same ----


@pytest.mark.parametrize(("fmt", "suffix"), FORMATS)
def test_a_signed_image_carries_a_trusted_manifest_and_keeps_its_xmp(tmp_path, chain, signer, fmt, suffix):
    data = encode(scene(), fmt, source_type=COMPOSITE)

    signed = provenance.sign(data, CONTENT_TYPES[fmt], COMPOSITE, signer)

    state, manifest = read_manifest(signed, CONTENT_TYPES[fmt], chain.ca_pem)
    assert state == "Trusted"
    assert [action["digitalSourceType"] for action in created_actions(manifest)] == [IPTC + COMPOSITE]
    assert manifest["signature_info"]["common_name"] == "Catalog image signer"
    assert exiftool(signed, tmp_path, suffix)["DigitalSourceType"] == IPTC + COMPOSITE
    with Image.open(io.BytesIO(data)) as before, Image.open(io.BytesIO(signed)) as after:
        assert np.array_equal(np.asarray(before), np.asarray(after))


def test_a_model_drawn_image_is_signed_as_trained_algorithmic_media(chain, signer):
    signed = provenance.sign(encode(scene(), "jpeg", source_type=GENERATED), "image/jpeg", GENERATED, signer)

    _state, manifest = read_manifest(signed, "image/jpeg", chain.ca_pem)
    assert [action["digitalSourceType"] for action in created_actions(manifest)] == [IPTC + GENERATED]


def test_a_changed_pixel_breaks_the_signature(chain, signer):
    """The reader really checks: one altered byte of image data and the manifest no longer validates."""
    signed = bytearray(provenance.sign(encode(scene(), "jpeg", source_type=GENERATED), "image/jpeg", GENERATED,
                                       signer))
    signed[-40] ^= 0xFF

    state, _manifest = read_manifest(bytes(signed), "image/jpeg", chain.ca_pem)
    assert state == "Invalid"


def test_an_unknown_ca_is_valid_but_not_trusted(signer):
    """Without our CA among its roots a reader still verifies the signature, and says it does not know the signer."""
    signed = provenance.sign(encode(scene(), "png", source_type=GENERATED), "image/png", GENERATED, signer)

    state, _manifest = read_manifest(signed, "image/png", make_chain().ca_pem)
    assert state == "Valid"


# ---- refusing a pair that cannot sign, at startup ----


def test_a_key_that_is_not_the_certificates_is_refused(chain):
    other = make_chain()
    with pytest.raises(provenance.SignerUnusable, match="does not belong"):
        provenance.load_signer(chain.cert_pem, other.key_pem)


def test_an_encrypted_key_is_refused():
    key = ec.generate_private_key(ec.SECP256R1())
    encrypted = _key_pem(key, serialization.BestAvailableEncryption(b"secret"))
    with pytest.raises(provenance.SignerUnusable, match="encrypted"):
        provenance.load_signer(make_chain().cert_pem, encrypted)


def test_files_that_hold_no_pem_are_refused(chain):
    with pytest.raises(provenance.SignerUnusable, match="no PEM certificate"):
        provenance.load_signer(b"not a certificate", chain.key_pem)
    with pytest.raises(provenance.SignerUnusable, match="no PEM private key"):
        provenance.load_signer(chain.cert_pem, chain.cert_pem)


def test_a_self_signed_certificate_is_refused():
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("Me")).issuer_name(_name("Me")).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=9))
            .sign(key, hashes.SHA256()))
    with pytest.raises(provenance.SignerUnusable, match="signs itself"):
        provenance.load_signer(_pem(cert), _key_pem(key))


def test_an_expired_certificate_is_refused():
    expired = make_chain(days=-1)
    with pytest.raises(provenance.SignerUnusable, match="renew"):
        provenance.load_signer(expired.cert_pem, expired.key_pem)


@pytest.mark.parametrize("chain_args", [{"eku": False}, {"end_entity_is_ca": True}])
def test_a_certificate_c2pa_rejects_is_refused_with_what_it_needs(chain_args):
    """No extended key usage, or a CA certificate used to sign: c2pa's trial signing refuses, and we say why."""
    bad = make_chain(**chain_args)
    with pytest.raises(provenance.SignerUnusable, match="digitalSignature key usage"):
        provenance.load_signer(bad.cert_pem, bad.key_pem)


# ---- configuration: both or neither, and one signer per process ----


def _config(tmp_path: Path, **overrides) -> Config:
    return Config.load({"var_dir": str(tmp_path), **overrides}, environ={})


def test_the_certificate_and_key_settings_go_together(tmp_path, chain):
    cert = tmp_path / "cert.pem"
    cert.write_bytes(chain.cert_pem)
    with pytest.raises(ConfigError, match="CATALOG_C2PA_CERT and CATALOG_C2PA_KEY"):
        _config(tmp_path, c2pa_cert=str(cert))
    with pytest.raises(ConfigError, match="CATALOG_C2PA_KEY: no file"):
        _config(tmp_path, c2pa_cert=str(cert), c2pa_key=str(tmp_path / "missing.pem"))


def test_the_process_builds_a_signer_from_the_configured_files(tmp_path, chain):
    (tmp_path / "cert.pem").write_bytes(chain.cert_pem)
    (tmp_path / "key.pem").write_bytes(chain.key_pem)

    built = c2pa_signer(_config(tmp_path, c2pa_cert=str(tmp_path / "cert.pem"), c2pa_key=str(tmp_path / "key.pem")))

    assert built is not None and built.algorithm == "es256"
    assert c2pa_signer(_config(tmp_path)) is None


def test_an_unusable_pair_stops_the_process_naming_the_settings(tmp_path, chain):
    (tmp_path / "cert.pem").write_bytes(chain.cert_pem)
    (tmp_path / "key.pem").write_bytes(make_chain().key_pem)
    config = _config(tmp_path, c2pa_cert=str(tmp_path / "cert.pem"), c2pa_key=str(tmp_path / "key.pem"))

    with pytest.raises(ConfigError, match="CATALOG_C2PA_CERT / CATALOG_C2PA_KEY: the private key does not belong"):
        c2pa_signer(config)
