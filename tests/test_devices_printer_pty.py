"""The receipt printer driver against the simulated printer over real pseudo-terminals."""

import signal
import subprocess
from datetime import UTC, datetime

import pytest
import trio

from devices.printer.escpos_driver import (
    PrinterOffline,
    PrinterOutOfPaper,
    PrinterTimeout,
    PrinterUnavailable,
    ReceiptPrinter,
)
from devices.printer.receipts import Line, QrCode, Receipt, printer_test_receipt, sale_receipt
from devices.printer.simulated import PrinterSimulator
from devices.printer.wire import encode_receipt
from loadtest.local_server import scenic_command
from tests.test_devices_printer import AT, CATALOG, ORDER

STATUS = b"\x10\x04\x01"
SMALL = Receipt("sale", [Line("票 Ticket", "center", bold=True), QrCode("T-1")])
SMALL_DOCUMENTED = bytes.fromhex(
    "1b 40 1d 21 00 1b 45 01 1b 61 01 1c 26 c6 b1 20 54 69 63 6b 65 74 1c 2e 0a 1b 61 01"
    " 1d 28 6b 04 00 31 41 32 00 1d 28 6b 03 00 31 43 06 1d 28 6b 03 00 31 45 31"
    " 1d 28 6b 06 00 31 50 30 54 2d 31 1d 28 6b 03 00 31 51 30 1b 64 06 1d 56 00"
)


async def test_a_small_receipt_arrives_as_the_documented_bytes_after_a_status_question():
    with trio.fail_after(10):
        async with PrinterSimulator() as sim:
            with ReceiptPrinter.open(sim.port) as printer:
                await printer.print_receipt_async(SMALL)
            await sim.wait_for_cuts(1)
    assert bytes(sim.received) == STATUS + SMALL_DOCUMENTED
    assert sim.status_queries == [1]
    assert sim.receipts() == [
        ["[center bold] 票 Ticket", "[qr] T-1", "[feed 6]", "[cut]"],
    ]


async def test_a_sale_receipt_prints_in_chinese_with_each_ticket_code_as_a_qr_through_the_pty():
    receipt = sale_receipt(ORDER, CATALOG, printed_at=AT)
    shown = []
    with trio.fail_after(10):
        async with PrinterSimulator(on_line=shown.append) as sim:
            with ReceiptPrinter.open(sim.port) as printer:
                await printer.print_receipt_async(receipt)
                await printer.print_receipt_async(receipt)
            await sim.wait_for_cuts(2)
    assert bytes(sim.received) == (STATUS + encode_receipt(receipt)) * 2
    first, second = sim.receipts()
    assert first == second == shown[: len(first)]
    assert "[center bold 2x2] 西湖风景名胜区" in first
    assert "支付方式                微信支付" in first
    assert [line for line in first if line.startswith("[qr]")] == [
        f"[qr] {ticket['code']}" for ticket in ORDER["tickets"] if not ticket["refunded"]
    ]


async def test_out_of_paper_is_one_clear_line_nothing_is_sent_and_a_new_roll_prints_again():
    with trio.fail_after(10):
        async with PrinterSimulator() as sim:
            sim.paper_out()
            with ReceiptPrinter.open(sim.port) as printer:
                with pytest.raises(PrinterOutOfPaper) as out:
                    await printer.print_receipt_async(SMALL)
                assert bytes(sim.received) == b"\x10\x04\x01\x10\x04\x04"  # asked, sent nothing
                sim.load_paper()
                await printer.print_receipt_async(SMALL)
            await sim.wait_for_cuts(1)
    assert out.value.message == (
        f"the printer at {sim.port} is out of paper: load a new roll and print again"
    )
    assert "\n" not in str(out.value) and not out.value.may_have_acted
    assert sim.receipts() == [["[center bold] 票 Ticket", "[qr] T-1", "[feed 6]", "[cut]"]]


async def test_a_printer_that_does_not_answer_is_offline_within_the_status_timeout():
    with trio.fail_after(10):
        async with PrinterSimulator() as sim:
            sim.stall()
            with ReceiptPrinter.open(sim.port, status_timeout_s=0.3) as printer:
                with pytest.raises(PrinterOffline) as offline:
                    await printer.print_receipt_async(SMALL)
            sim.resume()
    assert offline.value.message == (
        f"the printer at {sim.port} does not answer (no status within 0.3 s):"
        " is it switched on and online?"
    )
    assert sim.cuts == 0


async def test_a_printer_that_stops_reading_mid_receipt_times_out_instead_of_hanging():
    huge = Receipt("test", [Line("票" * 15)] * 20_000)  # far more than a pty buffers
    with trio.fail_after(20):
        async with PrinterSimulator() as sim:
            sim.stall()
            with ReceiptPrinter.open(sim.port, write_timeout_s=0.5, check_status=False) as printer:
                with pytest.raises(PrinterTimeout) as timed_out:
                    await printer.print_receipt_async(huge)
                sim.resume()
    assert timed_out.value.may_have_acted
    assert "stopped taking the receipt for 0.5 s" in timed_out.value.message


