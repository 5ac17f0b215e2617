"""The receipt printer driver: a serial ESC/POS printer (python-escpos over pyserial), or a file.

::

    with ReceiptPrinter.open("/dev/serial/by-id/usb-...") as printer:
        printer.print_receipt(sale_receipt(order, catalog, printed_at=now))

    # from trio (the counter): the same, in a worker thread
    await printer.print_receipt_async(receipt)

:meth:`ReceiptPrinter.open` takes a serial port (a path under ``/dev/`` or
any character device) or a file. A file gets the same bytes a printer would,
appended, or with ``readable=True`` the text the simulated printer shows
(:func:`devices.printer.decoder.readable`), one line each.

On a serial port (9600 8N1 by default, no flow control) each receipt is:

1. a status check (unless ``check_status=False``, for a printer wired to
   send nothing back): ``DLE EOT 1``; the answer must come within
   ``status_timeout_s`` (1 s) and say online; if it says offline, ``DLE EOT
   4`` tells whether the paper ran out;
2. the receipt's bytes (:func:`devices.printer.wire.encode_receipt`), in one
   write that must be taken, and drained from the port's output queue,
   within ``write_timeout_s`` (5 s; a receipt of 2 KB takes about 2 s at
   9600 baud).

So :meth:`ReceiptPrinter.print_receipt` returns or raises within
``2 * status_timeout_s + write_timeout_s``. Every failure is a
:class:`PrinterError` (a :class:`devices.errors.DeviceError`) whose message
is one line saying what is wrong and what to do:

- :class:`PrinterUnavailable`: the port cannot be opened, or died (unplugged,
  I/O error). The port is closed; the next print opens it again, so a
  printer plugged back in is found.
- :class:`PrinterOffline`: no answer to the status query, or the printer says
  it is offline (cover open, an error). Nothing of the receipt was sent.
- :class:`PrinterOutOfPaper`: the printer says the paper ran out. Nothing was sent.
- :class:`PrinterTimeout`: the receipt was not taken in time (the printer
  stopped reading): part of it may be printed (``may_have_acted``); what was
  still queued is discarded, so the next receipt starts clean.

python-escpos's ``Serial`` printer opens the port; its ``close()`` is not
used because it drains the port with no time limit (``tcdrain``), which
hangs on a printer that stopped reading.
"""

from __future__ import annotations

import logging
import os
import stat
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Self

import serial
import trio
from escpos.constants import RT_MASK_NOPAPER, RT_STATUS_ONLINE, RT_STATUS_PAPER
from escpos.exceptions import DeviceNotFoundError
from escpos.printer import Serial as EscposSerial

from devices.errors import DeviceError
from devices.printer.decoder import decode_readable
from devices.printer.receipts import Receipt
from devices.printer.wire import encode_receipt

log = logging.getLogger("scenic.devices.printer")

WRITE_TIMEOUT_S = 5.0
STATUS_TIMEOUT_S = 1.0
_OFFLINE_BIT = 0x08  # DLE EOT 1, bit 3: offline
#: what pyserial raises when the port died (termios.error is not an OSError)
_PORT_ERRORS = (serial.SerialException, OSError, termios.error)


class PrinterError(DeviceError):
    """The printer did not print a receipt; the message is one line for a person."""

    code = "printer_error"

    def __init__(self, message: str, *, may_have_acted: bool = False) -> None:
        super().__init__("printer", message, may_have_acted=may_have_acted)


class PrinterUnavailable(PrinterError):
    """The port cannot be opened, or it died; the next print tries to open it again."""

    code = "printer_unavailable"


class PrinterOffline(PrinterError):
    """The printer does not answer its status, or says it is offline; nothing was sent."""

    code = "printer_offline"


class PrinterOutOfPaper(PrinterOffline):
    """The printer says its paper ran out; nothing was sent."""

    code = "printer_out_of_paper"


class PrinterTimeout(PrinterError):
    """The receipt was not taken within the write timeout; part of it may be printed."""

    code = "printer_timeout"

    def __init__(self, message: str) -> None:
        super().__init__(message, may_have_acted=True)


def is_serial_path(path: str) -> bool:
    """Whether ``path`` names a serial port (under ``/dev/``, or a character device)."""
    if path.startswith("/dev/"):
        return True
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


