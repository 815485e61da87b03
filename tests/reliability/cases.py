"""The sources under test, one table entry each: how to start its emulator over an inventory,
which settings keep its retries fast, which faults to inject, and its credential settings.

A source joins every reliability test by adding one `SourceCase` to `CASES`; the tests iterate
over the entries whose provider is in the catalog (sources land on main one by one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from emulators.base import Emulator, Faults
from emulators.inventory import Inventory
from pipelines.catalog import PROVIDERS

# at least one call in five fails transiently, every kind of fault the emulators know
FAULTS = dict(throttle_every=5, error_every=7, drop_every=11, truncate_every=13)


@dataclass(frozen=True)
class SourceCase:
    provider: str
    registries: Tuple[str, ...]  # inventory registry names as the emulator expects them
    detail_operation: str  # an emulator operation called several times mid-extract (per-image details)
    # how the source's error messages name that call, when not by the operation's name
    detail_call: str = ""
    # env settings that keep a test's retries fast and plentiful (dlt's REST client)
    fast_retries: Dict[str, str] = field(default_factory=dict)
    # source options for fault runs (botocore attempts for ECR)
    fault_options: Dict[str, Any] = field(default_factory=dict)
    # env names of every credential setting of the source (for the secrets test)
    secret_settings: Tuple[str, ...] = ()
    # the emulator's own test credentials replaced by recognisable ones: env -> value, and how
    # to make the emulator accept them (called with the started emulator and that env)
    use_test_secrets: Optional[Callable[[Emulator, Dict[str, str]], Dict[str, str]]] = None
    # more credential variants (settings that exclude each other): each -> (env, secrets)
    secret_variants: Tuple[Callable[[Emulator, Dict[str, str]], Tuple[Dict[str, str], List[str]]], ...] = ()
    # start the emulator over an inventory: (inventory, faults) -> (emulator, env); default:
    # the catalog's start_demo(inventory=, faults=)
    # columns an emulator fills from the wall clock or request order (not data the source got wrong)
    volatile: Tuple[str, ...] = ()
    # tests that fail for this source because of an open bug in its code: test name -> reason
    known_bugs: Dict[str, str] = field(default_factory=dict)
    # whether every manifest (untagged index children too) is visible through the API
    sees_every_manifest: bool = True
    # make the emulator refuse the credentials it was given (for a failed run's message)
    reject_credentials: Optional[Callable[[Emulator], None]] = None
    starter: Optional[Callable[[Inventory, Optional[Faults]], Tuple[Emulator, Dict[str, str]]]] = None

    def credential_variants(self) -> List[Callable[[Emulator, Dict[str, str]], Tuple[Dict[str, str], List[str]]]]:
        """Each way to give the source credentials: (emulator, env) -> (env, the secrets in it)."""
        variants = list(self.secret_variants)
        if self.use_test_secrets is not None:
            use = self.use_test_secrets

            def variant(emulator: Emulator, env: Dict[str, str]) -> Tuple[Dict[str, str], List[str]]:
                env = use(emulator, env)
                return env, [env[name] for name in self.secret_settings if env.get(name)]

            variants.insert(0, variant)
        return variants

    def inventory(self, seed: int = 1, repositories: int = 4, images: int = 40, **kwargs: Any) -> Inventory:
        return Inventory(seed=seed, registries=self.registries, repositories=repositories, images=images, **kwargs)

    def start(self, inventory: Inventory, faults: Optional[Faults] = None) -> Tuple[Emulator, Dict[str, str]]:
        """Start the source's emulator; returns it and the env that points the source at it."""
        if self.starter is not None:
            emulator, env = self.starter(inventory, faults)
        else:
            emulator, env = PROVIDERS[self.provider].start_demo_emulator(inventory=inventory, faults=faults)
        env = dict(env)
        env.update(self.fast_retries)
        return emulator, env


