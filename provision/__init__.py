"""classroom: provision hands-on Docker training classrooms."""

__version__ = "0.1.0"
