"""Venue streams: market data and order updates over WebSocket, parsed and kept in step.

:mod:`bot4.streams.events` (what streams say, venue-neutral), :mod:`bot4.streams.book`
(a local order book synchronised by update ids), :mod:`bot4.streams.binance` (Binance
spot's messages).
"""
