"""An application with jobs of its own (see README.md beside this folder)."""
