"""The REST front door's HTTP/1.1 connections: Sanic's, with read deadlines a slow client cannot stretch.

Sanic's REQUEST_TIMEOUT and RESPONSE_TIMEOUT count from the connection's last
activity, and every byte received is activity (`HttpProtocol.data_received`
stamps it): a client sending its headers or its body a byte every few seconds
holds a connection, and the memory of its half-read body, for ever. Here a
request's headers must all arrive within `header_timeout` of the first wait
for them, and its body within `body_timeout` of the first wait for it; beyond,
the client gets a 408 and the connection closes. The clock only runs while
the server waits for bytes it needs, so a request that arrives whole costs
nothing extra. Between requests, Sanic's KEEP_ALIVE_TIMEOUT still applies.
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import Optional

from sanic.exceptions import BadRequest, RequestTimeout
from sanic.http import Http, Stage
from sanic.server.protocols.http_protocol import HttpProtocol


class TimedHttp(Http):
    """One connection's request cycle, reading each request's headers and body against a deadline."""

    __slots__ = ("header_began", "body_began", "_wait", "_header_timeout", "_body_timeout")

    def __init__(self, protocol: HttpProtocol):
        super().__init__(protocol)
        config = protocol.app.config
        self._header_timeout: float = config.HEADER_TIMEOUT
        self._body_timeout: float = config.BODY_TIMEOUT
        self._wait = protocol.receive_more
        self._receive_more = self._receive_in_time  # what Sanic's header and body readers call for more bytes

    def init_for_request(self) -> None:
        super().init_for_request()
        # perf_counter() of the first wait for this request's headers, and for its body (None: no wait yet)
        self.header_began: Optional[float] = None
        self.body_began: Optional[float] = None

    async def _receive_in_time(self) -> None:
        if self.request_body:  # a body is being read (by the handler, or by Sanic after an early answer)
            if self.body_began is None:
                self.body_began = perf_counter()
            began, limit, what = self.body_began, self._body_timeout, "body did not arrive within {:g} s (body_timeout)"
        elif self.stage is Stage.REQUEST:  # headers are being read
            if self.header_began is None:
                self.header_began = perf_counter()
            began, limit, what = self.header_began, self._header_timeout, "headers did not arrive within {:g} s (header_timeout)"
        else:  # waiting for the next request on a kept-alive connection
            return await self._wait()
        try:
            async with asyncio.timeout(began + limit - perf_counter()):
                await self._wait()
        except TimeoutError:
            self.keep_alive = False
            self.request_body = None  # read no more of it: the connection closes after the answer
            message = "the request's " + what.format(limit)
            if self.stage is Stage.HANDLER or self.stage is Stage.REQUEST:
                raise RequestTimeout(message) from None
            # the answer is out already (Sanic reads the rest of a body it did not need): Sanic ends that
            # read on BadRequest, and closes the connection
            raise BadRequest(message) from None

    def began(self) -> float:
        """perf_counter() of the request's start: its headers read (Sanic's perft0), else the first wait for them."""
        return self.perft0 or self.header_began or perf_counter()


class GatewayProtocol(HttpProtocol):
    """Sanic's HTTP/1.1 protocol with `TimedHttp` (pass as `protocol=` when serving)."""

    HTTP_CLASS = TimedHttp
