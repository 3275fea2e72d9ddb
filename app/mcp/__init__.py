"""docchat as a Model Context Protocol server: `docchat mcp` (stdio) or `docchat mcp --http`.

Importing this package is cheap; the `mcp` SDK loads inside ``app.mcp.server``.
"""
