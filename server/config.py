"""The server's configuration: one place, defaults that work out of the box.

Each setting has a default, an environment variable ``SCENIC_<NAME>`` and a
command-line flag ``--<name>`` (flags win over the environment, the environment
over the default). :func:`ServerConfig.from_env` reads the environment; the CLI
layers its flags on top with :func:`attrs.evolve`.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import platformdirs

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_MAX_FRAME_BYTES = 64 * 1024


def default_data_dir() -> Path:
    """The per-user data directory that holds the embedded PostgreSQL cluster."""
    return Path(platformdirs.user_data_dir("scenic-gate", appauthor=False))


@attrs.frozen
class ServerConfig:
    """Everything ``scenic serve`` needs to know, with working defaults."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    #: a PostgreSQL DSN; ``None`` starts the embedded cluster in ``data_dir``
    dsn: str | None = None
    data_dir: Path = attrs.field(factory=default_data_dir, converter=Path)
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    #: bad frames a connection may send before it is disconnected
    max_bad_frames: int = 32
    #: requests one connection may have in flight at once
    max_in_flight: int = 256
    #: seconds an in-flight request may still run after shutdown begins
    shutdown_grace_s: float = 10.0
    #: seconds a client has to complete the websocket handshake after its TCP connect
    handshake_timeout_s: float = 10.0
    #: seconds a client has to send ``hello`` after connecting
    hello_timeout_s: float = 10.0
    #: seconds an actor's ``ask`` may take before the request gets ``timeout``
    ask_timeout_s: float = 5.0
    #: seconds without a message after which an actor is passivated
    actor_idle_s: float = 300.0
    #: capacity of each actor's mailbox
    mailbox_size: int = 1024
    #: the longest a write waits for its group commit batch, in seconds
    commit_delay_s: float = 0.002
    #: the most writes one group commit batch takes
    commit_max_batch: int = 512
    #: seconds an unpaid order holds its capacity before it expires
    order_ttl_s: float = 900.0
    #: load the demo park's catalog at start when no catalog has been loaded
    demo: bool = False
    #: the API of a ``scenic channel-sim`` process standing in for WeChat Pay and
    #: Alipay; ``None`` runs the simulator inside the server
    channel_sim_url: str | None = None
    #: the merchant keys shared with the channels (default: in ``data_dir``)
    channel_keys: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    #: seconds the outbox worker sleeps when nothing is due
    outbox_poll_s: float = 1.0
    #: server processes sharing the port (``scenic serve --workers N``)
    workers: int = 1
    #: bind with SO_REUSEPORT, beside the other workers (set by the launcher)
    reuse_port: bool = False
    db_pool_min: int = 2
    db_pool_max: int = 8
    log_level: str = "INFO"

    @property
    def channel_keys_path(self) -> Path:
        """Where the merchant keys shared with the payment channels live."""
        return self.channel_keys or self.data_dir / "channel_keys.json"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServerConfig:
        """Build a config from ``SCENIC_*`` environment variables over the defaults.

        Raises ``ValueError`` naming the variable when one cannot be parsed.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in attrs.fields(cls):
            raw = environ.get("SCENIC_" + field.name.upper())
            if raw is None:
                continue
            values[field.name] = _parse(field, raw)
        return cls(**values)


def _parse(field: attrs.Attribute, raw: str) -> object:
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError
            return raw.lower() in ("1", "true", "yes")
    except ValueError:
        raise ValueError(f"SCENIC_{field.name.upper()}={raw!r} is not a {kind}") from None
    return raw
