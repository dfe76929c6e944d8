"""The SAM CLI accepts the template and builds deployable artifacts without Docker."""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from punk_records import store

ROOT = Path(__file__).resolve().parents[2]
SAM = ROOT / ".cache" / "sam-venv" / "bin" / "sam"
RUNTIME_TAG = "cp313"
# ELF e_machine values: what a compiled extension was built for.
ELF_MACHINES = {"arm64": 0xB7, "x86_64": 0x3E}
WHEEL_ARCH = {"arm64": "aarch64", "x86_64": "x86_64"}
# Parameters without defaults; sam build only needs them to resolve the template.
REQUIRED = [
    "KafkaBootstrapServers=b-1.example:9098",
    "DatabaseSecretArn=arn:aws:secretsmanager:us-east-1:123456789012:secret:db",
    "ApiTokensSecretArn=arn:aws:secretsmanager:us-east-1:123456789012:secret:tokens",
]


def sam(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SAM), *args],
        cwd=ROOT,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0", **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_given_the_template_when_validated_with_lint_then_sam_reports_no_finding() -> None:
    result = sam("validate", "--lint", "--template", "template.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


@pytest.fixture(scope="module", params=["arm64", "x86_64"])
def build(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """``sam build`` for one architecture, the way `make build ARCH=...` runs it."""
    arch = request.param
    build_dir = tmp_path_factory.mktemp(f"sam-build-{arch}")
    result = sam(
        "build",
        "--template",
        "template.yaml",
        "--build-dir",
        str(build_dir),
        "--cache-dir",
        str(ROOT / ".cache" / "sam-build"),
        "--cached",
        "--parallel",
        "--parameter-overrides",
        f"Architecture={arch}",
        *REQUIRED,
        env={
            "LAYER_ARCHITECTURE": arch,
            "PIP": f"{sys.executable} -m pip",
            "PIP_CACHE_DIR": str(ROOT / ".cache" / "pip"),
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return arch, build_dir


def test_given_a_build_then_every_wheel_in_the_layer_targets_the_runtime_and_architecture(
    build: tuple,
) -> None:
    arch, build_dir = build
    site = build_dir / "PunkRecordsLayer" / "python"
    tags = set()
    for wheel in site.glob("*.dist-info/WHEEL"):
        tags |= set(re.findall(r"^Tag: (\S+)$", wheel.read_text(encoding="utf-8"), re.MULTILINE))
    assert tags
    for tag in tags:
        python, abi, platform = tag.split("-")
        if platform == "any":
            assert abi == "none"
            continue
        assert python == RUNTIME_TAG, tag
        assert abi in {RUNTIME_TAG, "abi3"}, tag
        assert platform.startswith("manylinux"), tag
        assert platform.endswith(f"_{WHEEL_ARCH[arch]}"), tag


def test_given_a_build_then_every_shared_library_is_compiled_for_the_architecture(
    build: tuple,
) -> None:
    arch, build_dir = build
    libraries = list((build_dir / "PunkRecordsLayer" / "python").rglob("*.so*"))
    assert libraries  # pydantic-core and psycopg-binary are compiled
    for library in libraries:
        header = library.read_bytes()[:20]
        assert header[:4] == b"\x7fELF", library
        assert int.from_bytes(header[18:20], "little") == ELF_MACHINES[arch], library
        if ".cpython-" in library.name:
            assert f".cpython-313-{WHEEL_ARCH[arch]}-linux-gnu.so" in library.name


def test_given_a_build_then_the_layer_ships_the_redaction_matchers_for_the_architecture(
    build: tuple,
) -> None:
    # Redaction's prefilter (Hyperscan) and rules (RE2) are native: a layer without them, or
    # with the build machine's copies, fails at the first redaction in Lambda.
    arch, build_dir = build
    site = build_dir / "PunkRecordsLayer" / "python"
    for package, extension in (("hyperscan", "_hs_ext"), ("re2", "_re2")):
        (library,) = (site / package).glob(f"{extension}.cpython-313-*.so")
        header = library.read_bytes()[:20]
        assert header[:4] == b"\x7fELF", library
        assert int.from_bytes(header[18:20], "little") == ELF_MACHINES[arch], library
        assert library.name.endswith(f"-{WHEEL_ARCH[arch]}-linux-gnu.so"), library


def test_given_a_build_then_the_layer_ships_bytecode_for_the_runtime(build: tuple) -> None:
    # /opt is read-only in Lambda: without shipped bytecode every cold start recompiles.
    _, build_dir = build
    package = build_dir / "PunkRecordsLayer" / "python" / "punk_records"
    sources = list(package.rglob("*.py"))
    compiled = {p.name.split(".")[0] for p in package.rglob("__pycache__/*.cpython-313.pyc")}
    assert sources
    assert {p.stem for p in sources} <= compiled


def _names(requirements: Path) -> set[str]:
    names = set()
    for line in requirements.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[\[<>=!~ ;]", line)[0].lower().replace("_", "-"))
    return names


def test_given_a_build_then_the_layer_holds_the_package_and_no_development_dependency(
    build: tuple,
) -> None:
    _, build_dir = build
    site = build_dir / "PunkRecordsLayer" / "python"
    installed = {
        re.sub(r"-[^-]+\.dist-info$", "", path.name).lower().replace("_", "-")
        for path in site.glob("*.dist-info")
    }
    runtime = _names(ROOT / "layers" / "punk_records" / "requirements.txt")
    # boto3 is a development tool and also a runtime dependency of the MSK IAM signer.
    development = _names(ROOT / "requirements-dev.txt") - runtime - {"boto3"}
    assert development  # pytest, moto, ruff, ... : the check below means something
    assert runtime <= installed
    assert not installed & development
    # The Lambda runtime provides the AWS SDK; the layer must not shadow it.
    assert not installed & {"boto3", "botocore", "s3transfer"}
    assert not (site / "botocore").exists()
    assert not (site / "bin").exists()
    source = ROOT / "layers" / "punk_records" / "python" / "punk_records"
    expected = {
        p.relative_to(source)
        for p in source.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    built = {
        p.relative_to(site / "punk_records")
        for p in (site / "punk_records").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    # The build adds the RDS CA bundle (layers/punk_records/Makefile), nothing else.
    assert built == expected | {Path("certs/rds-ca-bundle.pem")}
    assert any(p.suffix == ".sql" for p in built)


def test_given_a_build_then_the_layer_ships_the_rds_ca_bundle_the_store_verifies_with(
    build: tuple,
) -> None:
    _, build_dir = build
    bundle = build_dir / "PunkRecordsLayer" / "python" / "punk_records" / "certs"
    pem = (bundle / "rds-ca-bundle.pem").read_text(encoding="ascii")
    # Every region's RDS root CAs (2019, and the 2024 RSA2048/RSA4096/ECC384 ones) and the
    # Amazon roots RDS Proxy chains to; all of them load as trust anchors.
    context = ssl.create_default_context(cadata=pem)
    subjects = [
        dict(item for rdn in cert["subject"] for item in rdn)["commonName"]  # type: ignore[misc]
        for cert in context.get_ca_certs()
    ]
    assert len(subjects) >= 100
    for name in (
        "Amazon RDS us-east-1 Root CA RSA2048 G1",
        "Amazon RDS eu-west-1 Root CA ECC384 G1",
        "Amazon Root CA 1",
    ):
        assert name in subjects
    # The path the store reads, relative to the package, is the one the build writes.
    assert store.RDS_CA_BUNDLE.relative_to(store.RDS_CA_BUNDLE.parents[2]) == Path(
        "punk_records/certs/rds-ca-bundle.pem"
    )


def test_given_a_build_then_each_function_artifact_is_its_handler_code_only(build: tuple) -> None:
    _, build_dir = build
    for function, code in (
        ("IngestFunction", "ingest"),
        ("ConsumerFunction", "consumer"),
        ("MigrateFunction", "migrate"),
    ):
        built = {p.name for p in (build_dir / function).iterdir()}
        source = {p.name for p in (ROOT / "functions" / code).iterdir() if p.name != "__pycache__"}
        assert built == source
        assert "app.py" in built
    template = (build_dir / "template.yaml").read_text(encoding="utf-8")
    assert "ContentUri: PunkRecordsLayer" in template
