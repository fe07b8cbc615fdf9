"""Exceptions whose message is meant for the user (CLI prints it, the app shows it)."""


class PGDVSError(Exception):
    """Base class: the message names the problem and, where there is one, the file and field."""


class InputError(PGDVSError):
    """Bad user input: unreadable video, malformed scene folder, invalid preset, ..."""


class SceneFormatError(InputError):
    """A scene folder (ours or the original PGDVS layout) is malformed."""
