"""The Model Context Protocol both ways: the user's MCP servers as tools of the reply
brain, and the secretary's skills as an MCP server for other agents."""
