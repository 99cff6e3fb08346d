"""Venues: the exchange-adapter protocol (:mod:`bot4.venues.protocol`), the paper venue
(:mod:`bot4.venues.paper`) and the ccxt adapter (:mod:`bot4.venues.ccxt`, extra ``bot4[ccxt]``)."""
