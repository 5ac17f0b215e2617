"""The classification of a business date's differences between a channel's lines and the books.

:func:`classify` is the one entry point: given one channel's lines for the
date (its bill, or its query API's answers), the lines of the next date's
bill when there is one, and the books, it returns every difference, each
with the fix that is safe (or none, for a person). It is total and
deterministic: the same facts give the same differences, in the same order,
under keys that stay the same from run to run (so a stored run is updated,
never duplicated). Once its fixes are carried out the same facts give no
fixable difference: a second run fixes nothing twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from actors.reconciliation.model import (
    AttachCollection,
    Books,
    Collection,
    ConfirmRefund,
    Day,
    Difference,
    Kind,
    Line,
    Owner,
    Refund,
)

#: what a channel's refund query says of a refund that will not happen
FAILED_STATES = ("FAILED", "CLOSED", "ABNORMAL", "NOT_FOUND")


def expected_fee(amount_fen: int, rate_bp: int) -> int:
    """The fee at ``rate_bp`` basis points on ``amount_fen``, rounded half-up to the fen."""
    return (amount_fen * rate_bp + 5000) // 10000


def classify(
    day: Day, lines: Sequence[Line], next_lines: Sequence[Line] | None, books: Books
) -> list[Difference]:
    """Every difference of ``day`` between ``lines`` and ``books``, in a stable order.

    ``books`` may hold records from ``day.scratch`` before and after the day
    (they match lines billed across midnight); a record of the day itself
    that matches no line is looked for in ``next_lines`` when it is within
    ``day.scratch`` of the day's end, and *waits* (``waiting=True``) while
    that bill is not in (``next_lines is None``).
    """
    found: list[Difference] = []
    found += _duplicate_lines(lines, books)
    found += _payments(day, lines, books)
    found += _refunds(day, lines, books)
    found += _missing(day, lines, next_lines, books)
    found += _fees(day, lines, books)
    found += _unrefunded_duplicates(lines, books)
    unique: dict[str, Difference] = {}
    for difference in found:
        unique.setdefault(difference.key, difference)
    return list(unique.values())


def _owner_of(line: Line, books: Books) -> Owner | None:
    """Whose money ``line`` is, as far as the books know."""
    for collection in books.collections:
        if collection.channel_txn_id == line.channel_txn_id:
            return collection.owner
    started = books.started.get(line.out_trade_no)
    return started.owner if started is not None else None


def _duplicate_lines(lines: Sequence[Line], books: Books) -> Iterable[Difference]:
    counts: dict[tuple[str, str], list[Line]] = defaultdict(list)
    for line in lines:
        counts[(line.kind, line.out_refund_no or line.channel_txn_id)].append(line)
    for (kind, ref), same in counts.items():
        if len(same) > 1:
            yield Difference(
                Kind.DUPLICATE_COLLECTION,
                f"duplicate_collection:bill:{kind}:{ref}",
                f"the bill lists {kind} {ref} of {same[0].out_trade_no} {len(same)} times",
                out_trade_no=same[0].out_trade_no,
                channel_txn_id=same[0].channel_txn_id,
                out_refund_no=same[0].out_refund_no,
                channel_fen=sum(line.amount_fen for line in same),
                owner=_owner_of(same[0], books),
            )


def _owner_collections(lines: Sequence[Line], books: Books) -> dict[Owner, set[str]]:
    """Each owner's distinct collections, known here or billed, by channel transaction."""
    by_owner: dict[Owner, set[str]] = defaultdict(set)
    for collection in books.collections:
        by_owner[collection.owner].add(collection.channel_txn_id)
    for line in lines:
        started = books.started.get(line.out_trade_no)
        if line.kind == "payment" and started is not None:
            by_owner[started.owner].add(line.channel_txn_id)
    return by_owner


