"""The payment channels a server uses: real adapters, a channel-sim process, or simulators.

:func:`build_channels` makes an adapter per channel from the config: cash
and card are counter channels; WeChat Pay and Alipay are a ``scenic
channel-sim`` process (``--channel-sim-url``, :class:`RemoteChannel`) or
simulators in this process. :func:`open_remote_channels` holds the remote
adapters' connections open while the server runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime

import attrs

from actors.channels import COUNTER_CHANNELS, QR_CHANNELS
from server.channels.adapter import ChannelAdapter
from server.channels.keys import load_or_create_channel_keys
from server.channels.notifier import Notifier, NotifyPolicy
from server.channels.remote import RemoteChannel
from server.channels.simulator import ChannelSimulator, CounterChannel, SimulatedChannel
from server.config import ServerConfig


@attrs.define
class ChannelSet:
    """The payment channels a server uses, by name, and the in-process simulators if any."""

    adapters: dict[str, ChannelAdapter]
    #: the simulators standing in for WeChat Pay and Alipay when they run in-process
    simulators: dict[str, ChannelSimulator] = attrs.field(factory=dict)
    #: how the in-process simulators deliver notifications (duplicates, delays)
    notify_policy: NotifyPolicy = attrs.field(
        factory=lambda: NotifyPolicy(duplicate_rate=0.0, max_delay_s=0.0)
    )
    #: the in-process simulators' notifiers, delivering to this server (started with the
    #: server's background work, :mod:`server.background`)
    notifiers: dict[str, Notifier] = attrs.field(factory=dict)

    def get(self, name: str) -> ChannelAdapter | None:
        """The adapter of channel ``name``, or ``None``."""
        return self.adapters.get(name)


def build_channels(
    config: ServerConfig,
    clock: Callable[[], datetime],
    policy: NotifyPolicy | None = None,
) -> ChannelSet:
    """The channels ``config`` asks for: a channel-sim process, or the in-process simulator."""
    keys = load_or_create_channel_keys(config.channel_keys_path)
    adapters: dict[str, ChannelAdapter] = {name: CounterChannel(name) for name in COUNTER_CHANNELS}
    channels = ChannelSet(adapters)
    if policy is not None:
        channels.notify_policy = policy
    for name in QR_CHANNELS:
        if config.channel_sim_url:
            adapters[name] = RemoteChannel(name, config.channel_sim_url, keys[name], clock)
            continue
        simulator = ChannelSimulator(name, keys[name], clock)
        channels.simulators[name] = simulator
        adapters[name] = SimulatedChannel(simulator)
    return channels


@asynccontextmanager
async def open_remote_channels(channels: ChannelSet) -> AsyncIterator[ChannelSet]:
    """Hold each remote channel's connection (its own nursery) open while the block runs."""
    async with AsyncExitStack() as remotes:
        for adapter in channels.adapters.values():
            if isinstance(adapter, RemoteChannel):
                await remotes.enter_async_context(adapter)
        yield channels
