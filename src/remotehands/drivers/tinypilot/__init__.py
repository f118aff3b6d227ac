"""The tinypilot driver: a TinyPilot KVM through its REST API (``/api/v1``)."""
