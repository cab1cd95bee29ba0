"""Configuration from the environment.

`KAFKA_BOOTSTRAP_SERVERS` and `MONGODB_URL` are shared by every service; everything else is
`CRM_<SERVICE>_<NAME>` (for example `CRM_ARCHIVE_HTTP_PORT`). `CRM_API_TOKENS`, the keys
(`CRM_MASTER_KEYS_FILE`...) and the transport security (`KAFKA_SECURITY_PROTOCOL`...) are shared
too: `deploy/SECURITY.md` describes them.

A service's business rules are its domain's plain dataclass, nested in its settings as `rules`:
`CRM_<SERVICE>_RULES__<NAME>` sets one rule (JSON for maps, lists and nested rules), and
`CRM_<SERVICE>_RULES` (a JSON object) several at once.
"""

import dataclasses
import hashlib
import ipaddress
import ssl
import typing
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from crm_contracts.topics import consumed_by
from crm_runtime.crypto import KeyRing

ROLES = ("agent", "supervisor", "ops", "integration")

DEV_TOKEN = "crm-dev-token"
"""The documented token of the local stack (all roles). Never configure it anywhere else."""
LOCAL_STACK_TOKENS = frozenset(
    {DEV_TOKEN, "crm-demo-agent-07", "crm-demo-owner-01", "crm-demo-sup-01"}
)
"""Every token of the local stack (`DEMO_USERS` in `deploy/local/stack.py`): the README
publishes them, so anyone holds them. A service reachable from other hosts refuses them."""


class UnknownTopicsError(SystemExit):
    """`CRM_<SERVICE>_TOPICS` naming a topic its service does not read. A `SystemExit`: the
    process ends at start with this one line on stderr (status 1)."""


class InsecureSettingsError(SystemExit):
    """A setting fit only for a service nobody else can reach, on a service bound beyond
    loopback. A `SystemExit`: the process ends at start with this one line on stderr (status 1),
    no traceback to read through."""


def is_loopback(host: str) -> bool:
    """`localhost`, 127.0.0.0/8 or ::1 (with or without brackets): reachable from this host only.
    `0.0.0.0`, `::`, a name or an address of an interface is not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def refuse_insecure_off_loopback(
    service: str, host_setting: str, host: str, insecure: Sequence[str]
) -> None:
    """Raise `InsecureSettingsError`, one line naming every insecure setting, when there is any
    and the service binds beyond loopback (`host`, set by `host_setting`)."""
    if insecure and not is_loopback(host):
        raise InsecureSettingsError(
            f"crm-{service} refuses to start bound to {host!r} ({host_setting}): "
            + "; ".join(insecure)
            + f". These are fit only for a service bound to loopback ({host_setting}=127.0.0.1)."
        )


class _EnvSource(EnvSettingsSource):
    """The environment, reading into plain (stdlib) dataclasses too.

    pydantic-settings finds the type of a nested name (`RULES__RECENCY_DAYS`) only in pydantic
    models, so without this a tuple, map or set nested in a rules dataclass would arrive as the
    raw string and fail to validate: here its JSON is decoded as it is for a model's field."""

    def next_field(
        self, field: FieldInfo | Any | None, key: str, case_sensitive: bool | None = None
    ) -> FieldInfo | None:
        annotation = field.annotation if isinstance(field, FieldInfo) else field
        if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
            hints = typing.get_type_hints(annotation)
            for name in (f.name for f in dataclasses.fields(annotation)):
                if name == key or (not case_sensitive and name.lower() == key.lower()):
                    return FieldInfo.from_annotation(hints[name])
            return None
        return super().next_field(field, key, case_sensitive)


def _read_by(service: str) -> list[str]:
    """The topics `service` consumes, as the contracts' registry says."""
    return [topic.name for topic in consumed_by(service)]


BatchRecords = Annotated[int, Field(ge=1, le=10_000)]
"""The records a consumer's batch takes at most; a service may declare its own default."""
Consumers = Annotated[int, Field(ge=1, le=8)]
"""Consumers in one process; a service may declare its own default."""


