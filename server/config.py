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
#: the log levels ``--log-level`` and ``SCENIC_LOG_LEVEL`` take (any case)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: settings whose value must be at least this much
_MINIMUM = {
    "workers": 1,
    "max_frame_bytes": 1,
    "max_bad_frames": 1,
    "max_in_flight": 1,
    "mailbox_size": 1,
    "commit_max_batch": 1,
    "db_pool_min": 1,
    "db_pool_max": 1,
}


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
    #: seconds a refund may wait for its channel's confirmation before ``scenic audit``
    #: names it
    refund_bound_s: float = 600.0
    #: server processes sharing the port (``scenic serve --workers N``)
    workers: int = 1
    #: bind with SO_REUSEPORT, beside the other workers (set by the launcher)
    reuse_port: bool = False
    db_pool_min: int = 2
    db_pool_max: int = 8
    log_level: str = "INFO"
    #: serve Prometheus metrics on this port (``None``: off; 0: any free port)
    metrics_port: int | None = None
    #: the address the metrics endpoint listens on
    metrics_host: str = "127.0.0.1"
    #: the daily reconciliation's time, ``HH:MM`` site time (``off``: no daily run)
    recon_at: str = "10:30"
    #: ``HH:MM`` Beijing time the day after a business date when the channels' bills are ready
    recon_bill_ready: str = "10:00"
    #: seconds around midnight in which an unmatched record waits for the next day's bill
    recon_scratch_s: float = 1800.0

    @property
    def channel_keys_path(self) -> Path:
        """Where the merchant keys shared with the payment channels live."""
        return self.channel_keys or self.data_dir / "channel_keys.json"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServerConfig:
        """Build a config from ``SCENIC_*`` environment variables over the defaults.

        Raises ``ValueError`` with one line naming the variable, what is wrong
        with its value and what to do, when one cannot be parsed or is out of
        range (see :func:`setting_problem`).
        """
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in attrs.fields(cls):
            name = "SCENIC_" + field.name.upper()
            raw = environ.get(name)
            if raw is None:
                continue
            value = _parse(field, raw)
            problem = setting_problem(field.name, value)
            if problem is not None:
                raise ValueError(f"{name}={raw!r} cannot be used: {problem}; fix it or unset it")
            values[field.name] = value
        return cls(**values)


def setting_problem(name: str, value: object) -> str | None:
    """The rule ``value`` breaks for the setting ``name``, or ``None`` when it is usable.

    >>> setting_problem("port", 99999)
    'a port number is 0-65535 (0 picks a free port)'
    """
    if name in ("port", "metrics_port") and not 0 <= value <= 65535:
        return "a port number is 0-65535 (0 picks a free port)"
    if name == "log_level" and str(value).upper() not in LOG_LEVELS:
        return f"the log level is one of {', '.join(LOG_LEVELS)}"
    if name in ("recon_at", "recon_bill_ready") and not _is_clock_time(
        str(value), allow_off=name == "recon_at"
    ):
        off = " or off" if name == "recon_at" else ""
        return f"it is a time of day as HH:MM (00:00 to 23:59){off}"
    minimum = _MINIMUM.get(name)
    if minimum is not None and value < minimum:
        return f"the least is {minimum}"
    if isinstance(value, float) and not value >= 0:  # also refuses nan
        return "it is a number of seconds, 0 or more"
    return None


def _is_clock_time(text: str, *, allow_off: bool) -> bool:
    if allow_off and text == "off":
        return True
    hours, colon, minutes = text.partition(":")
    return (
        bool(colon)
        and len(hours) == len(minutes) == 2
        and hours.isdigit()
        and minutes.isdigit()
        and int(hours) < 24
        and int(minutes) < 60
    )


def _parse(field: attrs.Attribute, raw: str) -> object:
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    name = f"SCENIC_{field.name.upper()}"
    try:
        if kind in ("int", "int | None"):
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        what = "a whole number" if kind == "int" else "a number"
        rule = " (a port number is 0-65535, 0 picks a free port)" if field.name == "port" else ""
        raise ValueError(f"{name}={raw!r} is not {what}{rule}; fix it or unset it") from None
    if kind == "bool":
        if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise ValueError(
                f"{name}={raw!r} is not a yes or no; set it to 1, 0, true, false, yes or no"
            )
        return raw.lower() in ("1", "true", "yes")
    return raw