def _payments(day: Day, lines: Sequence[Line], books: Books) -> Iterable[Difference]:
    known = {c.channel_txn_id: c for c in books.collections}
    by_owner = _owner_collections(lines, books)
    for line in lines:
        if line.kind != "payment":
            continue
        collection = known.get(line.channel_txn_id)
        if collection is not None:
            if collection.amount_fen != line.amount_fen:
                yield Difference(
                    Kind.AMOUNT_MISMATCH,
                    f"amount_mismatch:{line.channel_txn_id}",
                    f"{line.out_trade_no}: {collection.amount_fen} fen here, "
                    f"{line.amount_fen} fen at the channel",
                    line.out_trade_no,
                    line.channel_txn_id,
                    local_fen=collection.amount_fen,
                    channel_fen=line.amount_fen,
                    owner=collection.owner,
                )
            continue
        started = books.started.get(line.out_trade_no)
        if started is None:
            yield Difference(
                Kind.UNKNOWN_HERE,
                f"unknown_here:{line.channel_txn_id}",
                f"{line.out_trade_no} was collected at the channel but was never started here",
                line.out_trade_no,
                line.channel_txn_id,
                channel_fen=line.amount_fen,
            )
            continue
        fix = AttachCollection(
            started.owner, line.out_trade_no, line.channel_txn_id, line.amount_fen, line.at
        )
        twice = len(by_owner[started.owner]) > 1
        yield Difference(
            Kind.DUPLICATE_COLLECTION if twice else Kind.UNKNOWN_HERE,
            f"{'duplicate_collection' if twice else 'unknown_here'}:{line.channel_txn_id}",
            f"{line.out_trade_no} was collected at the channel and never confirmed here"
            + (f"; {started.owner.kind} {started.owner.id} was collected before" if twice else ""),
            line.out_trade_no,
            line.channel_txn_id,
            channel_fen=line.amount_fen,
            owner=started.owner,
            fix=fix,
        )


def _refunds(day: Day, lines: Sequence[Line], books: Books) -> Iterable[Difference]:
    asked = {r.out_refund_no: r for r in books.refunds}
    for line in lines:
        if line.kind != "refund":
            continue
        ref = line.out_refund_no or ""
        refund = asked.get(ref)
        if refund is None:
            yield Difference(
                Kind.UNKNOWN_HERE,
                f"unknown_here:refund:{ref}",
                f"refund {ref} of {line.out_trade_no} was paid out at the channel "
                "but never asked here",
                line.out_trade_no,
                line.channel_txn_id,
                ref,
                channel_fen=line.amount_fen,
            )
        elif refund.amount_fen != line.amount_fen:
            yield Difference(
                Kind.AMOUNT_MISMATCH,
                f"amount_mismatch:refund:{ref}",
                f"refund {ref}: {refund.amount_fen} fen asked here, "
                f"{line.amount_fen} fen paid out at the channel",
                line.out_trade_no,
                line.channel_txn_id,
                ref,
                refund.amount_fen,
                line.amount_fen,
                refund.owner,
            )
        elif refund.pending:
            yield _refund_done_there(refund, line.at, line.amount_fen)
        elif refund.failed:
            yield Difference(
                Kind.STATUS_MISMATCH,
                f"status_mismatch:refund:{ref}",
                f"refund {ref} is marked failed here but the channel paid it out",
                line.out_trade_no,
                line.channel_txn_id,
                ref,
                refund.amount_fen,
                line.amount_fen,
                refund.owner,
            )
    billed = {line.out_refund_no for line in lines if line.kind == "refund"}
    for refund in books.refunds:
        if refund.out_refund_no in billed or not refund.pending:
            continue
        if not day.start - day.scratch <= refund.requested_at < day.end:
            continue
        state = books.refund_states.get(refund.out_refund_no)
        if state is None:
            continue
        if state.state == "SUCCESS":
            yield _refund_done_there(refund, state.at or day.end, refund.amount_fen)
        elif state.state in FAILED_STATES:
            yield Difference(
                Kind.STATUS_MISMATCH,
                f"status_mismatch:refund:{refund.out_refund_no}",
                f"refund {refund.out_refund_no} is pending here but {state.state} at the channel",
                refund.out_trade_no,
                None,
                refund.out_refund_no,
                refund.amount_fen,
                None,
                refund.owner,
            )


