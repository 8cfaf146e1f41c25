"""Persistence behind one async interface; SQLite (aiosqlite) is the embedded default."""
