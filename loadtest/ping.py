"""Round trips per second of ``ping`` on one connection, one at a time and pipelined.

Usage::

    python -m loadtest.ping                       # starts its own server, prints figures
    python -m loadtest.ping --server ws://127.0.0.1:8765 --device ID --token T

With no ``--server`` it starts a fresh ``scenic serve`` (embedded PostgreSQL in
a temporary directory) in a separate process and also reports how long that
cold start took to listen. Traffic goes to loopback only and every loop is
bounded by ``--seconds``.
"""

from __future__ import annotations

import argparse
import sys
import time

import trio

from clients.client import connect


async def one_at_a_time(url: str, device: str, token: str, seconds: float) -> tuple[float, float]:
    """Sequential pings for ``seconds``: (round trips per second, p99 latency in ms)."""
    latencies: list[float] = []
    async with connect(url, device, token) as client:
        stop = time.perf_counter() + seconds
        while time.perf_counter() < stop:
            sent = time.perf_counter()
            await client.request("ping")
            latencies.append(time.perf_counter() - sent)
    return len(latencies) / seconds, _p99_ms(latencies)


async def pipelined(
    url: str, device: str, token: str, seconds: float, window: int
) -> tuple[float, float]:
    """Pings with up to ``window`` in flight for ``seconds``: (per second, p99 ms)."""
    latencies: list[float] = []
    async with connect(url, device, token) as client:
        slots = trio.Semaphore(window)
        stop = time.perf_counter() + seconds

        async def await_reply(pending, sent: float) -> None:
            await pending.wait()
            latencies.append(time.perf_counter() - sent)
            slots.release()

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            while time.perf_counter() < stop:
                await slots.acquire()
                sent = time.perf_counter()
                pending = await client.start_request("ping")
                nursery.start_soon(await_reply, pending, sent)
        elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, _p99_ms(latencies)


def _p99_ms(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[int(len(ordered) * 0.99)] * 1000 if ordered else float("nan")


async def measure(url: str, device: str, token: str, seconds: float, window: int) -> None:
    """Print both figures for the server at ``url``."""
    rate, p99 = await one_at_a_time(url, device, token, seconds)
    print(f"ping one at a time: {rate:,.0f} round trips/s  p99 {p99:.2f} ms")
    rate, p99 = await pipelined(url, device, token, seconds, window)
    print(f"ping pipelined (window {window}): {rate:,.0f} round trips/s  p99 {p99:.2f} ms")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the measurement, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", help="ws:// URL of a running server (loopback)")
    parser.add_argument("--device", help="device id, with --server")
    parser.add_argument("--token", help="device token, with --server")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--window", type=int, default=64)
    args = parser.parse_args(argv)
    if args.server:
        if not (args.device and args.token):
            parser.error("--server needs --device and --token")
        trio.run(measure, args.server, args.device, args.token, args.seconds, args.window)
        return 0
    from loadtest.local_server import local_server

    with local_server({"bench-ping": "kiosk"}) as server:
        print(
            f"cold start of scenic serve (empty data dir, initdb included) to listening: "
            f"{server.seconds_to_listen:.2f} s"
        )
        trio.run(
            measure,
            server.url,
            "bench-ping",
            server.tokens["bench-ping"],
            args.seconds,
            args.window,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
