"""The gateway's answers to a bot: the exchange's streamed as it arrives, or a policy grant's
read whole first."""

from __future__ import annotations

from dataclasses import dataclass

from .audit_book import Outcome
from .forwarding import AnswerLost, UpstreamAnswer
from .http_server import Writer
from .kraken_errors import Reason

__all__ = ["NotRead", "Whole", "read_whole", "stream"]


class NotRead(Exception):
    """The exchange's answer was lost before any of it reached the bot (or before a policy
    grant's was read whole): the bot is told the outcome is unknown."""


@dataclass(frozen=True)
class Whole:
    """An exchange's answer read whole (a policy grant's: its order ids are learned)."""

    status: int
    headers: dict[str, str]
    body: bytes


async def stream(writer: Writer, answer: UpstreamAnswer, outcome: Outcome) -> None:
    """The exchange's answer to the bot as it arrives: no size cap, nothing held whole."""
    if answer.whole is not None:  # it came whole with its head: one write, nothing to await
        writer.answer(answer.status, answer.whole, answer.headers.items(),
                      close=not writer.keep_alive)
        return
    try:
        # The body goes as it came, encoded or not, with its length when it had one.
        writer.start(answer.status, answer.headers.items(), answer.content_length)
        async for chunk in answer.chunks():
            await writer.write(chunk)
        writer.end()
    except AnswerLost:
        if writer.sent_nothing:
            raise NotRead from None  # nothing went out: answered as an unknown outcome
        # Part of it went out already: cut the connection, so the bot's client sees an
        # incomplete answer rather than a short one that looks whole.
        outcome.outcome = Reason.OUTCOME_UNKNOWN.value
        writer.abort()
    finally:
        answer.close()


# A policy grant's answer is read whole (its order ids are learned from it): order and funds
# answers are small; one this large is no such answer.
_WHOLE_LIMIT = 16 << 20


async def read_whole(answer: UpstreamAnswer) -> Whole:
    if answer.whole is not None:
        return Whole(answer.status, answer.headers, answer.whole)
    try:
        data = await answer.read(_WHOLE_LIMIT)
    except AnswerLost:
        raise NotRead from None
    return Whole(answer.status, answer.headers, data)
