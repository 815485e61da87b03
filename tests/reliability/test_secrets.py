"""Secrets never leak: every source runs with recognisable test values in every credential
setting, and the test greps everything a user or an attacker could read afterwards for them:
the CLI's output at --debug (and an in-process run with every logger at DEBUG, botocore's wire
logs included), the message of a failed run, every text column of every table in DuckDB, the
pipeline's working folder (state, schemas, the pickled trace) and `dlt pipeline … info`.
TLS verification stays on unless turned off, and turning it off warns."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys

import duckdb
import pytest

from sources.errors import RedactingFilter
from tests.reliability.cases import available
from tests.reliability.support import ROOT, cli, cli_env, db_path, environment_unsetting, load, serving, snapshot

CASES = [case for case in available() if case.credential_variants()]
VARIANTS = [pytest.param(case, index, id=f"{case.provider}-{index}") for case in CASES for index in range(len(case.credential_variants()))]


def assert_clean(text, secrets, where):
    for secret in secrets:
        assert secret not in text, f"a test secret leaked into {where}"


def all_text_in_duckdb(path):
    chunks = []
    with duckdb.connect(path, read_only=True) as con:
        columns = con.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns"
            " WHERE data_type IN ('VARCHAR', 'JSON', 'BLOB')"
        ).fetchall()
        for schema, table, column in columns:
            for (value,) in con.execute(f'SELECT CAST("{column}" AS VARCHAR) FROM "{schema}"."{table}"').fetchall():
                if value:
                    chunks.append(value)
    return "\n".join(chunks)


def all_files(folder):
    chunks = []
    for base, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(base, name), "rb") as handle:
                chunks.append(handle.read().decode("utf-8", "replace"))
    return "\n".join(chunks)


@pytest.mark.parametrize("case,variant", VARIANTS)
def test_test_secrets_appear_nowhere(tmp_path, case, variant):
    """Every credential variant, everywhere: the CLI at --debug, in-process at DEBUG (wire logs
    included), the dlt trace, a failed run's message, DuckDB, the pipeline folders and `dlt
    pipeline info`."""
    inventory = case.inventory(seed=2, repositories=2, images=8)
    with serving(case, inventory) as (emulator, env):
        env, secrets = case.credential_variants()[variant](emulator, env)
        assert secrets and all(len(s) >= 8 for s in secrets)
        db, workdir = str(tmp_path / "registry_etl.duckdb"), str(tmp_path / "pipelines")

        # the CLI, at --debug
        result = cli("--debug", "load", case.provider, "--duckdb", db, "--pipelines-dir", workdir, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "registry_etl" in result.stderr  # the logs were there to be read
        assert_clean(result.stdout + result.stderr, secrets, "the CLI output")

        pipeline = in_process_checks(tmp_path, case, emulator, env, secrets)

    for path in [db, db_path(pipeline)]:
        assert_clean(all_text_in_duckdb(path), secrets, f"DuckDB {path}")
    folders = [workdir, str(tmp_path / "inproc" / "pipelines"), str(tmp_path / "fp")]
    for folder in folders:
        assert_clean(all_files(folder), secrets, f"the pipeline folder {folder}")
    info = subprocess.run(
        [sys.executable, "-c", "import sys; from dlt._workspace.cli._dlt import _main; sys.argv[0] = 'dlt'; sys.exit(_main())",
         "pipeline", "--pipelines-dir", workdir, "registry_etl", "info"],
        capture_output=True, text=True, cwd=ROOT, env=cli_env({}), timeout=120,
    )
    assert info.returncode == 0 and "registry_etl" in info.stdout, info.stderr[-2000:]
    assert_clean(info.stdout + info.stderr, secrets, "dlt pipeline info")


def in_process_checks(tmp_path, case, emulator, env, secrets):
    with environment_unsetting(env):
        # in-process, every logger at DEBUG through the CLI's redacting handler
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.addFilter(RedactingFilter())
        root = logging.getLogger()
        saved = root.level, [(name, logging.getLogger(name).level) for name in ("botocore", "urllib3", "dlt", "registry_etl")]
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        for name, _ in saved[1]:
            logging.getLogger(name).setLevel(logging.DEBUG)
        try:
            pipeline, _ = load(tmp_path / "inproc", case)
        finally:
            root.removeHandler(handler)
            root.setLevel(saved[0])
            for name, level in saved[1]:
                logging.getLogger(name).setLevel(level)
        logs = stream.getvalue()
        assert len(logs) > 1_000 and "127.0.0.1" in logs  # wire-level logs, not an empty capture
        assert_clean(logs, secrets, "DEBUG logs")
        if case.provider == "ecr":  # botocore's wire logs carry the session token: blanked
            assert "***" in logs
        assert_clean(str(pipeline.last_trace) + repr(pipeline.last_trace.asdict()), secrets, "the dlt trace")

        # the message of a failed run: the emulator now refuses the credentials
        case.reject_credentials(emulator)
        failed = cli("--debug", "load", case.provider, "--duckdb", str(tmp_path / "f.duckdb"),
                     "--pipelines-dir", str(tmp_path / "fp"), env=env)
        assert failed.returncode != 0 and "error:" in failed.stderr
        assert_clean(failed.stdout + failed.stderr, secrets, "a failed run's message")
    return pipeline


def test_tls_verification_is_on_unless_turned_off_with_a_warning(caplog):
    from sources.http import build_client, build_session

    assert build_session().verify is True
    assert build_client("https://registry.example").session.verify is True
    with caplog.at_level(logging.WARNING, logger="registry_etl.http"):
        session = build_session(verify_tls=False)
    assert session.verify is False
    assert any("TLS certificate verification is OFF" in r.getMessage() for r in caplog.records)


def test_ecr_client_verifies_tls():
    if "ecr" not in {c.provider for c in available()}:
        pytest.skip("ecr not in the catalog")
    from sources.ecr.helpers import EcrApi

    api = EcrApi("us-east-1", endpoint_url="https://ecr.example")
    assert api.client._endpoint.http_session._verify is not False


def self_signed_certificate(folder):
    """A certificate for 127.0.0.1, signed by itself: (certificate path, key path)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "registry-etl TLS test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = os.path.join(folder, "tls.crt"), os.path.join(folder, "tls.key")
    with open(cert_path, "wb") as handle:
        handle.write(certificate.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return cert_path, key_path


def serve_tls(emulator, cert_path, key_path):
    """Switch a started emulator (no request served yet) to HTTPS with the given certificate."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server = emulator._server
    server.socket = context.wrap_socket(server.socket, server_side=True)


def exception_text(exc):
    parts, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__ or getattr(exc, "exception", None)
    return "\n".join(parts)


TLS_CASES = [pytest.param(case, id=case.provider) for case in available()]
CA_SETTINGS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "AWS_CA_BUNDLE", "SSL_CERT_FILE")
# the sources that have a setting turning verification off (the others have none)
TLS_OFF_SETTINGS = {"oci": "SOURCES__OCI__VERIFY_TLS"}


@pytest.mark.parametrize("case", TLS_CASES)
def test_every_source_verifies_tls_and_accepts_a_trusted_ca(tmp_path, case, caplog):
    """The registry (and Yandex's IAM endpoint) on HTTPS with a certificate nobody trusts: the
    source refuses it, no call reaches the emulator; the same certificate given through the
    standard CA-bundle settings (requests' `REQUESTS_CA_BUNDLE`, botocore's `AWS_CA_BUNDLE`): the
    load runs. A source with a setting that turns verification off (OCI's `verify_tls`): with it
    the untrusted registry loads, and a warning says verification is off."""
    cert_path, key_path = self_signed_certificate(str(tmp_path))
    inventory = case.inventory(seed=3, repositories=2, images=6)
    with serving(case, inventory) as (emulator, env):
        serve_tls(emulator, cert_path, key_path)
        env = {k: v.replace("http://127.0.0.1", "https://127.0.0.1") for k, v in env.items()}
        assert any("https://127.0.0.1" in v for v in env.values())
        with environment_unsetting({**env, **{name: "" for name in CA_SETTINGS}}):
            with pytest.raises(Exception) as refused:
                load(tmp_path / "untrusted", case)
        assert "CERTIFICATE_VERIFY_FAILED" in exception_text(refused.value), exception_text(refused.value)[-2000:]
        assert sum(emulator.counters.values()) == 0, "a request got through an unverified TLS connection"

        with environment_unsetting({**env, **{name: "" for name in CA_SETTINGS},
                                    "REQUESTS_CA_BUNDLE": cert_path, "AWS_CA_BUNDLE": cert_path}):
            pipeline, _ = load(tmp_path / "trusted", case)
        assert not [r for r in caplog.records if "TLS certificate verification is OFF" in r.getMessage()]

        if case.provider in TLS_OFF_SETTINGS:
            with environment_unsetting({**env, **{name: "" for name in CA_SETTINGS}, TLS_OFF_SETTINGS[case.provider]: "false"}):
                with caplog.at_level(logging.WARNING):
                    unverified, _ = load(tmp_path / "unverified", case)
            assert any("TLS certificate verification is OFF" in r.getMessage() for r in caplog.records)
            assert snapshot(db_path(unverified), case.volatile)["images"] == snapshot(db_path(pipeline), case.volatile)["images"]
    expected = {digest for repo in inventory.repositories() for digest in repo.images}
    with duckdb.connect(db_path(pipeline), read_only=True) as con:
        loaded = {digest for (digest,) in con.execute("SELECT DISTINCT digest FROM registry.images").fetchall()}
    assert loaded and loaded <= expected, (len(loaded), len(expected))
    if case.sees_every_manifest:
        assert loaded == expected
