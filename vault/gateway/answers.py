"""The gateway's answers to a bot: the exchange's streamed as it arrives, a policy grant's
read whole, and an answer after which the connection is closed."""

from __future__ import annotations

from aiohttp import web

from .audit_book import Outcome
from .forwarding import AnswerLost, UpstreamAnswer
from .kraken_errors import Reason

__all__ = ["NotRead", "answer_and_close", "close", "read_whole", "stream"]


class NotRead(Exception):
    """The answer of a policy grant's request was lost before it was read whole."""


async def stream(request: web.Request, answer: UpstreamAnswer, outcome: Outcome
                 ) -> web.StreamResponse:
    """The exchange's answer to the bot as it arrives: no size cap, nothing held whole."""
    response = web.StreamResponse(status=answer.status)
    response.headers.update(answer.headers)
    if answer.content_length is not None:  # the body goes as it came, encoded or not
        response.content_length = answer.content_length
    try:
        await response.prepare(request)
        async for chunk in answer.chunks():
            await response.write(chunk)
        await response.write_eof()
    except AnswerLost:
        # The status went out already: cut the connection, so the bot's client sees an
        # incomplete answer rather than a short one that looks whole.
        outcome.outcome = Reason.OUTCOME_UNKNOWN.value
        close(request)
    finally:
        answer.close()
    return response


# A policy grant's answer is read whole (its order ids are learned from it): order and funds
# answers are small; one this large is no such answer.
_WHOLE_LIMIT = 16 << 20


async def read_whole(answer: UpstreamAnswer) -> web.Response:
    try:
        data = await answer.read(_WHOLE_LIMIT)
    except AnswerLost:
        raise NotRead from None
    response = web.Response(status=answer.status, body=data)
    response.headers.update(answer.headers)
    return response


def close(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.close()


async def answer_and_close(request: web.Request, response: web.StreamResponse) -> None:
    """Send `response` and close the connection at once: aiohttp would otherwise read and
    discard the rest of an unread body (for up to its lingering time) to keep it alive."""
    response.force_close()
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionError:
        pass  # the bot went away first
    close(request)
