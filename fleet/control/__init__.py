"""The control-plane process: observe -> decide -> act -> publish, and the admin listener."""
