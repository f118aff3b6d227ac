"""The server side of the agent link: the WebSocket endpoint and the hub of live links."""
