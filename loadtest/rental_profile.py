"""The ``[rentals]`` table of a load test profile: who rents what, when, how they pay and misbehave.

The run stands for one day at the resort, compressed: ``day`` gives the
hours it opens and closes (local time), and an hour of that day maps
linearly onto the run (``day[0]`` is the run's start, ``day[1]`` its end).
Rentals are made and picked up in the ``pickups`` hours (the morning) and
brought back in the ``returns`` hours (the afternoon). :func:`parse_rentals`
raises ``ValueError`` with one line naming the bad field.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

#: the channels a rental's deposit may be paid by (QR at a kiosk, cash or card at a desk)
RENTAL_CHANNELS = ("wechat", "alipay", "cash", "card")


@attrs.frozen
class Kit:
    """What one renting visitor takes, with its weight in the mix."""

    weight: float
    items: tuple[tuple[str, int], ...]


@attrs.frozen
class RentalsProfile:
    """The rentals share of a profile; ``share == 0`` (the default) rents nothing."""

    share: float = 0.0
    kits: tuple[Kit, ...] = ()
    day: tuple[float, float] = (8.0, 17.5)
    pickups: tuple[float, float] = (8.0, 11.0)
    returns: tuple[float, float] = (13.0, 17.0)
    damaged: float = 0.0
    lost: float = 0.0
    channels: tuple[tuple[str, float], ...] = (("wechat", 1.0),)
    preauth: float = 0.0
    double_tap: float = 0.0
    pay_both: float = 0.0

    def run_fraction(self, hour: float) -> float:
        """Where ``hour`` of the resort's day falls in the run, from 0 to 1."""
        opens, closes = self.day
        return (hour - opens) / (closes - opens)

    def pickup_share(self) -> float:
        """The share of the run that the pickup hours take."""
        return self.run_fraction(self.pickups[1]) - self.run_fraction(self.pickups[0])


def parse_rentals(table: object, known_items: Mapping[str, int]) -> RentalsProfile:
    """The ``[rentals]`` table as a :class:`RentalsProfile`.

    ``known_items`` maps the rental item ids of the park the load test sells
    (the demo park) to their unit counts: a kit naming another item, or more
    of one than the park has, is refused. Raises ``ValueError`` naming the
    field, in one line.
    """
    if not isinstance(table, dict):
        raise ValueError("[rentals] must be a table")
    unknown = sorted(set(table) - {f.name for f in attrs.fields(RentalsProfile)})
    if unknown:
        raise ValueError(f"rentals.{unknown[0]} is not a rentals setting")

    def share(key: str) -> float:
        value = table.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValueError(f"rentals.{key} must be a number from 0.0 to 1.0")
        return float(value)

    def hours(key: str, default: tuple[float, float]) -> tuple[float, float]:
        value = table.get(key, list(default))
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            or not 0 <= value[0] < value[1] <= 24
        ):
            raise ValueError(f"rentals.{key} must be [from, to] hours, 0 <= from < to <= 24")
        return float(value[0]), float(value[1])

    rentals = RentalsProfile(
        share=share("share"),
        kits=_kits(table.get("kits", []), known_items),
        day=hours("day", (8.0, 17.5)),
        pickups=hours("pickups", (8.0, 11.0)),
        returns=hours("returns", (13.0, 17.0)),
        damaged=share("damaged"),
        lost=share("lost"),
        channels=_channels(table.get("channels", {"wechat": 1.0})),
        preauth=share("preauth"),
        double_tap=share("double_tap"),
        pay_both=share("pay_both"),
    )
    opens, closes = rentals.day
    if not (opens <= rentals.pickups[0] and rentals.returns[1] <= closes):
        raise ValueError("rentals.pickups and rentals.returns must lie within rentals.day")
    if rentals.pickups[1] > rentals.returns[0]:
        raise ValueError("rentals.returns must start after rentals.pickups end")
    if rentals.damaged + rentals.lost > 1:
        raise ValueError("rentals.damaged plus rentals.lost must be at most 1.0")
    if rentals.share > 0 and not rentals.kits:
        raise ValueError("rentals.kits must list what visitors rent when rentals.share > 0")
    return rentals


def _kits(value: object, known_items: Mapping[str, int]) -> tuple[Kit, ...]:
    if not isinstance(value, list) or not all(isinstance(k, dict) for k in value):
        raise ValueError("rentals.kits must be an array of tables: [[rentals.kits]]")
    kits = []
    for n, kit in enumerate(value):
        where = f"rentals.kits[{n}]"
        weight = kit.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
            raise ValueError(f"{where}.weight must be a number above 0")
        items = kit.get("items")
        if not isinstance(items, dict) or not items:
            raise ValueError(f"{where}.items must be a table of item = quantity: {{ skis = 1 }}")
        for item, quantity in items.items():
            if item not in known_items:
                raise ValueError(
                    f"{where}.items: the demo park rents no {item!r} "
                    f"(it rents {', '.join(sorted(known_items))})"
                )
            if (
                isinstance(quantity, bool)
                or not isinstance(quantity, int)
                or not 1 <= quantity <= known_items[item]
            ):
                raise ValueError(
                    f"{where}.items.{item} must be a whole number from 1 to {known_items[item]}"
                )
        kits.append(Kit(float(weight), tuple(sorted(items.items()))))
    return tuple(kits)


def _channels(value: object) -> tuple[tuple[str, float], ...]:
    if not isinstance(value, dict) or not value:
        raise ValueError("rentals.channels must be a table of channel = share: { wechat = 1.0 }")
    for channel, weight in value.items():
        if channel not in RENTAL_CHANNELS:
            raise ValueError(
                f"rentals.channels.{channel}: a deposit is paid by {', '.join(RENTAL_CHANNELS)}"
            )
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 1:
            raise ValueError(f"rentals.channels.{channel} must be a number from 0.0 to 1.0")
    if abs(sum(value.values()) - 1.0) > 1e-6:
        raise ValueError("rentals.channels must add up to 1.0")
    return tuple((channel, float(weight)) for channel, weight in value.items())
