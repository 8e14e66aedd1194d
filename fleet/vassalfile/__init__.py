"""Vassal files (pure): which files are vassals, what is wrong with one, its health options."""
