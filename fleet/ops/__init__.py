"""The operator's side: up, down, the supervisor, the foreground, the commands and their progress."""
