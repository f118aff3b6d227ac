"""The MCP server of remotehands (``remotehands mcp``): the fleet's devices as tools for AI
agents, over stdio or streamable HTTP, built on the async SDK (:mod:`remotehands.client`)."""
