"""The fleet server's REST API: one router per concept, errors shaped in :mod:`.errors`.

The app factory (:func:`remotehands.server.app.create_app`) imports every router module and
includes them in one explicit order.
"""
