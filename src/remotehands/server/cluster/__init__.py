"""Several server replicas as one fleet: NATS carries device requests, streams, events,
revocations and rate limits between replicas sharing one PostgreSQL database.

Chosen by the app factory when ``nats_url`` is set; without it nothing here is used.
:class:`~remotehands.server.cluster.connection.NatsConnection` is the replica's client,
:class:`~remotehands.server.cluster.router.NatsRouter` its device router (and the hub's
presence hooks), :class:`~remotehands.server.cluster.events.NatsEventBus` its event bus, and
:mod:`~remotehands.server.cluster.shared` the principal cache and rate limiters made fleet-wide.
"""
