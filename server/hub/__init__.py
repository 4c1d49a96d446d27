"""The live-room hub: WebSocket connections, coalesced fan-out and the cross-process room log."""
