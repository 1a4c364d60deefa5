"""The one exception type for errors a user can cause and fix."""


class AvaeError(Exception):
    """Bad input: an unknown name, an invalid value, a missing or corrupt file.

    The CLI prints the message as one line and exits with status 2.
    """
