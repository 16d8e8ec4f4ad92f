"""A private CA and the gateway's server certificate, for bots on other machines.

`tls_init` makes (once) a CA of the user's own - an ECDSA P-256 key and a self-signed
certificate limited to signing server certificates (path length 0) - and, every time, a
server certificate for the given host names and IP addresses signed by it. Everything is
kept beside the vault, in `<vault>.tls/`, each file written through the store's private-file
rule (0600, atomic, durable). The CA's key is needed only to issue the next server
certificate: `ca_key_out` writes it elsewhere (removable media) instead, and a later run
takes it back with `ca_key`.

Bots trust `ca.pem` alone (not the system's store), so a certificate for the gateway's name
from any public CA is not accepted by them, and this CA's certificate is useless elsewhere.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidInputError, NotFoundError
from ..vault_file import atomic_write, ensure_private_dir, read_private

if TYPE_CHECKING:  # cryptography loads only when tls-init runs
    from cryptography import x509

__all__ = ["TlsFiles", "tls_dir", "tls_init"]

_CA_DAYS = 3650
_SERVER_DAYS = 397  # what browsers accept for a server certificate; renew by running again


@dataclass(frozen=True)
class TlsFiles:
    """What `tls_init` wrote: give `ca_cert` to the bots, the rest to `botvault gateway`."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path
    names: tuple[str, ...]
    new_ca: bool


def tls_dir(vault_path: Path) -> Path:
    return vault_path.with_name(vault_path.name + ".tls")


def _subject_names(names: list[str]) -> list[x509.GeneralName]:
    from cryptography import x509

    out: list[x509.GeneralName] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
            continue
        except ValueError:
            pass
        labels = name.split(".")
        if not name.isascii() or len(name) > 253 or not all(
                0 < len(label) <= 63 and (label.replace("-", "").isalnum() or label == "*")
                for label in labels):
            raise InvalidInputError(f"--name takes a host name or an IP address (got {name!r})")
        out.append(x509.DNSName(name.lower()))
    return out


def _write(path: Path, data: bytes) -> None:
    atomic_write(path, data, verify=lambda back: _same(back, data), backup_as=None)


def _same(back: bytes, data: bytes) -> None:
    if back != data:
        raise OSError("the file read back differs from what was written")


def tls_init(vault_path: Path, names: list[str], *, ca_key_out: Path | None = None,
             ca_key: Path | None = None) -> TlsFiles:
    """Make the CA if there is none, then a server certificate for `names`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if not names:
        raise InvalidInputError("give at least one --name (the host name or IP address bots "
                                "use to reach the gateway)")
    alt_names = _subject_names(names)  # refused before anything is made or written
    directory = tls_dir(vault_path)
    ensure_private_dir(directory, "the gateway's TLS directory")
    ca_cert_path, server_cert, server_key = (directory / "ca.pem", directory / "server.pem",
                                             directory / "server.key")
    ca_key_path = ca_key or ca_key_out or directory / "ca.key"
    now = datetime.datetime.now(datetime.timezone.utc)
    new_ca = not ca_cert_path.exists()
    if new_ca:
        if ca_key is not None:
            raise InvalidInputError("--ca-key is for issuing with an existing CA; there is "
                                    f"none in {directory}")
        ca_private = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "botvault gateway CA")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_private.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5))
              .not_valid_after(now + datetime.timedelta(days=_CA_DAYS))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(
                  digital_signature=False, content_commitment=False, key_encipherment=False,
                  data_encipherment=False, key_agreement=False, key_cert_sign=True,
                  crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                  ca_private.public_key()), critical=False)
              .sign(ca_private, hashes.SHA256()))
        ensure_private_dir(ca_key_path.parent, "the CA key's directory")
        ca_pem = ca_private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())
        # create=True: never overwrite a CA key (it may be the only copy of another CA's).
        atomic_write(ca_key_path, ca_pem, verify=lambda back: _same(back, ca_pem),
                     backup_as=None, create=True)
        _write(ca_cert_path, ca.public_bytes(serialization.Encoding.PEM))
    else:
        ca = x509.load_pem_x509_certificate(read_private(ca_cert_path))
        try:
            loaded = serialization.load_pem_private_key(read_private(ca_key_path), None)
        except (FileNotFoundError, NotFoundError):
            raise NotFoundError(f"the CA's key is not at {ca_key_path}",
                                hint="pass --ca-key FILE where you keep it offline") from None
        ca_public = ca.public_key()
        if not isinstance(loaded, ec.EllipticCurvePrivateKey) or \
                not isinstance(ca_public, ec.EllipticCurvePublicKey) or \
                loaded.public_key().public_numbers() != ca_public.public_numbers():
            raise InvalidInputError(f"{ca_key_path} is not the key of {ca_cert_path}")
        ca_private = loaded
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=_SERVER_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_private.public_key()), critical=False)
            .sign(ca_private, hashes.SHA256()))
    _write(server_key, key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    _write(server_cert, cert.public_bytes(serialization.Encoding.PEM))
    return TlsFiles(directory, ca_cert_path, ca_key_path, server_cert, server_key,
                    tuple(names), new_ca)