class ReceiptPrinter:
    """A receipt printer on a serial port, or a file that receives what it would print.

    Made by :meth:`open`. One receipt at a time: calls from several threads
    are serialised. Use as a context manager, or call :meth:`close`.
    :attr:`path` is the port or the file (for a path function, the path of
    the latest open attempt).
    """

    def __init__(
        self,
        path: str | Callable[[], str],
        *,
        readable: bool = False,
        baudrate: int = 9600,
        write_timeout_s: float = WRITE_TIMEOUT_S,
        status_timeout_s: float = STATUS_TIMEOUT_S,
        check_status: bool = True,
    ) -> None:
        self._path_source = path
        self.path = path() if callable(path) else path
        self.serial = callable(path) or is_serial_path(self.path)
        if self.serial and readable:
            raise ValueError("readable=True is for a file; a serial printer gets ESC/POS bytes")
        self.readable = readable
        self.baudrate = baudrate
        self.write_timeout_s = write_timeout_s
        self.status_timeout_s = status_timeout_s
        self.check_status = check_status
        self._lock = threading.Lock()
        self._escpos: EscposSerial | None = None
        self._file: IO[bytes] | None = None
        self._closed = False

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | Callable[[], str],
        *,
        readable: bool = False,
        baudrate: int = 9600,
        write_timeout_s: float = WRITE_TIMEOUT_S,
        status_timeout_s: float = STATUS_TIMEOUT_S,
        check_status: bool = True,
    ) -> Self:
        """Open the printer at ``path`` (a serial port) or the file ``path`` (appended to).

        ``path`` may be a function returning a serial port's current path,
        called at every open, as the gate drivers take it (a simulator after
        ``replug()``: ``lambda: sim.port``).

        Raises :class:`PrinterUnavailable` when the port or the file cannot be
        opened, ValueError for ``readable`` on a serial port. It does not
        talk to the printer: the status is asked before each receipt.
        """
        printer = cls(
            path if callable(path) else os.fspath(path),
            readable=readable,
            baudrate=baudrate,
            write_timeout_s=write_timeout_s,
            status_timeout_s=status_timeout_s,
            check_status=check_status,
        )
        with printer._lock:
            printer._ensure_open()
        return printer

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def print_receipt(self, receipt: Receipt) -> None:
        """Print ``receipt`` and cut the paper; raises a :class:`PrinterError` (see the module).

        Blocks for at most ``2 * status_timeout_s + write_timeout_s``; from an
        event loop use :meth:`print_receipt_async`.
        """
        self.print_bytes(encode_receipt(receipt))

    async def print_receipt_async(self, receipt: Receipt) -> None:
        """:meth:`print_receipt` in a trio worker thread, so the event loop goes on.

        A cancelled caller stops waiting at once; the receipt in progress
        finishes or fails within its timeouts in the thread.
        """
        data = encode_receipt(receipt)
        await trio.to_thread.run_sync(self.print_bytes, data, abandon_on_cancel=True)

    def print_bytes(self, data: bytes) -> None:
        """Send ESC/POS ``data`` as it is (a file with ``readable`` gets its readable text)."""
        with self._lock:
            if self._closed:
                raise PrinterUnavailable(f"the printer at {self.path} was closed")
            self._ensure_open()
            if self._file is not None:
                self._write_file(data)
                return
            try:
                if self.check_status:
                    self._check_status()
                self._write(data)
            except PrinterUnavailable:
                self._drop_port()
                raise

    def close(self) -> None:
        """Close the port or the file. Output still queued gets ``write_timeout_s`` to drain."""
        with self._lock:
            self._closed = True
            if self._file is not None:
                self._file.close()
                self._file = None
            if self._escpos is not None:
                self._drain(discard_after=True)
                self._drop_port()

    # -- the port --------------------------------------------------------------------------

    def _ensure_open(self) -> None:
        if not self.serial:
            if self._file is None:
                try:
                    self._file = Path(self.path).open("ab")  # noqa: SIM115 - held until close()
                except OSError as exc:
                    raise PrinterUnavailable(
                        f"cannot write to {self.path}: {exc.strerror}; give a writable file"
                    ) from exc
            return
        if self._escpos is not None:
            return
        if callable(self._path_source):
            self.path = self._path_source()
        printer = EscposSerial(
            devfile=self.path,
            baudrate=self.baudrate,
            timeout=self.status_timeout_s,
            xonxoff=False,
            dsrdtr=False,
        )
        try:
            printer.open()
        except DeviceNotFoundError as exc:
            printer._device = False  # nothing to close (and python-escpos's close would drain)
            raise PrinterUnavailable(
                f"no printer at {self.path}: check the cable and the port name"
                " (a /dev/serial/by-id/... name stays the same across replugs)"
            ) from exc
        device = printer.device
        device.write_timeout = self.write_timeout_s
        self._escpos = printer
        log.info("printer.opened", extra={"port": self.path})

    def _device(self) -> serial.Serial:
        assert self._escpos is not None
        return self._escpos.device

    def _drop_port(self) -> None:
        printer, self._escpos = self._escpos, None
        if printer is None:
            return
        device, printer._device = printer._device, False  # python-escpos's close() is not used
        try:
            device.close()
        except _PORT_ERRORS:
            pass

    def _gone(self, exc: Exception) -> PrinterUnavailable:
        log.warning("printer.unplugged", extra={"port": self.path, "error": str(exc)})
        return PrinterUnavailable(
            f"the printer at {self.path} is gone (unplugged or switched off): plug it in,"
            " switch it on, then print again"
        )

    def _query(self, command: bytes) -> int | None:
        """Send a ``DLE EOT n`` and return the status byte, or None after the status timeout.

        Asking and waiting for the answer together take at most ``status_timeout_s``.
        """
        device = self._device()
        deadline = time.monotonic() + self.status_timeout_s
        try:
            device.reset_input_buffer()
            device.write_timeout = self.status_timeout_s
            try:
                device.write(command)
            finally:
                device.write_timeout = self.write_timeout_s
            device.timeout = max(deadline - time.monotonic(), 0.001)
            answer = device.read(1)
        except serial.SerialTimeoutException as exc:
            raise PrinterOffline(
                f"the printer at {self.path} does not take commands: is it switched on?"
            ) from exc
        except _PORT_ERRORS as exc:
            raise self._gone(exc) from exc
        return answer[0] if answer else None

    def _check_status(self) -> None:
        status = self._query(RT_STATUS_ONLINE)
        if status is None:
            raise PrinterOffline(
                f"the printer at {self.path} does not answer (no status within"
                f" {self.status_timeout_s:g} s): is it switched on and online?"
            )
        if not status & _OFFLINE_BIT:
            return
        paper = self._query(RT_STATUS_PAPER)
        if paper is not None and paper & RT_MASK_NOPAPER == RT_MASK_NOPAPER:
            raise PrinterOutOfPaper(
                f"the printer at {self.path} is out of paper: load a new roll and print again"
            )
        raise PrinterOffline(
            f"the printer at {self.path} is offline: close its cover, clear any error"
            " light, then print again"
        )

    def _write(self, data: bytes) -> None:
        started = time.monotonic()
        try:
            assert self._escpos is not None
            self._escpos._raw(data)  # pyserial's write, bounded by write_timeout
        except serial.SerialTimeoutException as exc:
            self._discard()
            raise self._timed_out() from exc
        except _PORT_ERRORS as exc:
            raise self._gone(exc) from exc
        left = self.write_timeout_s - (time.monotonic() - started)
        if not self._drain(within_s=left, discard_after=True):
            raise self._timed_out()

    def _timed_out(self) -> PrinterTimeout:
        log.warning("printer.write_timeout", extra={"port": self.path})
        return PrinterTimeout(
            f"the printer at {self.path} stopped taking the receipt for"
            f" {self.write_timeout_s:g} s (paper jam, cover open?): check it, then print again;"
            " part of this receipt may have printed"
        )

    def _drain(self, *, within_s: float | None = None, discard_after: bool) -> bool:
        """Wait until the port's output queue is empty, at most ``within_s``; whether it is."""
        deadline = time.monotonic() + (self.write_timeout_s if within_s is None else within_s)
        try:
            while self._device().out_waiting:
                if time.monotonic() >= deadline:
                    if discard_after:
                        self._discard()
                    return False
                time.sleep(0.01)
        except _PORT_ERRORS:
            return False
        return True

    def _discard(self) -> None:
        try:
            self._device().reset_output_buffer()
        except _PORT_ERRORS:
            pass

    # -- a file ----------------------------------------------------------------------------

    def _write_file(self, data: bytes) -> None:
        assert self._file is not None
        if self.readable:
            data = "".join(f"{line}\n" for line in decode_readable(data)).encode("utf-8")
        try:
            self._file.write(data)
            self._file.flush()
        except OSError as exc:
            raise PrinterUnavailable(
                f"cannot write to {self.path}: {exc.strerror}; free space or give another file"
            ) from exc
