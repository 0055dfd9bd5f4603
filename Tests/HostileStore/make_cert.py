#!/usr/bin/env python3
"""Makes a certificate and key for the TLS tests: make_cert.py OUT_PREFIX DAYS_FROM DAYS_TO SAN...

SAN entries are 'IP:127.0.0.1', 'IP:::1' or 'DNS:name'. The certificate is self-signed (its own
CA), valid from now + DAYS_FROM to now + DAYS_TO days (both may be negative: an expired one).
Writes OUT_PREFIX.pem and OUT_PREFIX.key. Needs the 'cryptography' package (.ci/run installs it).
"""
import datetime
import ipaddress
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

prefix, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
names = []
for entry in sys.argv[4:]:
    kind, value = entry.split(":", 1)
    names.append(x509.IPAddress(ipaddress.ip_address(value)) if kind == "IP" else x509.DNSName(value))
key = ec.generate_private_key(ec.SECP256R1())
subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "deployctl test store")])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=start)).not_valid_after(now + datetime.timedelta(days=end))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
with open(prefix + ".pem", "wb") as f:
    f.write(cert.public_bytes(serialization.Encoding.PEM))
with open(prefix + ".key", "wb") as f:
    f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