class ServiceSettings(BaseSettings):
    """Settings every service has. A service subclasses it and sets `service` and `env_prefix`."""

    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore")

    service: ClassVar[str] = "service"
    default_http_port: ClassVar[int] = 8080

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
    )
    mongodb_url: str = Field(
        default="mongodb://127.0.0.1:27017",
        validation_alias=AliasChoices("MONGODB_URL", "mongodb_url"),
    )
    database: str = Field(default="", description="Defaults to crm_<service>.")
    http_host: str = "127.0.0.1"
    http_port: int = 0
    log_level: str = "INFO"

    otlp_endpoint: str = Field(
        default="",
        validation_alias=AliasChoices(
            "CRM_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT", "otlp_endpoint"
        ),
        description="OTLP/HTTP collector, e.g. http://otel-collector:4318: spans are exported "
        "only when set (the trace context travels in the events either way).",
    )
    trace_sample_ratio: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        validation_alias=AliasChoices("CRM_TRACE_SAMPLE_RATIO", "trace_sample_ratio"),
        description="Share of new traces recorded (parent-based: a traced cause decides).",
    )

    consumer_group: str = Field(default="", description="Defaults to the service name.")
    batch_max_records: BatchRecords = 500
    batch_timeout_ms: int = Field(default=100, ge=1)
    consumers: Consumers = Field(
        default=1,
        description="Consumers in this process, each in the service's group with partitions of "
        "its own (as a replica's would be), their batches applied side by side. More members "
        "in the group than the partitions it reads leave some without work.",
    )
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    topics: tuple[str, ...] = Field(
        default=(),
        description="The topics this process reads (a JSON list), of those its service consumes "
        "(the contracts' registry); empty: all of them. Replicas that share them out read theirs "
        "in the service's one group, each at a weight of its own: the local stack runs notify "
        "as two (ADR 0028).",
    )

    inbox_retention_s: int = Field(
        default=30 * 24 * 3600,
        ge=3600,
        description="How long the ids of applied events are kept to recognise a redelivery: "
        "longer than any the suite can see (a batch after a crash or rebalance, a dead letter "
        "re-driven within its topic's 14 days).",
    )

    outbox_relay_enabled: bool = True
    outbox_poll_interval_s: float = Field(default=0.5, gt=0)
    outbox_retention_s: int = Field(default=24 * 3600, ge=0)
    outbox_relay_lease_s: float = Field(
        default=10.0,
        gt=0,
        description="One replica's relay publishes at a time (so one customer's events leave in "
        "commit order); another takes over this long after it stops renewing.",
    )
    kafka_compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        default="zstd",
        description="How published events (outbox, dead letters) are compressed; "
        "benchmarks/kafka_codecs.py measured zstd smallest at about the CPU of lz4.",
    )

    http_max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="A larger request body is refused with 413 before it is read.",
    )
    http_max_concurrent_requests: int = Field(
        default=64,
        ge=1,
        description="Requests handled at once; more are answered 503 with Retry-After at once "
        "(health, readiness and metrics are never refused).",
    )

    sweeps_enabled: bool = Field(default=True, description="Run the periodic sweeps.")
    clock_override_enabled: bool = Field(
        default=False,
        description="Let ops run a sweep as of another time (`?at=`): for tests and demos only.",
    )

    retry_initial_s: float = Field(default=0.2, gt=0)
    retry_max_s: float = Field(default=15.0, gt=0)

    # Each grant is read as `Any` and checked by `crm_runtime.auth.Authenticator`, whose messages
    # name a token by its id: a pydantic error would name the plaintext token as its location.
    api_tokens: dict[str, Any] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("CRM_API_TOKENS", "api_tokens"),
        description='JSON: {"<token>": {"user": "agent-07", "roles": ["agent"]}}; or, the '
        'earlier form, {"<token>": ["agent"]} (its user is then the token\'s hash prefix). Kept '
        "only as SHA-256 hashes in memory.",
    )
    api_token_hashes: dict[str, Any] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("CRM_API_TOKEN_HASHES", "api_token_hashes"),
        description='JSON: {"<sha256 hex of token>": {"user": "agent-07", "roles": ["agent"]}} '
        "(or a list of roles): no secret in the environment.",
    )

    master_keys_file: str = Field(
        default="",
        validation_alias=AliasChoices("CRM_MASTER_KEYS_FILE", "master_keys_file"),
        description='A secret file: {"current": id, "keys": {id: base64}, "index_key": base64}.',
    )
    master_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("CRM_MASTER_KEYS", "master_keys"),
        description='JSON {"<key id>": "<base64 of 32 bytes>"}: added to the file\'s keys.',
    )
    master_key_id: str = Field(
        default="",
        validation_alias=AliasChoices("CRM_MASTER_KEY_ID", "master_key_id"),
        description="The master key that wraps new data keys (rotation: set the new id).",
    )
    index_key: SecretStr = Field(
        default=SecretStr(""),
        validation_alias=AliasChoices("CRM_INDEX_KEY", "index_key"),
        description="Base64 of 32 bytes: the key of the phone/email lookup hashes. Never rotate.",
    )

    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        validation_alias=AliasChoices("KAFKA_SECURITY_PROTOCOL", "kafka_security_protocol"),
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = Field(
        default="SCRAM-SHA-512",
        validation_alias=AliasChoices("KAFKA_SASL_MECHANISM", "kafka_sasl_mechanism"),
    )
    kafka_sasl_username: str = Field(
        default="", validation_alias=AliasChoices("KAFKA_SASL_USERNAME", "kafka_sasl_username")
    )
    kafka_sasl_password: SecretStr = Field(
        default=SecretStr(""),
        validation_alias=AliasChoices("KAFKA_SASL_PASSWORD", "kafka_sasl_password"),
    )
    kafka_ssl_cafile: str = Field(
        default="", validation_alias=AliasChoices("KAFKA_SSL_CAFILE", "kafka_ssl_cafile")
    )
    kafka_ssl_certfile: str = Field(
        default="", validation_alias=AliasChoices("KAFKA_SSL_CERTFILE", "kafka_ssl_certfile")
    )
    kafka_ssl_keyfile: str = Field(
        default="", validation_alias=AliasChoices("KAFKA_SSL_KEYFILE", "kafka_ssl_keyfile")
    )
    mongodb_tls_ca_file: str = Field(
        default="",
        validation_alias=AliasChoices("MONGODB_TLS_CA_FILE", "mongodb_tls_ca_file"),
        description="Turns TLS on for MongoDB (or put tls=true&tlsCAFile=... in MONGODB_URL).",
    )
    mongodb_tls_certificate_key_file: str = Field(
        default="",
        validation_alias=AliasChoices(
            "MONGODB_TLS_CERTIFICATE_KEY_FILE", "mongodb_tls_certificate_key_file"
        ),
        description="Client certificate and key (PEM) for x.509 or mutual TLS.",
    )
    mongodb_username: str = Field(
        default="", validation_alias=AliasChoices("MONGODB_USERNAME", "mongodb_username")
    )
    mongodb_password: SecretStr = Field(
        default=SecretStr(""),
        validation_alias=AliasChoices("MONGODB_PASSWORD", "mongodb_password"),
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _EnvSource(settings_cls), dotenv_settings, file_secret_settings

    def insecure_settings(self) -> list[str]:
        """The settings in force that are fit only for a service nobody else can reach, each
        as "<SETTING> <why>". A service adds its own (notify: its webhook secret and SMTP)."""
        found: list[str] = []
        published = sorted(LOCAL_STACK_TOKENS & self.api_tokens.keys())
        if published:
            found.append(
                f"CRM_API_TOKENS holds the local stack's published token(s) {published}: "
                "anyone may present them"
            )
        hashes = {hashlib.sha256(token.encode()).hexdigest() for token in LOCAL_STACK_TOKENS}
        if hashes & {digest.lower() for digest in self.api_token_hashes}:
            found.append(
                "CRM_API_TOKEN_HASHES holds the hash of a local stack's published token: "
                "anyone may present it"
            )
        return found

    def refuse_insecure_off_loopback(self) -> None:
        """At start (`Runtime`): refuse (`InsecureSettingsError`) the `insecure_settings` unless
        the service binds to loopback only; `make up`, `make demo` and the tests do."""
        prefix = str(self.model_config.get("env_prefix", "CRM_")).upper()
        refuse_insecure_off_loopback(
            self.service, f"{prefix}HTTP_HOST", self.http_host, self.insecure_settings()
        )

    def consumed_topics(self) -> list[str]:
        """The topics this process reads: those of `topics`, else all its service consumes, in
        the registry's order."""
        return [name for name in _read_by(self.service) if not self.topics or name in self.topics]

    def key_ring(self) -> KeyRing:
        return KeyRing.from_config(
            keys={name: key.get_secret_value() for name, key in self.master_keys.items()},
            current=self.master_key_id,
            index_key=self.index_key.get_secret_value(),
            keys_file=self.master_keys_file,
        )

    def kafka_ssl_context(self) -> ssl.SSLContext | None:
        if self.kafka_security_protocol not in ("SSL", "SASL_SSL"):
            return None
        context = ssl.create_default_context(cafile=self.kafka_ssl_cafile or None)
        if self.kafka_ssl_certfile:
            context.load_cert_chain(self.kafka_ssl_certfile, self.kafka_ssl_keyfile or None)
        return context

    def kafka_client_options(self) -> dict[str, Any]:
        """Security options for a plain aiokafka client (the CLIs, the rebuild)."""
        options: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        context = self.kafka_ssl_context()
        if context is not None:
            options["ssl_context"] = context
        if self.kafka_security_protocol.startswith("SASL"):
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            options["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        return options

    def mongodb_options(self) -> dict[str, Any]:
        """TLS and credentials for MongoDB beside what `MONGODB_URL` says."""
        options: dict[str, Any] = {}
        if self.mongodb_tls_ca_file:
            options["tls"] = True
            options["tlsCAFile"] = self.mongodb_tls_ca_file
        if self.mongodb_tls_certificate_key_file:
            options["tls"] = True
            options["tlsCertificateKeyFile"] = self.mongodb_tls_certificate_key_file
        if self.mongodb_username:
            options["username"] = self.mongodb_username
            options["password"] = self.mongodb_password.get_secret_value()
        return options

    def model_post_init(self, context: Any) -> None:
        if not self.database:
            self.database = f"crm_{self.service}"
        if not self.consumer_group:
            self.consumer_group = self.service
        consumed = _read_by(self.service)
        unknown = [name for name in self.topics if name not in consumed]
        if unknown:
            prefix = str(self.model_config.get("env_prefix", "CRM_")).upper()
            raise UnknownTopicsError(
                f"{prefix}TOPICS names {', '.join(map(repr, unknown))}: crm-{self.service} reads "
                f"only {', '.join(consumed) or 'no topic'}"
            )
        if not self.http_port:
            self.http_port = self.default_http_port