async def test_an_unplugged_printer_is_one_line_and_is_opened_again_on_the_next_receipt():
    with trio.fail_after(10):
        async with PrinterSimulator() as sim:
            printer = ReceiptPrinter.open(sim.port)
            with printer:
                await printer.print_receipt_async(SMALL)
                await sim.wait_for_cuts(1)
                old_port = sim.port
                sim.unplug()
                with pytest.raises(PrinterUnavailable) as gone:
                    await printer.print_receipt_async(SMALL)
                await trio.sleep(0.1)  # the pty is closed by the simulator's task
                with pytest.raises(PrinterUnavailable) as missing:
                    await printer.print_receipt_async(SMALL)
    assert gone.value.message == (
        f"the printer at {old_port} is gone (unplugged or switched off): plug it in,"
        " switch it on, then print again"
    )
    assert missing.value.message.startswith(f"no printer at {old_port}: check the cable")


async def test_given_a_path_function_the_printer_follows_the_simulator_to_its_new_port():
    with trio.fail_after(10):
        async with PrinterSimulator() as sim:
            with ReceiptPrinter.open(lambda: sim.port) as printer:
                await printer.print_receipt_async(SMALL)
                await sim.wait_for_cuts(1)
                sim.unplug()
                with pytest.raises(PrinterUnavailable):
                    await printer.print_receipt_async(SMALL)
                sim.replug()
                await printer.print_receipt_async(SMALL)
                await sim.wait_for_cuts(2)
                assert printer.path == sim.port
    assert sim.receipts()[0] == sim.receipts()[1]


async def test_printing_to_a_file_writes_the_same_bytes_or_the_simulators_text(tmp_path):
    receipt = printer_test_receipt(printed_at=datetime(2026, 10, 1, 1, 5, tzinfo=UTC))
    raw, text = tmp_path / "receipts.bin", tmp_path / "receipts.txt"
    with ReceiptPrinter.open(raw) as printer:
        printer.print_receipt(receipt)
        printer.print_receipt(receipt)
    with ReceiptPrinter.open(text, readable=True) as printer:
        await printer.print_receipt_async(receipt)
    with trio.fail_after(10):
        async with PrinterSimulator() as sim:
            with ReceiptPrinter.open(sim.port) as printer:
                await printer.print_receipt_async(receipt)
            await sim.wait_for_cuts(1)
    assert raw.read_bytes() == encode_receipt(receipt) * 2
    assert text.read_text().splitlines() == sim.receipts()[0]
    assert "[qr] T-PRINT-TEST" in sim.receipts()[0]


def test_a_file_that_cannot_be_written_is_one_line(tmp_path):
    with pytest.raises(PrinterUnavailable, match=r"cannot write to .*: Is a directory"):
        ReceiptPrinter.open(tmp_path)
    with pytest.raises(ValueError, match="readable=True is for a file"):
        ReceiptPrinter.open("/dev/ttyS0", readable=True)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def test_scenic_printer_sim_shows_what_scenic_print_test_prints_and_ctrl_c_exits_130():
    process = await trio.lowlevel.open_process(
        scenic_command("printer-sim"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_default_sigint,
    )
    out = b""
    with trio.fail_after(60):
        while b"\n" not in out:
            out += await process.stdout.receive_some()
        port = out.decode().splitlines()[0].removeprefix("printer-sim: port ")
        printed = await trio.run_process(
            scenic_command("print-test", "--port", port), capture_stdout=True, check=False
        )
        while b"[cut]" not in out:
            out += await process.stdout.receive_some()
        process.send_signal(signal.SIGINT)
        while chunk := await process.stdout.receive_some():
            out += chunk
        err = await process.stderr.receive_some()
        status = await process.wait()
    lines = out.decode().splitlines()
    assert printed.returncode == 0
    assert printed.stdout.decode() == f"print-test: a test receipt went to {port}\n"
    assert lines[1] == "[center bold 2x2] 打印测试 Printer"
    assert "[qr] T-PRINT-TEST" in lines and "[barcode CODE128] PRINT-TEST-01" in lines
    assert lines[-1] == "[cut]"
    assert (status, err) == (130, b"")


async def test_scenic_print_test_with_no_printer_says_so_in_one_line_and_exits_1():
    with trio.fail_after(60):
        result = await trio.run_process(
            scenic_command("print-test", "--port", "/dev/ttyNO-SUCH-PRINTER"),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 1 and result.stdout == b""
    assert result.stderr.decode() == (
        "scenic print-test: no printer at /dev/ttyNO-SUCH-PRINTER: check the cable and the port"
        " name (a /dev/serial/by-id/... name stays the same across replugs)\n"
    )


async def test_scenic_print_test_on_a_printer_out_of_paper_is_one_line_on_stderr_and_exit_1():
    with trio.fail_after(60):
        async with PrinterSimulator() as sim:
            sim.paper_out()
            result = await trio.run_process(
                scenic_command("print-test", "--port", sim.port),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    assert result.returncode == 1 and result.stdout == b""
    assert result.stderr.decode() == (
        f"scenic print-test: the printer at {sim.port} is out of paper: load a new roll and"
        " print again\n"
    )
    assert sim.cuts == 0
