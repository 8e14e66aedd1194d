"""The nginx adapter: its config and process, the upstream slots, routing, and nginx's own stats."""
