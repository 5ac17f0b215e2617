"""What a device driver raises when the device does not do what was asked.

Every driver error is a :class:`DeviceError`, so a caller (the gate agent) can
catch them all in one place and carry on: a device problem is reported, it never
takes the gate agent down. Each carries a stable machine ``code`` like the
server's errors do.
"""

from __future__ import annotations


class DeviceError(Exception):
    """A device did not carry out a request; ``code`` says why, ``device`` which one.

    ``may_have_acted`` says whether the device may have carried the request
    out all the same (it got the request, and only its answer is missing).
    """

    code: str = "device_error"

    def __init__(self, device: str, message: str, *, may_have_acted: bool = False) -> None:
        super().__init__(f"{device}: {message}")
        self.device = device
        self.message = message
        self.may_have_acted = may_have_acted


class DeviceUnplugged(DeviceError):
    """The port is gone (end of file, I/O error, hangup) or is not open right now.

    The driver reopens the port by itself; a request that raised this may be
    tried again once the device is back. ``may_have_acted`` is true when the
    request had been written before the port died.
    """

    code = "device_unplugged"


class DeviceTimeout(DeviceError):
    """The device did not acknowledge a request in time, even after retries.

    The request may or may not have been carried out: the acknowledgement may
    be what got lost (``may_have_acted`` is always true).
    """

    code = "device_timeout"

    def __init__(self, device: str, message: str) -> None:
        super().__init__(device, message, may_have_acted=True)


class DeviceRefused(DeviceError):
    """The device answered a request with a refusal; ``reason`` says why (e.g. ``locked``)."""

    code = "device_refused"

    def __init__(self, device: str, message: str, *, reason: str) -> None:
        super().__init__(device, message)
        self.reason = reason
