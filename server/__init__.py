"""The scenic-gate server process: CLI, config, websocket protocol, sessions, storage."""