REST_FAST_RETRIES = {
    "RUNTIME__REQUEST_MAX_ATTEMPTS": "12",
    "RUNTIME__REQUEST_BACKOFF_FACTOR": "0.001",
    "RUNTIME__REQUEST_MAX_RETRY_DELAY": "0.05",
    "RUNTIME__REQUEST_TIMEOUT": "10",
}


def _ecr_test_secrets(emulator: Emulator, env: Dict[str, str]) -> Dict[str, str]:
    key, secret, token = "AKIARELIABILITY00042", "rel-test-secret-Z9q8w7e6r5t4y3", "rel-test-session-token-Q1w2E3r4"
    emulator.credentials = {key: secret}  # type: ignore[attr-defined]
    return {**env, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": token}


ECR_PROFILE = ("AKIARELPROFILE000042", "rel-profile-secret-Pp9Oo8Ii7Uu6Yy5", "rel-profile-session-token-Tt4Rr3Ee2")
ECR_PROCESS = ("AKIARELPROCESS000042", "rel-process-secret-Mm1Nn2Bb3Vv4Cc5", "rel-process-session-token-Xx6Zz7Aa8")


def _ecr_profile_secrets(emulator: Emulator, env: Dict[str, str]) -> Tuple[Dict[str, str], List[str]]:
    """A named profile in a shared credentials file (`AWS_PROFILE` + `AWS_SHARED_CREDENTIALS_FILE`),
    with a session token, and no key in the environment."""
    import tempfile

    key, secret, token = ECR_PROFILE
    emulator.credentials = {key: secret}  # type: ignore[attr-defined]
    handle = tempfile.NamedTemporaryFile("w", suffix=".credentials", delete=False)
    handle.write(f"[reliability]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\naws_session_token = {token}\n")
    handle.close()
    return {**env, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "",
            "AWS_PROFILE": "reliability", "AWS_SHARED_CREDENTIALS_FILE": handle.name}, [secret, token]


def _ecr_process_secrets(emulator: Emulator, env: Dict[str, str]) -> Tuple[Dict[str, str], List[str]]:
    """A profile in the config file (`AWS_CONFIG_FILE`) whose `credential_process` prints the keys
    (how aws-vault, SSO helpers and the like hand them over)."""
    import json
    import sys
    import tempfile

    key, secret, token = ECR_PROCESS
    emulator.credentials = {key: secret}  # type: ignore[attr-defined]
    folder = tempfile.mkdtemp(prefix="rel-aws-")
    script = os.path.join(folder, "credentials.py")
    with open(script, "w") as handle:
        handle.write("print(%r)\n" % json.dumps({"Version": 1, "AccessKeyId": key, "SecretAccessKey": secret, "SessionToken": token}))
    config = os.path.join(folder, "config")
    with open(config, "w") as handle:
        handle.write(f"[profile reliability-process]\ncredential_process = {sys.executable} {script}\n")
    return {**env, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "",
            "AWS_PROFILE": "reliability-process", "AWS_CONFIG_FILE": config}, [secret, token]


YANDEX_KEYS: Dict[str, Any] = {}


def _yandex_key() -> Tuple[Dict[str, Any], str]:
    """One service-account key pair per test session (RSA generation is slow)."""
    if not YANDEX_KEYS:
        from emulators.yandex import make_authorized_key

        YANDEX_KEYS["pair"] = make_authorized_key()
    return YANDEX_KEYS["pair"]


def _yandex_start(inventory: Inventory, faults: Optional[Faults]) -> Tuple[Emulator, Dict[str, str]]:
    import json

    from emulators.yandex import API_PREFIX, IAM_PATH, YandexEmulator, folder_ids

    folders = folder_ids(1, seed="reliability")
    emulator = YandexEmulator(inventory, folders={r: folders[0] for r in inventory.registries}, faults=faults)
    key, public_pem = _yandex_key()
    emulator.register_service_account_key(key["id"], key["service_account_id"], public_pem)
    emulator.start()
    env = {
        "SOURCES__YANDEX__FOLDER_ID": json.dumps(list(folders)),
        "SOURCES__YANDEX__BASE_URL": emulator.url + API_PREFIX,
        "SOURCES__YANDEX__IAM_URL": emulator.url + IAM_PATH,
        "SOURCES__YANDEX__SERVICE_ACCOUNT_KEY": json.dumps(key),
        **{f"SOURCES__YANDEX__{name}": "" for name in ("IAM_TOKEN", "OAUTH_TOKEN", "SERVICE_ACCOUNT_KEY_FILE", "REGISTRY_IDS", "REPOSITORIES")},
    }
    return emulator, env


def _yandex_registries() -> Tuple[str, ...]:
    from emulators.yandex import registry_ids

    return registry_ids(2, seed="reliability")


YANDEX_IAM = "t1.rel-test-iam-token-K7x6c5v4b3n2m1"
YANDEX_OAUTH = "y0_rel-test-oauth-token-P0o9i8u7y6t5"


def _yandex_key_secrets(emulator: Emulator, env: Dict[str, str]) -> Tuple[Dict[str, str], List[str]]:
    import json

    key = json.loads(env["SOURCES__YANDEX__SERVICE_ACCOUNT_KEY"])
    body = [line for line in key["private_key"].splitlines() if "-----" not in line]
    return env, [env["SOURCES__YANDEX__SERVICE_ACCOUNT_KEY"], body[1], body[-2]]


def _yandex_key_file_secrets(emulator: Emulator, env: Dict[str, str]) -> Tuple[Dict[str, str], List[str]]:
    import json
    import tempfile

    handle = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    handle.write(env["SOURCES__YANDEX__SERVICE_ACCOUNT_KEY"])
    handle.close()
    _, secrets = _yandex_key_secrets(emulator, env)
    key = json.loads(env["SOURCES__YANDEX__SERVICE_ACCOUNT_KEY"])
    env = {**env, "SOURCES__YANDEX__SERVICE_ACCOUNT_KEY": "", "SOURCES__YANDEX__SERVICE_ACCOUNT_KEY_FILE": handle.name}
    return env, secrets[1:] + [key["private_key"].splitlines()[5]]


def _yandex_iam_secrets(emulator: Emulator, env: Dict[str, str]) -> Tuple[Dict[str, str], List[str]]:
    emulator.add_iam_token(YANDEX_IAM)  # type: ignore[attr-defined]
    return {**env, "SOURCES__YANDEX__SERVICE_ACCOUNT_KEY": "", "SOURCES__YANDEX__IAM_TOKEN": YANDEX_IAM}, [YANDEX_IAM]


def _yandex_oauth_secrets(emulator: Emulator, env: Dict[str, str]) -> Tuple[Dict[str, str], List[str]]:
    emulator.oauth_tokens.add(YANDEX_OAUTH)  # type: ignore[attr-defined]
    return {**env, "SOURCES__YANDEX__SERVICE_ACCOUNT_KEY": "", "SOURCES__YANDEX__OAUTH_TOKEN": YANDEX_OAUTH}, [YANDEX_OAUTH]


NCP_KEY, NCP_SECRET = "NCPRELIABILITYKEY0042", "rel-ncp-secret-Hh7Jj6Kk5Ll4"
SWR_KEY, SWR_SECRET, SWR_TOKEN = "SWRRELIABILITYAK0042", "rel-swr-secret-Qq1Ww2Ee3Rr4", "rel-swr-token-MIIE-Zz9Xx8Cc7"
SWR_PROJECT = "relproject0042d5e6f7a8b9c0"


def _ncp_secrets(emulator: Emulator, env: Dict[str, str]) -> Tuple[Dict[str, str], List[str]]:
    emulator.credentials = {NCP_KEY: NCP_SECRET}  # type: ignore[attr-defined]
    # the access key is a dlt secret of the source too (and registered for redaction)
    return {**env, "SOURCES__NCP__ACCESS_KEY": NCP_KEY, "SOURCES__NCP__SECRET_KEY": NCP_SECRET}, [NCP_SECRET, NCP_KEY]


def _swr_aksk_secrets(emulator: Emulator, env: Dict[str, str]) -> Tuple[Dict[str, str], List[str]]:
    emulator.credentials = {SWR_KEY: SWR_SECRET}  # type: ignore[attr-defined]
    # AK/SK alone (the demo env's project_id unset): the project variant below adds one
    env = {**env, "SOURCES__SWR__ACCESS_KEY": SWR_KEY, "SOURCES__SWR__SECRET_KEY": SWR_SECRET, "SOURCES__SWR__PROJECT_ID": ""}
    return env, [SWR_SECRET, SWR_KEY]


def _swr_project_secrets(emulator: Emulator, env: Dict[str, str]) -> Tuple[Dict[str, str], List[str]]:
    """AK/SK with `project_id` (sent as the signed `X-Project-Id`; a dlt secret of the source)."""
    env, secrets = _swr_aksk_secrets(emulator, env)
    return {**env, "SOURCES__SWR__PROJECT_ID": SWR_PROJECT}, secrets + [SWR_PROJECT]


def _swr_token_secrets(emulator: Emulator, env: Dict[str, str]) -> Tuple[Dict[str, str], List[str]]:
    emulator.tokens = {SWR_TOKEN: None}  # type: ignore[attr-defined]
    env = {**env, "SOURCES__SWR__ACCESS_KEY": "", "SOURCES__SWR__SECRET_KEY": "", "SOURCES__SWR__AUTH_TOKEN": SWR_TOKEN}
    return env, [SWR_TOKEN]


def _clear_credentials(emulator: Emulator) -> None:
    emulator.credentials = {"OTHERKEY000000000000": "another-secret-000000000000"}  # type: ignore[attr-defined]
    if hasattr(emulator, "tokens"):
        emulator.tokens = {}  # type: ignore[attr-defined]


def _yandex_reject(emulator: Emulator) -> None:
    emulator.service_account_keys.clear()  # type: ignore[attr-defined]
    emulator.oauth_tokens.clear()  # type: ignore[attr-defined]
    emulator._tokens.clear()  # type: ignore[attr-defined]  # issued and static tokens alike


@dataclass(frozen=True)
class OciSourceCase(SourceCase):
    """OCI: the inventory is one a real registry can hold (blobs with bytes), so the digests the
    registry serves are the inventory's own."""

    def inventory(self, seed: int = 1, repositories: int = 4, images: int = 40, **kwargs: Any) -> Inventory:
        from emulators.oci.served import OciInventory

        return OciInventory(seed=seed, registries=self.registries, repositories=repositories, images=images, **kwargs)


def _oci_start(inventory: Inventory, faults: Optional[Faults]) -> Tuple[Emulator, Dict[str, str]]:
    """Debian's docker-registry holding the inventory, behind the fault/hook proxy
    (emulators/oci/served.py); the `registry` column is the inventory's registry name, so that
    loads through two instances (other ports) compare equal."""
    from emulators.oci.served import start_served

    served = start_served(inventory, faults=faults)  # type: ignore[arg-type]
    return served, {"SOURCES__OCI__REGISTRY_URL": served.url, "SOURCES__OCI__REGISTRY_NAME": served.registry}


OCI_USER, OCI_PASSWORD = "rel-oci-user", "rel-oci-password-Ff4Gg5Hh6Jj7"


def _oci_credentials(env: Dict[str, str]) -> Tuple[Dict[str, str], List[str]]:
    from emulators.oci.served import basic_header_value

    env = {**env, "SOURCES__OCI__USERNAME": OCI_USER, "SOURCES__OCI__PASSWORD": OCI_PASSWORD}
    return env, [OCI_PASSWORD, basic_header_value(OCI_USER, OCI_PASSWORD)]


def _oci_basic_secrets(emulator: Emulator, env: Dict[str, str]) -> Tuple[Dict[str, str], List[str]]:
    """username/password as HTTP basic auth (the registry's htpasswd)."""
    emulator.require_basic({OCI_USER: OCI_PASSWORD})  # type: ignore[attr-defined]
    return _oci_credentials(env)


def _oci_token_secrets(emulator: Emulator, env: Dict[str, str]) -> Tuple[Dict[str, str], List[str]]:
    """username/password sent to the bearer-token realm; the tokens it issues are secrets too:
    the token server appends each one to the list the test greps for."""
    env, secrets = _oci_credentials(env)
    emulator.require_token({OCI_USER: OCI_PASSWORD}, issued=secrets)  # type: ignore[attr-defined]
    return env, secrets


CASES: List[SourceCase] = [
    SourceCase(
        "ecr",
        registries=("us-east-1", "eu-west-1"),
        detail_operation="DescribeImages",
        fast_retries={"AWS_PROFILE": "", "AWS_SESSION_TOKEN": "", "AWS_CONFIG_FILE": os.devnull,
                      "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"},
        fault_options={"max_attempts": 12},
        secret_settings=("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),
        use_test_secrets=_ecr_test_secrets,
        secret_variants=(_ecr_profile_secrets, _ecr_process_secrets),
        reject_credentials=lambda emulator: setattr(emulator, "credentials", {"AKIAOTHERKEY00000000": "another-secret-000000000000"}),
    ),
    SourceCase(
        "yandex",
        registries=_yandex_registries(),
        detail_operation="Image.list",
        fast_retries=REST_FAST_RETRIES,
        secret_variants=(_yandex_key_secrets, _yandex_key_file_secrets, _yandex_iam_secrets, _yandex_oauth_secrets),
        starter=_yandex_start,
        reject_credentials=_yandex_reject,
    ),
    SourceCase(
        "ncp",
        registries=("rel-apps", "rel-platform"),
        detail_operation="ListTags",
        fast_retries=REST_FAST_RETRIES,
        secret_variants=(_ncp_secrets,),
        sees_every_manifest=False,  # NCP lists tags: untagged manifests are not in its API
        volatile=("last_updated", "last_updated_raw", "updated_at"),  # the emulator stamps pushes with the wall clock
        reject_credentials=_clear_credentials,
    ),
    SourceCase(
        "swr",
        registries=("namespace", "team-alpha"),
        detail_operation="list_tags",
        fast_retries=REST_FAST_RETRIES,
        secret_variants=(_swr_aksk_secrets, _swr_project_secrets, _swr_token_secrets),
        sees_every_manifest=False,  # SWR lists tags: untagged manifests are not in its API
        volatile=("id", "repo_id"),  # the emulator numbers tags in the order they are first asked for
        reject_credentials=_clear_credentials,
    ),
    OciSourceCase(
        "oci",
        registries=("oci-reliability",),
        detail_operation="get_manifest",  # the proxy's name for GET /v2/<name>/manifests/<digest>
        detail_call="/manifests/",
        fast_retries={**REST_FAST_RETRIES, **{f"SOURCES__OCI__{name}": "" for name in ("USERNAME", "PASSWORD", "REPOSITORIES")}},
        secret_settings=("SOURCES__OCI__PASSWORD",),
        secret_variants=(_oci_basic_secrets, _oci_token_secrets),
        # the Distribution API lists tags: untagged manifests (not children of a tagged index) are invisible
        sees_every_manifest=False,
        reject_credentials=lambda emulator: emulator.reject_credentials(),  # type: ignore[attr-defined]
        starter=_oci_start,
    ),
]


def available() -> List[SourceCase]:
    """The cases whose source has landed in the catalog."""
    return [case for case in CASES if case.provider in PROVIDERS]


def case_ids(cases: List[SourceCase]) -> List[str]:
    return [case.provider for case in cases]
