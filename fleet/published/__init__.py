"""The published contract: the snapshot (run/state.json), the event log, the parts' records."""
