"""Transport adapters: each turns a byte stream or socket into whole messages and back.

Each is a thin shell around the connection actors; import only the one you serve, so a stdio
child does not pay for WebSocket or HTTP imports at start-up.
"""
