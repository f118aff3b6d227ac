"""The pikvm driver: a PiKVM (kvmd) fronted through its HTTP and WebSocket API.

:mod:`.client` is the protocol, standalone; :mod:`.driver` is the glue to the vocabulary.
"""

from remotehands.drivers.pikvm.driver import PikvmDriver, PikvmSettings

__all__ = ["PikvmDriver", "PikvmSettings"]