def _refund_done_there(refund: Refund, at, channel_fen: int) -> Difference:
    return Difference(
        Kind.STATUS_MISMATCH,
        f"status_mismatch:refund:{refund.out_refund_no}",
        f"refund {refund.out_refund_no} is pending here and done at the channel",
        refund.out_trade_no,
        None,
        refund.out_refund_no,
        refund.amount_fen,
        channel_fen,
        refund.owner,
        fix=ConfirmRefund(refund.owner, refund.out_refund_no, at),
    )


def _missing(
    day: Day, lines: Sequence[Line], next_lines: Sequence[Line] | None, books: Books
) -> Iterable[Difference]:
    billed = {(line.kind, line.out_refund_no or line.channel_txn_id) for line in lines}
    later = {(line.kind, line.out_refund_no or line.channel_txn_id) for line in next_lines or ()}
    records: list[tuple[str, str, Collection | Refund, object]] = []
    for collection in books.collections:
        records.append(("payment", collection.channel_txn_id, collection, collection.at))
    for refund in books.refunds:
        if refund.confirmed_at is not None:
            records.append(("refund", refund.out_refund_no, refund, refund.confirmed_at))
    for kind, ref, record, at in records:
        if not day.start <= at < day.end or (kind, ref) in billed or (kind, ref) in later:
            continue
        near_end = at >= day.end - day.scratch
        waiting = near_end and next_lines is None
        is_refund = isinstance(record, Refund)
        yield Difference(
            Kind.MISSING_AT_CHANNEL,
            f"missing_at_channel:{'refund:' if is_refund else ''}{ref}",
            f"{kind} {ref} of {record.out_trade_no} is recorded here"
            + (", near midnight: waiting for the next day's bill" if waiting else "")
            + ("" if waiting else " but is not on the channel's bill"),
            record.out_trade_no,
            None if is_refund else ref,
            ref if is_refund else None,
            local_fen=record.amount_fen,
            owner=record.owner,
            waiting=waiting,
        )


def _fees(day: Day, lines: Sequence[Line], books: Books) -> Iterable[Difference]:
    for line in lines:
        if line.fee_fen is None:
            continue
        ref = line.out_refund_no or line.channel_txn_id
        want = expected_fee(line.amount_fen, day.rate_bp)
        rate_differs = line.rate_bp is not None and line.rate_bp != day.rate_bp
        if line.fee_fen == want and not rate_differs:
            continue
        stated = "" if line.rate_bp is None else f" at a stated {line.rate_bp / 100:.2f}%"
        yield Difference(
            Kind.FEE_MISMATCH,
            f"fee_mismatch:{'refund:' if line.kind == 'refund' else ''}{ref}",
            f"{line.kind} {ref} of {line.out_trade_no}: fee {line.fee_fen} fen{stated}; the agreed "
            f"{day.rate_bp / 100:.2f}% of {line.amount_fen} fen is {want} fen",
            line.out_trade_no,
            line.channel_txn_id,
            line.out_refund_no,
            local_fen=want,
            channel_fen=line.fee_fen,
            owner=_owner_of(line, books),
        )


def _unrefunded_duplicates(lines: Sequence[Line], books: Books) -> Iterable[Difference]:
    """An owner collected more than once, known here, with more than one not given back."""
    refunded_by_bill = {line.out_trade_no for line in lines if line.kind == "refund"}
    by_owner: dict[Owner, list[Collection]] = defaultdict(list)
    for collection in books.collections:
        if collection.owner.kind == "order":  # a rental may rightly hold a deposit and more
            by_owner[collection.owner].append(collection)
    billed = {line.channel_txn_id for line in lines if line.kind == "payment"}
    for owner, collections in by_owner.items():
        kept = [c for c in collections if not c.refunded and c.out_trade_no not in refunded_by_bill]
        if len(kept) > 1 and any(c.channel_txn_id in billed for c in kept):
            yield Difference(
                Kind.DUPLICATE_COLLECTION,
                f"duplicate_collection:{owner.kind}:{owner.id}",
                f"{owner.kind} {owner.id} kept {len(kept)} collections and gave none back: "
                + ", ".join(sorted(c.channel_txn_id for c in kept)),
                local_fen=sum(c.amount_fen for c in kept),
                owner=owner,
            )
