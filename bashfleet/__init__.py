"""bashfleet for programs: a REST client (`bashfleet.client`) and the MCP server
(`bashfleet.mcp_server`) that agents use. The engine itself lives in `sandbox`."""
